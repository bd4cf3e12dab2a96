"""Reads of the dashboards and the read API on a read replica (DATABASE_REPLICA_URL).

Only the requests named below, by GET or HEAD, read from the replica; everything else — the
webhook, the worker, the rules, the admin, triage, management commands — runs outside such
a request and stays on the primary ("default"). Within a routed request:
  - login, session and credential tables are read on the primary (a session written a
    moment ago may not have reached the replica yet);
  - once the request writes anything else, its later reads go to the primary, and so do the
    same browser's requests for REPLICA_PIN_SECONDS (a cookie), so a change just made is
    never read back stale;
  - the replica's replay lag is measured first; above REPLICA_LAG_WARN_SECONDS the page
    shows it (templates/opsview/partials/replica_lag.html) and the API sends X-Replica-Lag;
  - a replica that does not answer is left alone for REPLICA_RETRY_SECONDS and the reads go
    to the primary; one that fails mid-request has the view run again on the primary.
Without a "replica" database every read is the primary's, as if this module did not exist.
"""
import contextvars
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django.db.models import Model
from django.http import HttpRequest, HttpResponse

log = logging.getLogger(__name__)

REPLICA = "replica"
PIN_COOKIE = "opsview_primary"
LAG_HEADER = "X-Replica-Lag"
# The dashboard pages and their panels; the read API is everything under api/v1/ by GET.
DASHBOARD_VIEWS = {"home", "readiness", "wip", "latency", "integration", "margin", "close",
                   "reconciliation", "billing", "trends", "item", "panel"}
READ_API_ROUTE = "api/v1/"
# Login, session and credential tables: always the primary's, and writing them (a session
# saved, a token's last use) is bookkeeping no figure is read back from, so it does not pin.
PRIMARY_APPS = {"auth", "sessions", "contenttypes", "admin"}
PRIMARY_MODELS = {"opsview.apitoken", "opsview.auditevent"}

# Per request (each thread or task has its own context): may reads use the replica, and did
# the request write since.
_reads_on_replica = contextvars.ContextVar("reads_on_replica", default=False)
_wrote: contextvars.ContextVar[bool | None] = contextvars.ContextVar("wrote", default=None)
# Per process: until when the replica is considered away (time.monotonic()).
_replica_away_until = 0.0

# The replica's lag: nothing when it has replayed all it received, otherwise how old the
# newest transaction it has replayed is (an upper bound when the primary has been idle).
LAG_SQL = """
    SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0
                WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
           END"""


def replica_configured() -> bool:
    """Whether settings name a read replica."""
    return REPLICA in connections.settings


def _on_primary_always(model: type[Model]) -> bool:
    meta = model._meta
    return meta.app_label in PRIMARY_APPS or meta.label_lower in PRIMARY_MODELS


class ReplicaRouter:
    """Reads to the replica inside a routed request that has not written; everything else,
    and every migration, to the primary."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str:
        """The replica for a routed request's reads until it writes; else the primary."""
        if _reads_on_replica.get() and not _wrote.get() and not _on_primary_always(model):
            return REPLICA
        # Not None: Django would then follow an instance hint, and an object read from the
        # replica would draw its related objects from there after the request wrote.
        return "default"

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        """Always the primary; remembers that the request wrote."""
        if not _on_primary_always(model) and _wrote.get() is not None:
            _wrote.set(True)
        return "default"  # even for an object read from the replica

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool:
        """Any relation: both aliases hold the same database."""
        return True  # one database, two copies of it

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None,
                      **hints: Any) -> bool:
        """Migrations run on the primary only."""
        return db != REPLICA  # it copies the primary's schema


def replica_lag_seconds() -> float:
    """The replica's replay lag in seconds; raises the database's error when it is away."""
    connection = connections[REPLICA]
    if connection.vendor != "postgresql":
        connection.ensure_connection()
        return 0.0
    with connection.cursor() as cursor:
        cursor.execute(LAG_SQL)
        return float(cursor.fetchone()[0])


def _replica_answers() -> float | None:
    """The lag when the replica answers, else None (and it is left alone for a while)."""
    if time.monotonic() < _replica_away_until:
        return None
    try:
        return replica_lag_seconds()
    except (OperationalError, InterfaceError) as exc:
        _set_replica_away(exc)
        return None


def _set_replica_away(exc: Exception) -> None:
    global _replica_away_until
    _replica_away_until = time.monotonic() + settings.REPLICA_RETRY_SECONDS
    log.warning("read replica away, reading from the primary for %ss: %s",
                settings.REPLICA_RETRY_SECONDS, exc)
    connections[REPLICA].close()


class ReplicaRequest(HttpRequest):
    """A request as this middleware leaves it (for the type checker; no instance is made)."""

    replica_lag: float | None  # seconds the replica lags, if worth telling; None otherwise


def _routed(request: HttpRequest) -> bool:
    match = request.resolver_match
    return (request.method in ("GET", "HEAD") and match is not None
            and ((not match.namespace and match.url_name in DASHBOARD_VIEWS)
                 or match.route.startswith(READ_API_ROUTE)))


class ReplicaRoutingMiddleware:
    """Opens each request's routing context, lets routed reads onto the replica, shows its
    lag and pins a browser that just wrote to the primary."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: ReplicaRequest) -> HttpResponse:
        if not replica_configured():
            return self.get_response(request)
        request.replica_lag = None
        wrote = _wrote.set(False)
        on_replica = _reads_on_replica.set(False)
        try:
            response = self.get_response(request)
            if _wrote.get():
                response.set_cookie(PIN_COOKIE, "1", max_age=settings.REPLICA_PIN_SECONDS,
                                    httponly=True, samesite="Lax",
                                    secure=settings.SESSION_COOKIE_SECURE)
        finally:
            _reads_on_replica.reset(on_replica)
            _wrote.reset(wrote)
        if request.replica_lag is not None:
            response[LAG_HEADER] = str(request.replica_lag)
        return response

    def process_view(self, request: ReplicaRequest, view_func: Callable[..., HttpResponse],
                     view_args: tuple[Any, ...], view_kwargs: dict[str, Any]) -> None:
        """Reads of a routed view go to the replica unless it lags or the browser is pinned."""
        if not replica_configured() or not _routed(request) or PIN_COOKIE in request.COOKIES:
            return None
        lag = _replica_answers()
        if lag is None:
            return None
        _reads_on_replica.set(True)
        if lag > settings.REPLICA_LAG_WARN_SECONDS:
            # "up to" so many seconds behind
            request.replica_lag = math.ceil(lag)
        return None

    def process_exception(self, request: ReplicaRequest, exception: Exception,
                          ) -> HttpResponse | None:
        """The replica failed mid-request: answer the same read from the primary."""
        if not (isinstance(exception, (OperationalError, InterfaceError))
                and _reads_on_replica.get() and connections[REPLICA].errors_occurred):
            return None
        _set_replica_away(exception)
        _reads_on_replica.set(False)
        request.replica_lag = None
        match = request.resolver_match
        assert match is not None  # only routed requests read from the replica
        return match.func(request, *match.args, **match.kwargs)
