"""OpsView settings, read from the environment.

With nothing set, OpsView runs on SQLite with Celery in eager mode (the laptop demo).
Set DATABASE_URL and CELERY_BROKER_URL for PostgreSQL and Redis.
"""
import os
import tempfile
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: bool) -> bool:
    """An environment flag: 1, true, yes or on (any case) is true."""
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def envint(name: str, default: int) -> int:
    """An integer from the environment."""
    return int(os.environ.get(name, default))


def envlist(name: str, default: str) -> list[str]:
    """A comma-separated list from the environment, blanks left out."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = envbool("DEBUG", False)
# Keys anyone can read in this repository: the demo's, and the one an earlier
# docker-compose.yml carried.
PUBLIC_KEYS = {"opsview-insecure-demo-key-set-SECRET_KEY-in-production", "change-me-in-production"}
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not DEBUG and not os.environ.get("PYTEST_VERSION") and SECRET_KEY in PUBLIC_KEYS | {""}:
    # Sessions, CSRF tokens and password resets signed with a public key can be forged.
    raise ImproperlyConfigured(
        "SECRET_KEY is not set (or is a key published in the repository) and DEBUG is off. "
        "Set SECRET_KEY to a long random value, e.g. the output of "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))', or set DEBUG=1 to "
        "run the embedded demo.")
# The demo (DEBUG on) and the test suite (pytest sets PYTEST_VERSION) may run without one.
SECRET_KEY = SECRET_KEY or "opsview-insecure-demo-key-set-SECRET_KEY-in-production"
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "config.apps.OpsViewAdminConfig",  # django.contrib.admin, branded
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # runserver leaves static files to WhiteNoise too: compressed, cached as in production.
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "django_filters",
    "opsview",
    "ingestion",
    "exceptions",
    "reporting",
    "integrations",
    "simulator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "core.errors.ProblemDocumentsMiddleware",
    "csp.middleware.CSPMiddleware",
    "core.security.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, so its process_view sees the resolved view and its process_exception runs first.
    "core.dbrouting.ReplicaRoutingMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "reporting.navigation.nav_items",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=envint("DB_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several writers (web, eager tasks, the simulator) share one file: wait rather than fail.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Tests use a file, not Django's shared-cache in-memory database: with several threads
    # (the live server behind the browser tests) a shared cache can deadlock SQLite's mutex
    # against Python's GIL when a query calls one of Django's Python SQL functions.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"opsview-test-{os.getpid()}.sqlite3")}
elif envint("DB_POOL_MAX_SIZE", 0) > 0:
    # The web tier: a connection pool per process (psycopg_pool, built into Django 5.2).
    # Threads borrow a connection per request and give it back, instead of each holding its
    # own for DB_CONN_MAX_AGE while idle, so the database's connection limit bounds the
    # requests served at once, not the threads that exist (docs/operations.md).
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them; Django must not
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": envint("DB_POOL_MIN_SIZE", 1),
        "max_size": envint("DB_POOL_MAX_SIZE", 0),
        # A request waits this long for a free connection before it fails (as a 503).
        "timeout": envint("DB_POOL_TIMEOUT", 10),
        "max_idle": envint("DB_POOL_MAX_IDLE", 60),
    }
if os.environ.get("DATABASE_REPLICA_URL"):
    # A streaming replica for the dashboards' and the read API's reads (core/dbrouting.py,
    # docs/operations.md); writes and everything else stay on "default".
    DATABASES["replica"] = dj_database_url.parse(
        os.environ["DATABASE_REPLICA_URL"], conn_max_age=DATABASES["default"]["CONN_MAX_AGE"])
    # A replica that does not answer within this many seconds is given up and the reads go
    # to the primary.
    DATABASES["replica"]["OPTIONS"] = {"connect_timeout": envint("REPLICA_CONNECT_TIMEOUT", 2)}
    if "pool" in DATABASES["default"].get("OPTIONS", {}):
        DATABASES["replica"]["OPTIONS"]["pool"] = dict(DATABASES["default"]["OPTIONS"]["pool"])
    # The test suite reads "replica" from the primary's test database.
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["core.dbrouting.ReplicaRouter"]
# Above this lag the pages and the read API say how far behind their figures may be.
REPLICA_LAG_WARN_SECONDS = envint("REPLICA_LAG_WARN_SECONDS", 30)
# After a replica failed to answer, reads stay on the primary this long before it is tried.
REPLICA_RETRY_SECONDS = envint("REPLICA_RETRY_SECONDS", 10)
# A browser that just wrote reads from the primary this long (its own change, never stale).
REPLICA_PIN_SECONDS = envint("REPLICA_PIN_SECONDS", 10)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/start/"
LOGOUT_REDIRECT_URL = "login"

# The covering index of today's WIP spans carries its extra columns for PostgreSQL; SQLite
# (the laptop demo) keeps the index and ignores them, as it should.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

LANGUAGE_CODE = "en-us"
# The firm's time zone: "as of" a date means the end of that date here (SPEC section 2).
OPSVIEW_TIME_ZONE = os.environ.get("OPSVIEW_TIME_ZONE", "UTC")
TIME_ZONE = OPSVIEW_TIME_ZONE
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic writes (hashed, compressed); the demo and the benches collect into their
# own folder, so tests never link what a local collectstatic left behind.
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "staticfiles")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise expects it even before collectstatic
# plotly.js is its basic partial bundle (bar, pie, scatter) vendored in static/vendor: no CDN.
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names and gzip/Brotli copies at collectstatic; WhiteNoise serves hashed files
    # with a one-year immutable Cache-Control.
    "staticfiles": {"BACKEND": "core.staticfiles.HashedStaticFiles"},
}
WHITENOISE_USE_FINDERS = True

REDIS_URL = os.environ.get("REDIS_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- Security -----------------------------------------------------------------------------
# Production is any run with DEBUG off and its own SECRET_KEY: cookies are then Secure, HTTP is
# redirected to HTTPS and HSTS is sent, unless a setting below says otherwise (a TLS-less
# local stack sets SECURE_COOKIES=0, SECURE_SSL_REDIRECT=0, SECURE_HSTS_SECONDS=0).
PRODUCTION = not DEBUG and bool(os.environ.get("SECRET_KEY"))
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", PRODUCTION)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
CSRF_COOKIE_HTTPONLY = True  # pages send the token from the form or the hx-headers attribute
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Addresses (networks) of the reverse proxies in front (deploy/nginx): from them, X-Real-IP
# names the client, so the login throttle and the audit trail see clients, not the proxy.
TRUSTED_PROXIES = envlist("TRUSTED_PROXIES", "")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Only the app's own scripts run: no inline script, no eval, no other origin. Styles allow
# inline attributes because plotly.js positions chart parts with them. Sent by django-csp.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=()"
# Login throttling: failures per username and per client address within one window.
LOGIN_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5)
LOGIN_IP_FAILURE_LIMIT = envint("LOGIN_IP_FAILURE_LIMIT", 30)
LOGIN_FAILURE_WINDOW = envint("LOGIN_FAILURE_WINDOW", 900)

# --- Triage -------------------------------------------------------------------------------
# How long a resolve or ignore can be undone by the person who did it.
TRIAGE_UNDO_SECONDS = envint("TRIAGE_UNDO_SECONDS", 30)

# --- Ingestion ----------------------------------------------------------------------------
INGEST_MAX_BODY_BYTES = envint("INGEST_MAX_BODY_BYTES", 5 * 1024 * 1024)
INGEST_MAX_BATCH = envint("INGEST_MAX_BATCH", 1000)
INGEST_TIMESTAMP_TOLERANCE_SECONDS = envint("INGEST_TIMESTAMP_TOLERANCE_SECONDS", 300)
# An event whose `time` lies further than this after its receipt is a dead letter.
INGEST_FUTURE_LIMIT_HOURS = envint("INGEST_FUTURE_LIMIT_HOURS", 24)
# Inbox rows still pending after this long are re-enqueued by the sweeper.
INGEST_SWEEP_AFTER_SECONDS = envint("INGEST_SWEEP_AFTER_SECONDS", 120)
INGEST_PROCESS_BATCH = envint("INGEST_PROCESS_BATCH", 1000)
# How long one processing task keeps draining the inbox before it yields the worker.
INGEST_DRAIN_SECONDS = envint("INGEST_DRAIN_SECONDS", 20)
# The webhook reads the body itself, under INGEST_MAX_BODY_BYTES.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(INGEST_MAX_BODY_BYTES, 2_621_440)

# --- KPIs and rules ------------------------------------------------------------------------
POSTING_SLA_HOURS = envint("POSTING_SLA_HOURS", 24)
# Dashboard panels computed within this many seconds are shared (0: always computed).
PANEL_CACHE_SECONDS = envint("PANEL_CACHE_SECONDS", 30)
STALE_FLOW_MINUTES = envint("STALE_FLOW_MINUTES", 240)
OPSVIEW_BASE_URL = os.environ.get("OPSVIEW_BASE_URL", "http://127.0.0.1:8000")
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend"
                               if os.environ.get("EMAIL_HOST") else
                               "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "opsview@localhost")

# --- Outbound: retry requests, alerts, the case webhook ------------------------------------
# Attempt n+1 waits DELIVERY_BACKOFF_SECONDS × 2^(n-1), at most DELIVERY_BACKOFF_MAX_SECONDS;
# after DELIVERY_MAX_ATTEMPTS a delivery is given up (and stays visible in the admin).
DELIVERY_BACKOFF_SECONDS = envint("DELIVERY_BACKOFF_SECONDS", 30)
DELIVERY_BACKOFF_MAX_SECONDS = envint("DELIVERY_BACKOFF_MAX_SECONDS", 3600)
DELIVERY_MAX_ATTEMPTS = envint("DELIVERY_MAX_ATTEMPTS", 10)
DELIVERY_TIMEOUT_SECONDS = envint("DELIVERY_TIMEOUT_SECONDS", 10)
# The notification services an alert subscription may name (Apprise URL schemes).
ALERT_SCHEMES = envlist("ALERT_SCHEMES", "mailto,mailtos,slack,msteams,workflows,pagerduty,"
                        "opsgenie,discord,mattermost,mmost,mmosts,rocket,rockets,ntfy,ntfys,"
                        "json,jsons,form,forms,xml,xmls")

# --- Metrics (/metrics, Prometheus text format, bearer token with the read scope) ----------
# The business gauges (WIP, AR, cases, inbox) are computed at most this often.
METRICS_CACHE_SECONDS = envint("METRICS_CACHE_SECONDS", 30)

# --- Single sign-on (OpenID Connect), on when OIDC_RP_CLIENT_ID is set ----------------------
OIDC_RP_CLIENT_ID = os.environ.get("OIDC_RP_CLIENT_ID", "")
OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
OIDC_RP_CLIENT_SECRET = os.environ.get("OIDC_RP_CLIENT_SECRET", "")
OIDC_RP_SIGN_ALGO = os.environ.get("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = os.environ.get("OIDC_RP_SCOPES", "openid email profile")
OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("OIDC_OP_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = os.environ.get("OIDC_OP_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = os.environ.get("OIDC_OP_USER_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = os.environ.get("OIDC_OP_JWKS_ENDPOINT", "")
# A provider with one signing key may sign ID tokens without a key id: then set it to 0.
OIDC_VERIFY_KID = envbool("OIDC_VERIFY_KID", True)
# The claim that carries a person's groups or roles at the provider, and how its values map
# to OpsView's roles ("provider value=role", comma-separated; role `staff` makes an admin).
OIDC_ROLE_CLAIM = os.environ.get("OIDC_ROLE_CLAIM", "groups")
OIDC_ROLE_MAP = dict(item.split("=", 1) for item in envlist("OIDC_ROLE_MAP", "") if "=" in item)
# Only people the provider gives at least one mapped role may log in.
OIDC_REQUIRE_ROLE = envbool("OIDC_REQUIRE_ROLE", True)
LOGIN_REDIRECT_URL_FAILURE = "/accounts/login/?sso=failed"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"] + (
    ["config.sso.RoleMappingBackend"] if OIDC_ENABLED else [])

# --- Celery -------------------------------------------------------------------------------
# Without a broker, tasks run in-process (eager) and the in-memory transport is never used.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "") or "memory://localhost/"
CELERY_TASK_ALWAYS_EAGER = (CELERY_BROKER_URL.startswith("memory://")
                            or envbool("CELERY_TASK_ALWAYS_EAGER", False))
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A safety net, not a fix: a prefork pool child above this resident size (KiB) is replaced
# once its task is done (bench/load.py shows RSS flat under a sustained feed).
CELERY_WORKER_MAX_MEMORY_PER_CHILD = envint("CELERY_WORKER_MAX_MEMORY_PER_CHILD_KIB", 512_000)
CELERY_TASK_TIME_LIMIT = 600
CELERY_TASK_SOFT_TIME_LIMIT = 540
# Longer than the longest task, so an unacknowledged message is not redelivered while it runs.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = OPSVIEW_TIME_ZONE  # the digest hour is the firm's
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "opsview")
# Inbox retention (prune_inbox): processed rows of months older than this many are dropped;
# dead letters, unprocessed rows and corrected events stay. 0 keeps everything.
INBOX_RETENTION_MONTHS = envint("INBOX_RETENTION_MONTHS", 13)
# Monthly inbox partitions created ahead of the current month (PostgreSQL).
INBOX_PARTITIONS_AHEAD = envint("INBOX_PARTITIONS_AHEAD", 3)

CELERY_BEAT_SCHEDULE = {
    "inbox-partitions": {"task": "ingestion.tasks.ensure_inbox_partitions",
                         "schedule": crontab(hour=3, minute=17)},
    "sweep-inbox": {"task": "ingestion.tasks.sweep_inbox",
                    "schedule": float(envint("INGEST_SWEEP_EVERY_SECONDS", 60))},
    "evaluate-time-rules": {"task": "exceptions.tasks.evaluate_time_rules", "schedule": 300.0},
    # The workers append WIP day changes; folding them keeps the WIP trend's read small.
    "compact-wip-day-changes": {"task": "opsview.tasks.compact_wip_day_changes",
                                "schedule": 60.0},
    "sla-sweep": {"task": "exceptions.tasks.sla_sweep", "schedule": 60.0},
    "sweep-deliveries": {"task": "integrations.tasks.sweep_deliveries", "schedule": 60.0},
    "alert-digests": {"task": "integrations.tasks.send_digests",
                      "schedule": crontab(hour=envint("ALERT_DIGEST_HOUR", 7), minute=0)},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
    # Apprise's own debug lines can name a service's address and tokens.
    "loggers": {"apprise": {"level": "WARNING"}},
}
