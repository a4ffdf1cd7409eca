"""Partners of the REST API, their keys and the responses replayed by ``Idempotency-Key``.

A ``Partner`` (a delivery app, a management company, a payment agent) may act
for some of the operator's brands. Each ``ApiKey`` is scoped to some of those
brands; a request sees only the clients and accounts linked to the key's
brands. Keys are stored as a public ``prefix`` (for lookup) and the SHA-256 of
the secret part: the full key is shown once, when it is created.
"""

from django.db import models

from core.audit.models import audit_event_model


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
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.partner})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


# Keys: creation, name, partner and revocation are recorded by a database trigger with the
# actor (core.audit); ``last_used_at``, written as keys are used, is not. The key's brand
# links are recorded by ``partners.models.ApiKeyBrandEvent``.
API_KEY_AUDITED_FIELDS = ["partner", "name", "prefix", "revoked_at"]


class ApiKeyEvent(
    audit_event_model(ApiKey, fields=API_KEY_AUDITED_FIELDS, verbose_name="API key audit event")
):
    """An API key was created, renamed or revoked."""


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
