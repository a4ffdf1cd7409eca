"""Partners of the REST API, their keys and the responses replayed by ``Idempotency-Key``.

A ``Partner`` (a delivery app, a management company, a payment agent) may act
for some of the operator's brands. Each ``ApiKey`` is scoped to some of those
brands and carries capabilities (``read``, ``payments``, ...: what its requests
may do); a request sees only the clients and accounts linked to the key's
brands. Keys are stored as a public ``prefix`` (for lookup) and the SHA-256 of
the secret part: the full key is shown once, when it is created.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models

from core.api.principal import CAPABILITIES
from core.audit.models import audit_event_model


def all_capabilities() -> list[str]:
    """A new key may do everything unless it is narrowed (``create_api_key --can``)."""
    return list(CAPABILITIES)


class Partner(models.Model):
    name = models.CharField(max_length=200, unique=True)
    brands = models.ManyToManyField("brands.Brand", blank=True, related_name="partners")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """An API key: ``<prefix>.<secret>``; only the prefix and sha256(secret) are stored."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_secret = models.CharField(max_length=64, editable=False)
    brands = models.ManyToManyField("brands.Brand", related_name="api_keys")
    capabilities = ArrayField(
        models.CharField(max_length=16, choices=[(c, c) for c in CAPABILITIES]),
        default=all_capabilities,
        help_text="What requests made with this key may do (each endpoint needs one).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]
        verbose_name = "API key"
        permissions = [("revoke_apikey", "Can revoke API keys")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(capabilities__contained_by=list(CAPABILITIES)),
                name="%(app_label)s_%(class)s_known_capabilities",
                violation_error_message="Unknown API key capability.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.partner})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


# Keys: creation, name, partner, capabilities and revocation are recorded by a database
# trigger with the actor (core.audit); ``last_used_at``, written as keys are used, is not.
# The key's brand links are recorded by ``partners.models.ApiKeyBrandEvent``.
API_KEY_AUDITED_FIELDS = ["partner", "name", "prefix", "capabilities", "revoked_at"]


class ApiKeyEvent(
    audit_event_model(ApiKey, fields=API_KEY_AUDITED_FIELDS, verbose_name="API key audit event")
):
    """An API key was created, renamed, given other capabilities or revoked."""


class ApiIdempotencyRecord(models.Model):
    """The first response to a money POST with an ``Idempotency-Key``, replayed verbatim.

    Written in the same database transaction as the posting, keyed like the
    ledger's own idempotency record (caller ref + key).
    """

    caller = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    status_code = models.PositiveSmallIntegerField()
    body = models.BinaryField(help_text="The response body exactly as first sent.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "API idempotency record"
        constraints = [
            models.UniqueConstraint(
                fields=["caller", "key"],
                name="%(app_label)s_%(class)s_unique_per_caller",
                violation_error_message="This idempotency key already has a response.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.caller}/{self.key}"
