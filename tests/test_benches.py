"""Every script in bench/ runs, at a tiny size, so none can rot: this module runs the ones
no other test runs; the figures they print go in the docs, not in assertions."""
import json
import os
import shutil
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("DATABASE_URL", "")
BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
needs_postgres = pytest.mark.skipif(not DATABASE_URL.startswith("postgres"),
                                    reason="the benches load PostgreSQL")
needs_redis = pytest.mark.skipif(not BROKER_URL.startswith("redis"),
                                 reason="the bench's worker needs Redis")

# What runs each script (a test, or a script a test runs); a new script must be added here.
RUN_BY = {
    "faults.py": "tests/ingestion/test_faults.py",
    "faults_probe.py": "bench/faults.py",
    "load.py": "tests/ingestion/test_load_bench.py",
    "ingest_bench.py": "tests/test_benches.py",
    "kpi_bench.py": "tests/test_benches.py",
    "rules_bench.py": "tests/test_benches.py",
    "slow_clients.py": "tests/test_benches.py",
    "pool_bench.py": "tests/test_benches.py",
    "page_loads.py": "tests/test_page_loads_browser.py",
    "demo_site.py": "bench/page_loads.py",
    "triage_bench.py": "tests/test_benches.py",
    "api_snapshot.py": "tests/test_benches.py",
    "partition_migration.py": "tests/test_benches.py",
}


def test_every_bench_script_is_run_by_a_test():
    scripts = {path.name for path in (ROOT / "bench").glob("*.py")}
    assert scripts == set(RUN_BY)
    for script, test in RUN_BY.items():
        assert script in (ROOT / test).read_text(), (script, test)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_database(kind):
    """A database of the bench's own, named after this run's so parallel runs never share."""
    return f"{DATABASE_URL.rsplit('/', 1)[1]}_bench_{kind}"


def run_bench(*args, timeout=600, expect=0):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_VERSION",)}
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == expect, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def drop(database):
    server = DATABASE_URL.rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


@needs_postgres
@needs_redis
def test_ingest_bench_runs():
    out = run_bench("bench/ingest_bench.py", "--events", "300", "--clients", "2",
                    "--web-workers", "1", "--port", str(free_port()),
                    "--database", bench_database("ingest"), "--broker-url", BROKER_URL)
    assert "accepted over HTTP" in out
    assert "inbox after: {'processed': 300}" in out


@needs_postgres
@needs_redis
def test_ingest_bench_scale_out_runs_each_count_from_the_same_events():
    database = bench_database("ingest_scale")
    out = run_bench("bench/ingest_bench.py", "--events", "400", "--clients", "2",
                    "--web-workers", "1", "--port", str(free_port()), "--workers", "1", "2",
                    "--database", database, "--broker-url", BROKER_URL)
    assert f"this machine has {os.cpu_count()} CPU cores" in out
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["workers"])
    rows = [lines[start + 1].split(), lines[start + 3].split()]
    assert [row[0] for row in rows] == ["1", "2"]
    assert rows[0][3] == "100%"  # one worker is the linear reference
    for row in rows:
        assert float(row[1]) > 0 and float(row[5]) > 0  # events/s, the workers' CPU seconds
    # Every count processed all the events, each run from the accepted state again.
    assert out.count("inbox after: {'processed': 400}") == 3
    assert out.count("deadlocks: ") == 2  # each run says what its database backends waited on
    server = DATABASE_URL.rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres") as conn:  # nothing left behind
        assert not conn.execute("SELECT 1 FROM pg_database WHERE datname LIKE %s",
                                [database + "%"]).fetchall()


@needs_postgres
def test_partition_migration_bench_runs():
    out = run_bench("bench/partition_migration.py", "--rows", "3000",
                    "--database", bench_database("partition"))
    assert "after:  {'dead': 60, 'pending': 15, 'processed': 2925} (total 3,000)" in out
    assert "next id 3,001 follows max id 3,000" in out
    assert "prune_inbox --months 12" in out


@needs_postgres
def test_kpi_bench_runs():
    database = bench_database("kpi")
    try:
        out = run_bench("bench/kpi_bench.py", "--entries", "2000", "--events", "5000",
                        "--syncs", "1000", "--runs", "1", "--database", database)
    finally:
        drop(database)
    assert "2,000 time entries" in out and "/api/v1/kpis/exceptions" in out


@needs_postgres
def test_triage_bench_runs():
    out = run_bench("bench/triage_bench.py", "--cases", "300", "--runs", "1",
                    "--database", bench_database("triage"))
    assert "300 open cases" in out and "/exceptions/?view=grouped" in out


@needs_postgres
def test_rules_bench_runs():
    out = run_bench("bench/rules_bench.py", "--scale", "0.01",
                    "--database", bench_database("rules"))
    assert out.count("evaluate_time_rules") == 3


@pytest.fixture
def nginx():
    path = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if path is None:
        if os.environ.get("OPSVIEW_REQUIRE_NGINX"):
            pytest.fail("nginx is not installed (Debian package nginx)")
        pytest.skip("nginx is not installed (Debian package nginx)")
    return path


SLOW = ["--slow", "6", "--interval", "1", "--seconds", "6", "--timeout", "4"]


def test_slow_clients_stop_gunicorn_alone_but_not_nginx_in_front(nginx):
    """The production shape (deploy/nginx in front) keeps taking deliveries while six
    sockets trickle one byte a second; gunicorn straight on the port, as before, does not.
    The figures of a longer run are in docs/operations.md."""
    behind_nginx = json.loads(run_bench("bench/slow_clients.py", "--front", "nginx", *SLOW))
    loaded = behind_nginx["slow_clients"]
    assert loaded["sent"] > 0 and loaded["accepted"] == loaded["sent"], behind_nginx
    alone = json.loads(run_bench("bench/slow_clients.py", "--front", "gunicorn", *SLOW,
                                 expect=1))
    assert alone["slow_clients"]["accepted"] < alone["slow_clients"]["sent"], alone


@needs_postgres
def test_a_connection_pool_serves_the_load_persistent_connections_refuse():
    """Two gunicorn processes of eight threads under sixteen senders, against a role allowed
    six connections: with a pool of three per process every delivery is accepted; with a
    connection per thread (DB_CONN_MAX_AGE), as before, some are refused. Figures of a
    longer run are in docs/operations.md."""
    database = bench_database("pool")
    pooled = json.loads(run_bench("bench/pool_bench.py", "--mode", "pool", "--seconds", "5",
                                  "--database", database))
    assert pooled["sent"] > 0 and pooled["accepted"] == pooled["sent"], pooled
    assert pooled["peak_connections"] <= pooled["connection_limit"]
    persistent = json.loads(run_bench("bench/pool_bench.py", "--mode", "persistent",
                                      "--seconds", "5", "--database", database, expect=1))
    assert persistent["accepted"] < persistent["sent"], persistent


def test_api_snapshot_records_the_same_answers_twice_and_names_a_changed_one(tmp_path):
    """Two recordings of the hand-worked firm agree; a recording with one number altered
    does not, and `compare` names the endpoint whose answer changed."""
    first, second, altered = (tmp_path / f"{name}.json" for name in ("1", "2", "altered"))
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}
    # Both at once: each builds the firm in a database of its own.
    recorders = [subprocess.Popen([sys.executable, "bench/api_snapshot.py", "record", str(out),
                                   "--firms", "hand"], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for out in (first, second)]
    for recorder in recorders:
        output, _ = recorder.communicate(timeout=300)
        assert recorder.returncode == 0, output[-4000:]
    assert "answers identical" in run_bench("bench/api_snapshot.py", "compare", str(first),
                                            str(second))
    recording = json.loads(first.read_text())
    wip = recording["answers"]["hand /api/v1/kpis/wip"]["body"]
    wip["currencies"]["USD"]["total"] = str(Decimal(wip["currencies"]["USD"]["total"]) + 1)
    altered.write_text(json.dumps(recording))
    out = run_bench("bench/api_snapshot.py", "compare", str(first), str(altered), expect=1)
    assert "hand /api/v1/kpis/wip: differs" in out
    assert "$.body.currencies.USD.total" in out
