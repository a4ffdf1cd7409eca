import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from tests.factories import BrandFactory, LegalEntityFactory, UserFactory


@pytest.fixture
def brand(db):
    return BrandFactory()


@pytest.fixture
def company(db):
    return LegalEntityFactory()


@pytest.fixture
def blocker(db):
    """An operator allowed to block, unblock and close accounts."""
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="block_account"))
    return get_user_model().objects.get(pk=user.pk)


@pytest.fixture
def plain_user(db):
    """A staff user without ``accounts.block_account``."""
    return UserFactory(is_staff=True)
