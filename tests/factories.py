"""factory_boy factories for the domain. Money-moving state is never built here:
balances come from ledger services (see ``fund``), so invariants always hold."""

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from accounts.models import Account, Client
from accounts.services import account_numbers_allocate
from brands.models import Brand, Service
from core.validators import inn_complete


def _inn(body_digits: int):
    return factory.Sequence(
        lambda n: inn_complete(f"{7700000000 + n:0{body_digits}d}"[-body_digits:])
    )


class BrandFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Brand

    code = factory.Sequence(lambda n: f"BR{n}")
    name = factory.Sequence(lambda n: f"Brand {n}")
    legal_name = factory.LazyAttribute(lambda o: f"OOO {o.name}")
    tax_id = _inn(9)
    kpp = "770101001"
    invoice_prefix = factory.Sequence(lambda n: f"P{n}")
    bank_name = "PAO Sberbank"
    bank_bik = "044525225"
    bank_account = "40702810900000000001"
    bank_correspondent_account = "30101810400000000225"


class ServiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Service

    brand = factory.SubFactory(BrandFactory)
    code = factory.Sequence(lambda n: f"svc{n}")
    name = factory.Sequence(lambda n: f"Service {n}")
    unit = "pcs"
    vat_rate = Decimal("20.00")


class ClientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Client

    kind = Client.Kind.INDIVIDUAL
    name = factory.Faker("name")
    tax_id = _inn(10)
    email = factory.Faker("email")
    phone = factory.Sequence(lambda n: f"+7999{n:07d}")


class LegalEntityFactory(ClientFactory):
    kind = Client.Kind.LEGAL_ENTITY
    name = factory.Faker("company")
    legal_name = factory.LazyAttribute(lambda o: f"OOO {o.name}")
    tax_id = _inn(9)


class AccountFactory(factory.django.DjangoModelFactory):
    """A client account with a real check-digit number. Pass ``brands=[...]`` to link brands."""

    class Meta:
        model = Account
        skip_postgeneration_save = True

    number = factory.LazyFunction(lambda: account_numbers_allocate(1)[0])
    kind = Account.Kind.CLIENT
    client = factory.SubFactory(ClientFactory)
    currency = "RUB"

    @factory.post_generation
    def brands(self, create, extracted, **kwargs):
        if create and extracted:
            self.brands.set(extracted)


def accounts_bulk(brand, count: int, prefix: str) -> list[Account]:
    """``count`` accounts of one client linked to ``brand``, in two INSERTs (numbers
    ``prefix`` and six digits, not check-digit numbers): populations for tests of scale."""
    template = AccountFactory(brands=[brand])
    created = Account.objects.bulk_create(
        Account(
            number=f"{prefix}{n:06d}",
            kind=template.kind,
            client_id=template.client_id,
            currency=template.currency,
        )
        for n in range(count)
    )
    Account.brands.through.objects.bulk_create(
        Account.brands.through(account_id=acc.pk, brand_id=brand.pk) for acc in created
    )
    return created


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "password")
