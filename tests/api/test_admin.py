"""The partners admin: a key created there is shown once; revoke and redeliver actions."""

import re

from access.models import ApiKey
from access.services import api_key_authenticate
from partners.models import WebhookDelivery
from partners.services import webhook_endpoint_create
from tests.factories import UserFactory


def admin_client(client):
    user = UserFactory(is_staff=True, is_superuser=True)
    user.save()
    client.force_login(user)
    return client


def test_admin_creates_a_key_and_shows_it_once(client, side_a):
    admin = admin_client(client)
    response = admin.post(
        "/admin/access/apikey/add/",
        {
            "partner": side_a.partner.pk,
            "name": "from admin",
            "brands": [side_a.brand.pk],
            "capabilities": ["read", "payments"],
        },
        follow=True,
    )
    assert response.status_code == 200
    shown = re.findall(r"bk_[0-9a-f]+\.[A-Za-z0-9_-]+", response.content.decode())
    assert len(set(shown)) == 1
    principal = api_key_authenticate(shown[0])
    assert principal is not None and principal.brand_ids == {side_a.brand.pk}
    assert principal.capabilities == {"read", "payments"}
    key = ApiKey.objects.get(name="from admin")
    page = admin.get(f"/admin/access/apikey/{key.pk}/change/").content.decode()
    assert shown[0].split(".", 1)[1] not in page


def test_admin_revoke_action(client, side_a):
    admin = admin_client(client)
    key = ApiKey.objects.get(partner=side_a.partner)
    admin.post(
        "/admin/access/apikey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True
    )
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert side_a.api.get("/api/v1/brands/").status_code == 401


def test_admin_redeliver_action(client, side_a, settings):
    from ledger.services import debit_post

    settings.BILLING_WEBHOOK_ALLOW_PRIVATE = True
    admin = admin_client(client)
    webhook_endpoint_create(
        partner=side_a.partner, url="http://127.0.0.1:9/x", event_types=["transaction.posted"]
    )
    debit_post(account=side_a.account, amount="1.00", brand=side_a.brand)
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed")
    admin.post(
        "/admin/partners/webhookdelivery/",
        {"action": "redeliver", "_selected_action": [delivery.pk]},
        follow=True,
    )
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    for url in (
        "/admin/partners/webhookdelivery/",
        f"/admin/partners/webhookdelivery/{delivery.pk}/change/",
        "/admin/partners/webhookevent/",
        "/admin/access/partner/",
        "/admin/partners/webhookendpoint/add/",
    ):
        assert admin.get(url).status_code == 200, url
