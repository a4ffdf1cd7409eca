"""Settings for the billing back-office, read from the environment (12-factor).

Every knob an operator may need is an environment variable; the defaults are
for a developer machine with PostgreSQL on 127.0.0.1 and trust auth.
"""

import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import dj_database_url

from billing_site import database

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Off unless the environment turns it on (``make run`` does, for development).
DEBUG = env_bool("DEBUG", False)
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"
# The web server (billing_site/wsgi.py) refuses to start on this development key with DEBUG
# off; commands and the test suite may use it.
SECRET_KEY = os.environ.get("SECRET_KEY", DEV_SECRET_KEY)
# HTTPS in production (docs/operations.md); all off by default so development over plain
# http works. With them on, ``manage.py check --deploy`` reports nothing.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "billing_site.apps.BillingAdminConfig",  # django.contrib.admin, text-guarded (admin.py)
    "billing_site.apps.BillingSiteConfig",  # migrate as the owner, setup_db_roles
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "pgtrigger",
    "pghistory",
    "django_filters",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "import_export",
    "django_q",
    "axes",
    "django_tables2",
    "django_htmx",
    "core.audit",
    "access",
    "approvals",
    "brands",
    "accounts",
    "ledger",
    "invoicing",
    "payments",
    "reports",
    "partners",
    "notifications",
    "backoffice",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from STATIC_ROOT (collectstatic) when DEBUG is off, e.g. under gunicorn.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # A lost database connection answers 503 with Retry-After (core.faults).
    "core.faults.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The staff UI speaks the user's language (set_language, Accept-Language); the API does not.
    "billing_site.middleware.StaffLocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Write requests run in an audit context naming the user and request id (core.audit).
    "core.audit.middleware.AuditContextMiddleware",
    # Django's messages for the staff UI; none under /api/.
    "billing_site.middleware.StaffMessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Failed staff logins: locked out by username + IP after AXES_FAILURE_LIMIT (last).
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "billing_site.auth.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# django-axes: AXES_FAILURE_LIMIT failed logins for one username from one address lock that
# pair out for AXES_COOLOFF_MINUTES; a successful login resets the count. Every login that
# goes through django.contrib.auth.authenticate(request=...) is counted (admin, staff UI).
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("AXES_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# Behind a reverse proxy: how many proxies put the client's address in X-Forwarded-For.
AXES_IPWARE_PROXY_COUNT = int(os.environ.get("AXES_PROXY_COUNT", "0")) or None
if AXES_IPWARE_PROXY_COUNT:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]

ROOT_URLCONF = "billing_site.urls"
WSGI_APPLICATION = "billing_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# Two roles (billing_site/database.py): DATABASE_URL is the runtime role the application
# connects as, MIGRATION_DATABASE_URL the owner migrations run as (default: DATABASE_URL).
# Without DATABASE_URL: postgres://postgres@127.0.0.1:5432/billing (or the embedded
# PostgreSQL that ``make run`` started when nothing answers there) as the owner, and the same
# database as the role billing_app at runtime.
DATABASE_URL = database.runtime_url()
MIGRATION_DATABASE_URL = database.owner_url()
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60"))
    ),
}
DATABASES["default"]["ENGINE"] = "django.db.backends.postgresql"
# The owner's login (core.db.as_database_owner switches the connection to it).
BILLING_DATABASE_OWNER = {
    key: value
    for key, value in dj_database_url.parse(MIGRATION_DATABASE_URL).items()
    if key in ("USER", "PASSWORD", "HOST", "PORT", "NAME")
}
# Django's cursors bind client-side and never prepare; the ledger's posting path uses
# server-side prepared statements explicitly (see BILLING_PREPARED_STATEMENTS). A
# threshold of None would disable those too, so set one nothing else reaches.
# Those statements are planned once (generic plan) rather than on every execution.
DATABASES["default"].setdefault("OPTIONS", {}).update(
    prepare_threshold=1_000_000_000, options="-c plan_cache_mode=force_generic_plan"
)
DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ.get(
    "TEST_DATABASE_NAME", f"test_{DATABASES['default']['NAME']}"
)
# A read replica for reports; by default the same database.
DATABASES["reporting"] = {
    **dj_database_url.parse(os.environ.get("REPORTING_DATABASE_URL", DATABASE_URL)),
    "ENGINE": "django.db.backends.postgresql",
    "TEST": {"MIRROR": "default"},
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# Business days (write-off limits per day and month, credit periods) are
# counted in this zone.
TIME_ZONE = os.environ.get("TIME_ZONE", "Europe/Moscow")
USE_I18N = True
USE_TZ = True
# The staff UI's languages; dates and numbers follow the active one (money: backoffice's
# ``money`` filter groups digits without touching the rest of the site's numbers).
LANGUAGES = [("en", "English"), ("ru", "Русский")]
LOCALE_PATHS = [BASE_DIR / "locale"]

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Served by whitenoise (compressed copies made by collectstatic).
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))
MEDIA_URL = "media/"

# The staff UI's own login page (the admin's redirects to it too when not signed in).
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "backoffice:dashboard"
LOGOUT_REDIRECT_URL = "login"

REDIS_URL = os.environ.get("REDIS_URL", "")

# django-q2: the ORM broker by default, Redis when REDIS_URL is set.
Q_CLUSTER = {
    "name": "billing",
    "workers": int(os.environ.get("Q_WORKERS", "2")),
    "timeout": int(os.environ.get("Q_TIMEOUT", "600")),
    "retry": int(os.environ.get("Q_RETRY", "720")),
    "max_attempts": 3,
    "queue_limit": 50,
    "bulk": 10,
    "catch_up": False,
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "billing@example.com")
# SMTP in production: EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend.
# Where django.core.mail.backends.filebased.EmailBackend writes (bench/month_end.py).
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH") or None
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "30"))
# Email outbox (notifications): retry after base * 2^(n-1) seconds, capped; give up after N.
BILLING_EMAIL_BACKOFF_BASE = int(os.environ.get("BILLING_EMAIL_BACKOFF_BASE", "60"))
BILLING_EMAIL_BACKOFF_MAX = int(os.environ.get("BILLING_EMAIL_BACKOFF_MAX", str(6 * 3600)))
BILLING_EMAIL_MAX_ATTEMPTS = int(os.environ.get("BILLING_EMAIL_MAX_ATTEMPTS", "10"))
# Invoice documents (invoicing.documents): render and store every issued invoice's PDF in
# q2 tasks of this many invoices; off, PDFs are rendered on first request (API, email).
INVOICING_PDF_ON_ISSUE = env_bool("INVOICING_PDF_ON_ISSUE", True)
INVOICING_PDF_CHUNK_SIZE = int(os.environ.get("INVOICING_PDF_CHUNK_SIZE", "100"))
# Invoice runs (invoicing.services): accounts per q2 chunk, days to pay, the mode of the
# scheduled monthly run (draft: operators approve), how long a usage batch may have been
# in flight when a rating ran (late records newer than that are recalculated), and the
# sort/materialise memory of one ingest batch.
INVOICING_CHUNK_SIZE = int(os.environ.get("INVOICING_CHUNK_SIZE", "1000"))
INVOICING_PAYMENT_TERMS_DAYS = int(os.environ.get("INVOICING_PAYMENT_TERMS_DAYS", "10"))
INVOICING_SCHEDULED_RUN_MODE = os.environ.get("INVOICING_SCHEDULED_RUN_MODE", "draft")
INVOICING_RECALC_MARGIN_MINUTES = int(os.environ.get("INVOICING_RECALC_MARGIN_MINUTES", "15"))
INVOICING_INGEST_WORK_MEM = os.environ.get("INVOICING_INGEST_WORK_MEM", "512MB")
# Parallel database sessions ``ingest_usage`` uses for a large file (1: one session).
INVOICING_INGEST_WORKERS = int(os.environ.get("INVOICING_INGEST_WORKERS", "2"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# Ledger configuration.
BILLING_DEFAULT_CURRENCY = os.environ.get("BILLING_DEFAULT_CURRENCY", "RUB")
# How deep a chain of sub-accounts may go (payer -> ... -> sub-account).
BILLING_MAX_ACCOUNT_DEPTH = int(os.environ.get("BILLING_MAX_ACCOUNT_DEPTH", "5"))
# Holds expire on their own after this many minutes unless the caller says otherwise.
BILLING_HOLD_TTL_MINUTES = int(os.environ.get("BILLING_HOLD_TTL_MINUTES", str(7 * 24 * 60)))

# Maker-checker (approvals): adjustments always, refunds and credit limits strictly above
# these amounts (in the account's currency), and brands' bank details wait for a second
# person's approval; a request not decided within the TTL expires.
BILLING_APPROVAL_REFUND_ABOVE = Decimal(os.environ.get("BILLING_APPROVAL_REFUND_ABOVE", "10000.00"))
BILLING_APPROVAL_CREDIT_LIMIT_ABOVE = Decimal(
    os.environ.get("BILLING_APPROVAL_CREDIT_LIMIT_ABOVE", "10000.00")
)
BILLING_APPROVAL_TTL_HOURS = float(os.environ.get("BILLING_APPROVAL_TTL_HOURS", "72"))

# Staff UI (docs/staff-ui.md): django-tables2's Bootstrap 5 template; how long the
# dashboard's ledger-wide figures (sums over today's postings and all balances, the
# 30-day chart) are shared between requests before they are computed again (0: never).
DJANGO_TABLES2_TEMPLATE = "django_tables2/bootstrap5.html"
BACKOFFICE_DASHBOARD_CACHE_SECONDS = int(os.environ.get("BACKOFFICE_DASHBOARD_CACHE_SECONDS", "60"))

# REST API for partners (core/api, access, <app>/api).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "access.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["core.api.permissions.ActionPermission"],
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # No Accept header (or */*): the first renderer without parsing media types.
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.api.negotiation.ApiContentNegotiation",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": ["core.api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "core.api.schema.BillingAutoSchema",
    "EXCEPTION_HANDLER": "core.api.exceptions.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    "DATETIME_FORMAT": "iso-8601",
    "UNAUTHENTICATED_USER": None,
}
# Requests per API key (staff: per user): "<n>/<second|minute|hour|day>", fixed windows.
BILLING_API_THROTTLE_RATES = {
    "api_key": os.environ.get("API_THROTTLE_RATE", "6000/minute"),
    "staff": os.environ.get("API_THROTTLE_RATE_STAFF", "6000/minute"),
}
# A bare JsonResponse view at /api/_bench/ping/ for bench/api.py (the framework's ceiling).
BILLING_API_BENCH_VIEWS = env_bool("BILLING_API_BENCH_VIEWS", False)
SPECTACULAR_SETTINGS = {
    "TITLE": "Billing back-office API",
    "DESCRIPTION": (
        "REST API for partners. Authenticate with `Authorization: Api-Key <key>`. "
        "Amounts are decimal strings. Money POSTs accept `Idempotency-Key`. "
        'Errors are `{"code", "message", "details"}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "AccountStatusEnum": "accounts.models.Account.Status",
        "ClientStatusEnum": "accounts.models.Client.Status",
        "ChannelEnum": "accounts.models.Account.Channel",
        "TariffKindEnum": "invoicing.models.Tariff.Kind",
        "InvoiceKindEnum": "invoicing.models.Invoice.Kind",
        "InvoiceStatusEnum": "invoicing.models.Invoice.Status",
        "InvoiceRunStatusEnum": "invoicing.models.InvoiceRun.Status",
        "InvoiceRunModeEnum": "invoicing.models.InvoiceRun.Mode",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Outbound webhooks (partners.webhooks): backoff base * 2^(n-1) seconds, capped.
BILLING_WEBHOOK_TIMEOUT = float(os.environ.get("BILLING_WEBHOOK_TIMEOUT", "10"))
BILLING_WEBHOOK_BACKOFF_BASE = int(os.environ.get("BILLING_WEBHOOK_BACKOFF_BASE", "30"))
BILLING_WEBHOOK_BACKOFF_MAX = int(os.environ.get("BILLING_WEBHOOK_BACKOFF_MAX", str(6 * 3600)))
BILLING_WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("BILLING_WEBHOOK_MAX_ATTEMPTS", "15"))
# How long a process trusts its snapshot of who subscribes to what (seconds).
BILLING_WEBHOOK_SUBSCRIPTION_TTL = float(os.environ.get("BILLING_WEBHOOK_SUBSCRIPTION_TTL", "5"))
BILLING_WEBHOOK_ENQUEUE = env_bool("BILLING_WEBHOOK_ENQUEUE", True)
# Endpoints on loopback, private, link-local or other non-public addresses are refused
# (when saved and, after DNS resolution, at every delivery) unless this is on.
BILLING_WEBHOOK_ALLOW_PRIVATE = env_bool("BILLING_WEBHOOK_ALLOW_PRIVATE", False)
# The online payment gateway (payments.gateway). The adapter is a dotted path; the sandbox
# adapter talks to `python -m payments.sandbox` (defaults match its defaults).
BILLING_GATEWAY_ADAPTER = os.environ.get(
    "BILLING_GATEWAY_ADAPTER", "payments.gateway.sandbox.SandboxAdapter"
)
BILLING_GATEWAY_URL = os.environ.get("BILLING_GATEWAY_URL", "http://127.0.0.1:8765")
BILLING_GATEWAY_API_KEY = os.environ.get("BILLING_GATEWAY_API_KEY", "sandbox-key")
BILLING_GATEWAY_SECRET = os.environ.get("BILLING_GATEWAY_SECRET", "sandbox-secret")
# Where the gateway sends its callbacks (this site's /payments/gateway/callback/).
BILLING_GATEWAY_CALLBACK_URL = os.environ.get(
    "BILLING_GATEWAY_CALLBACK_URL", "http://127.0.0.1:8000/payments/gateway/callback/"
)
BILLING_GATEWAY_TIMEOUT = float(os.environ.get("BILLING_GATEWAY_TIMEOUT", "10"))
# Outbound calls: backoff base * 2^(n-1) seconds, capped; dead after the last attempt.
BILLING_GATEWAY_BACKOFF_BASE = int(os.environ.get("BILLING_GATEWAY_BACKOFF_BASE", "15"))
BILLING_GATEWAY_BACKOFF_MAX = int(os.environ.get("BILLING_GATEWAY_BACKOFF_MAX", "3600"))
BILLING_GATEWAY_MAX_ATTEMPTS = int(os.environ.get("BILLING_GATEWAY_MAX_ATTEMPTS", "8"))
# Intents pending longer than this without a callback are asked about (status poll).
BILLING_GATEWAY_POLL_AFTER_SECONDS = int(
    os.environ.get("BILLING_GATEWAY_POLL_AFTER_SECONDS", "120")
)
BILLING_GATEWAY_ENQUEUE = env_bool("BILLING_GATEWAY_ENQUEUE", True)
# Server-side prepared statements on the ledger's posting path (off behind pgbouncer
# in transaction-pooling mode).
BILLING_PREPARED_STATEMENTS = env_bool("BILLING_PREPARED_STATEMENTS", True)
# How long a process trusts an API key it has just verified (seconds; 0: check every request).
BILLING_API_KEY_CACHE_SECONDS = float(os.environ.get("BILLING_API_KEY_CACHE_SECONDS", "5"))
