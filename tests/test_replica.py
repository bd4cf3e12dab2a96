"""The read replica (core/dbrouting.py) against a real streaming replica.

The module starts its own PostgreSQL primary (wal_level=replica) and a standby made from it
with `pg_basebackup -R`, on their own ports in a temporary directory, and points Django's
connections at them: "default" at the primary, "replica" at the standby. Without the server
binaries these tests are skipped, unless OPSVIEW_REQUIRE_REPLICA=1 (CI) makes that a failure.
"""
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
from asgiref.local import Local
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.signals import request_started
from django.db import OperationalError, connections, reset_queries
from django.http import JsonResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import include, path

from core import dbrouting
from ingestion import pipeline
from ingestion.models import Source
from opsview import models as state

from .conftest import Delivery, make_role_user
from .opsview.firm import firm_events, project

DATABASE = "opsview_replica"
PG_BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _as_postgres(cmd):
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _port(preferred):
    """The preferred port when it is free, else any free one."""
    for candidate in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError("no free port")


class Cluster:
    """A private primary and its streaming standby, each a PostgreSQL server of its own."""

    def __init__(self, root):
        self.bin = PG_BINS[-1]
        self.root = root
        self.primary = os.path.join(root, "primary")
        self.standby = os.path.join(root, "standby")
        self.primary_port = _port(5434)
        self.standby_port = None  # chosen once the primary holds its port

    def run(self, name, *args):
        subprocess.run(_as_postgres([f"{self.bin}/{name}", *args]), check=True,
                       capture_output=True, text=True, timeout=120)

    def start(self, data, port):
        self.run("pg_ctl", "-D", data, "-w", "-l", f"{data}.log", "-o",
                 f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                 "-c wal_level=replica -c max_wal_senders=4 -c hot_standby=on", "start")

    def stop(self, data):
        with contextlib.suppress(subprocess.CalledProcessError):
            self.run("pg_ctl", "-D", data, "-m", "fast", "-w", "stop")

    def create(self):
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self.run("initdb", "-D", self.primary, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                 "--no-sync")
        with open(os.path.join(self.primary, "pg_hba.conf"), "a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")
        self.start(self.primary, self.primary_port)
        self.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary_port),
                 "-U", "postgres", "-D", self.standby, "-R", "-X", "stream",
                 "--checkpoint=fast", "--no-sync")
        self.standby_port = _port(5435)
        self.start(self.standby, self.standby_port)
        self.sql(self.primary_port, f"CREATE DATABASE {DATABASE}", database="postgres")

    def destroy(self):
        self.stop(self.standby)
        self.stop(self.primary)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, port):
        return f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"

    def sql(self, port, statement, database=DATABASE):
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/{database}",
                             autocommit=True) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else None


@contextlib.contextmanager
def connected_to(databases):
    """Django's connections pointed at other databases, then back as they were."""
    saved_settings, saved_connections = connections.settings, connections._connections
    connections.__dict__["settings"] = connections.configure_settings(databases)
    connections._connections = Local(connections.thread_critical)
    ContentType.objects.clear_cache()
    try:
        yield
    finally:
        connections.close_all()
        connections.__dict__["settings"] = saved_settings
        connections._connections = saved_connections
        ContentType.objects.clear_cache()


@pytest.fixture(scope="module")
def cluster(django_db_blocker):
    missing = [name for name in ("initdb", "pg_ctl", "pg_basebackup")
               if not (PG_BINS and os.path.exists(f"{PG_BINS[-1]}/{name}"))]
    if missing:
        reason = f"PostgreSQL server binaries not found ({', '.join(missing)})"
        if os.environ.get("OPSVIEW_REQUIRE_REPLICA"):
            pytest.fail(reason + " and OPSVIEW_REQUIRE_REPLICA is set")
        pytest.skip(reason)
    cluster = Cluster(tempfile.mkdtemp(prefix="opsview-replica-"))
    try:
        cluster.create()
        import dj_database_url

        databases = {
            "default": dj_database_url.parse(cluster.url(cluster.primary_port)),
            "replica": dj_database_url.parse(cluster.url(cluster.standby_port)),
        }
        databases["replica"]["OPTIONS"] = {"connect_timeout": 2}
        with django_db_blocker.unblock(), connected_to(databases):
            call_command("migrate", interactive=False, verbosity=0)
            source = Source.objects.create(slug="mulesoft", name="MuleSoft",
                                           rate_limit_per_minute=0)
            # The hand-worked firm of tests/opsview/firm.py, through the webhook and worker.
            events = firm_events()
            for start in range(0, len(events), 100):
                Delivery(Client(), source).send(*events[start:start + 100])
            pipeline.drain_inbox()
            make_role_user("replica_reader", "finance_ops")
            yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def stack(cluster, django_db_blocker, client):
    """The primary and its standby in use, and a client logged in as finance ops."""
    with django_db_blocker.unblock():
        client.force_login(User.objects.get(username="replica_reader"))
        yield cluster


def wait_for(condition, seconds=15, what="the condition"):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def caught_up(cluster):
    """The standby has replayed everything the primary has written so far."""
    primary_lsn = cluster.sql(cluster.primary_port, "SELECT pg_current_wal_lsn()")[0][0]
    return lambda: cluster.sql(
        cluster.standby_port,
        f"SELECT pg_last_wal_replay_lsn() >= '{primary_lsn}'::pg_lsn")[0][0]


class Capture(CaptureQueriesContext):
    """CaptureQueriesContext for a database that may be down: it does not connect first."""

    def __enter__(self):
        with contextlib.suppress(OperationalError):
            return super().__enter__()
        # Connecting failed: start counting from here (what super() does after connecting).
        self.initial_queries, self.final_queries = len(self.connection.queries_log), None
        request_started.disconnect(reset_queries)
        return self


@contextlib.contextmanager
def captured():
    """The queries run on the primary and on the replica meanwhile."""
    with Capture(connections["default"]) as primary, Capture(connections["replica"]) as replica:
        yield primary, replica


def business_queries(queries):
    """The queries that touch the firm's tables (not sessions, users or groups)."""
    return [q["sql"] for q in queries
            if any(f'"{app}_' in q["sql"] for app in ("opsview", "exceptions", "ingestion"))]


# --- A view that writes, then reads: for the read-after-write tests --------------------------
def write_then_read(request):
    before = state.Project.objects.filter(project_id="P1").exists()
    Source.objects.get_or_create(slug="workday", defaults={"name": "Workday"})
    after = state.Project.objects.filter(project_id="P1").exists()
    return JsonResponse({"before": before, "after": after})


def replica_drops_mid_request(request):
    """Reads once, then loses its replica connection (the first time) and reads again."""
    first = state.Project.objects.count()
    if not hasattr(request, "dropped"):
        request.dropped = True
        connections["replica"].connection.close()  # as when the server goes away
    return JsonResponse({"first": first, "second": state.Project.objects.count()})


urlpatterns = [
    # Under dashboards' names, so the router treats them as such.
    path("wip/", write_then_read, name="wip"),
    path("trends/", replica_drops_mid_request, name="trends"),
    path("", include("config.urls")),
]


# --- The tests --------------------------------------------------------------------------------
def test_a_write_through_the_app_reaches_the_replica(stack, client):
    Delivery(client, Source.objects.get(slug="mulesoft")).send(
        project("P9", "C1", "Data", "US", "USD", "time_and_materials"))
    pipeline.drain_inbox()
    assert state.Project.objects.using("default").filter(project_id="P9").exists()
    wait_for(lambda: state.Project.objects.using("replica").filter(project_id="P9").exists(),
             what="project P9 on the replica")
    assert (state.Project.objects.using("replica").count()
            == state.Project.objects.using("default").count() > 1)


def test_dashboard_and_read_api_reads_go_to_the_replica(stack, client):
    wait_for(caught_up(stack), what="the standby to catch up")
    # Panels and endpoints whose percentiles and skip scans are raw SQL among them.
    for url in ("/wip/", "/panels/wip_summary/", "/panels/latency_summary/?period=2026-03",
                "/panels/health_summary/", "/panels/billing_summary/?period=2026-03",
                "/api/v1/kpis/wip?as_of=2026-03-31", "/api/v1/kpis/posting-latency",
                "/api/v1/kpis/integration-health", "/api/v1/kpis/exceptions",
                "/api/v1/exceptions"):
        with captured() as (primary, replica):
            response = client.get(url)
        assert response.status_code == 200, url
        assert business_queries(replica.captured_queries), url
        assert business_queries(primary.captured_queries) == [], url
        assert dbrouting.LAG_HEADER not in response


def test_the_read_api_answers_the_same_from_the_replica(stack, client):
    wait_for(caught_up(stack), what="the standby to catch up")
    url = "/api/v1/kpis/wip?as_of=2026-03-31"
    from_replica = client.get(url).json()
    client.cookies[dbrouting.PIN_COOKIE] = "1"  # pinned to the primary
    with captured() as (primary, replica):
        from_primary = client.get(url).json()
    assert business_queries(primary.captured_queries) and not replica.captured_queries
    assert from_replica == from_primary and from_primary["currencies"]


def test_the_worker_and_other_pages_stay_on_the_primary(stack, client):
    with captured() as (primary, replica):
        pipeline.drain_inbox()
        assert client.get("/exceptions/").status_code == 200
        assert client.get("/admin/").status_code in (200, 302)
    assert business_queries(primary.captured_queries)
    assert replica.captured_queries == []


@pytest.mark.urls(__name__)
def test_a_request_that_writes_reads_from_the_primary_after_the_write(stack, client):
    with captured() as (primary, replica):
        response = client.get("/wip/")
    assert response.json() == {"before": True, "after": True}
    read_on_replica = business_queries(replica.captured_queries)
    assert len(read_on_replica) == 1 and "opsview_project" in read_on_replica[0]
    on_primary = business_queries(primary.captured_queries)
    assert "ingestion_source" in on_primary[0]
    assert "opsview_project" in on_primary[-1]
    # The same browser's next requests read from the primary for a while.
    assert response.cookies[dbrouting.PIN_COOKIE]["max-age"] == 10
    with captured() as (primary, replica):
        assert client.get("/panels/wip_summary/").status_code == 200
    assert business_queries(primary.captured_queries) and not replica.captured_queries


def test_reads_fall_back_to_the_primary_when_the_replica_is_down(stack, client, monkeypatch):
    monkeypatch.setattr(dbrouting, "_replica_away_until", 0.0)  # restored afterwards
    stack.stop(stack.standby)
    try:
        tried = []
        for _ in range(2):
            started = time.monotonic()
            with captured() as (primary, replica):
                response = client.get("/panels/wip_summary/")
            assert response.status_code == 200
            assert business_queries(primary.captured_queries)
            assert business_queries(replica.captured_queries) == []
            assert time.monotonic() - started < 5
            tried.append(len(replica.captured_queries))
        assert tried == [1, 0]  # the lag probe failed once; the second did not try again
        assert dbrouting._replica_away_until > time.monotonic()
        assert client.get("/api/v1/kpis/wip").status_code == 200
    finally:
        stack.start(stack.standby, stack.standby_port)
    # Once the replica is back and its time away is over, reads return to it.
    dbrouting._replica_away_until = 0.0
    wait_for(caught_up(stack), what="the standby to catch up")
    with captured() as (primary, replica):
        assert client.get("/panels/wip_summary/").status_code == 200
    assert business_queries(replica.captured_queries)


@pytest.mark.urls(__name__)
def test_a_replica_lost_mid_request_has_the_request_answered_from_the_primary(
        stack, client, monkeypatch):
    monkeypatch.setattr(dbrouting, "_replica_away_until", 0.0)  # restored afterwards
    with captured() as (primary, replica):
        response = client.get("/trends/")
    assert response.status_code == 200
    assert response.json()["first"] == response.json()["second"] > 0
    assert len(business_queries(replica.captured_queries)) == 1  # then the connection broke
    assert len(business_queries(primary.captured_queries)) == 2  # the view again, in full
    assert dbrouting._replica_away_until > time.monotonic()


def test_pages_and_api_show_the_lag_of_a_paused_replica(stack, client, settings):
    settings.REPLICA_LAG_WARN_SECONDS = 2
    wait_for(caught_up(stack), what="the standby to catch up")
    stack.sql(stack.standby_port, "SELECT pg_wal_replay_pause()")
    try:
        time.sleep(3)  # the newest replayed transaction grows older than the threshold
        stack.sql(stack.primary_port,
                  "UPDATE opsview_project SET name = name || ' (renamed)' WHERE project_id = 'P1'")
        wait_for(lambda: stack.sql(stack.standby_port, "SELECT pg_last_wal_receive_lsn() > "
                                   "pg_last_wal_replay_lsn()")[0][0], what="WAL received")
        page = client.get("/wip/")
        assert page.status_code == 200
        banner = page.content.decode()
        assert "the read replica they come from is lagging" in banner
        lag = int(page[dbrouting.LAG_HEADER])
        assert lag >= 3 and f"up to {lag} seconds behind" in banner
        api = client.get("/api/v1/kpis/wip")
        assert int(api[dbrouting.LAG_HEADER]) >= 3
        # What the replica answers is indeed behind.
        assert not state.Project.objects.using("replica").filter(
            name__endswith="(renamed)").exists()
    finally:
        stack.sql(stack.standby_port, "SELECT pg_wal_replay_resume()")
    wait_for(caught_up(stack), what="the standby to catch up")
    page = client.get("/wip/")
    assert dbrouting.LAG_HEADER not in page
    assert "lagging" not in page.content.decode()
