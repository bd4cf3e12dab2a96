"""Ingestion throughput against the database's own floor, in one run.

1. floor:      a bare psycopg `executemany` of the same inbox rows, 100 rows a transaction,
               into a copy of the inbox table (same columns and indexes);
2. acceptance: signed batches of 100 events POSTed over HTTP to gunicorn (the real webhook:
               verify, parse, one INSERT per batch, enqueue to Redis after commit);
3. processing: one Celery worker (one process) drains what acceptance enqueued.

With `--workers 1 2 4`, processing runs once per count instead, each run from the same
accepted inbox and queue (a copy of the database taken after acceptance, the queue's
messages put back): N separate `celery worker --pool solo --concurrency 1` commands with
their own hostnames, sharing only PostgreSQL and Redis, as more hosts would. A table gives
the throughput, the efficiency against linear (throughput(N) / (N x throughput(1))) and the
CPU seconds the workers, the database's backends and Redis used during processing.

Usage (PostgreSQL and Redis running):
    python bench/ingest_bench.py --events 50000 --clients 8 --web-workers 2
    python bench/ingest_bench.py --events 50000 --workers 1 2 4
It creates (and drops, unless --keep) the database `opsview_bench_ingest` (`--database`).
tests/test_benches.py runs it at a tiny size so it keeps working.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime as dt
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import psycopg
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PG = "postgresql://postgres@127.0.0.1:5432/"
DB = "opsview_bench_ingest"
BROKER = "redis://127.0.0.1:6379/3"
QUEUE = "bench-ingest"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_events(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """A realistic mix: time-entry lifecycles, master data, invoices and sync telemetry."""
    from ingestion.events import make_event

    rng = random.Random(seed)
    start = dt.datetime(2026, 10, 1, 8, tzinfo=dt.UTC)
    events = []
    for i in range(count):
        when = start + dt.timedelta(seconds=i * 7)
        kind = rng.random()
        if kind < 0.75:
            entry = i // 3
            stage = ("submitted", "approved", "posted")[i % 3]
            events.append(make_event(f"time_entry.{stage}", {
                "time_entry_id": f"te-{entry}", "project_id": f"p-{entry % 400}",
                "person_id": f"u-{entry % 2000}", "work_date": "2026-10-01", "hours": "7.50",
                "billable": True}, time=when, event_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                correlationid=f"te-{entry}"))
        elif kind < 0.80:
            events.append(make_event("project.upserted", {
                "project_id": f"p-{i % 400}", "client_id": f"c-{i % 60}", "name": f"Project {i}",
                "practice": "Data", "legal_entity": "US", "currency": "USD",
                "billing_method": "time_and_materials", "status": "active",
                "rate_card_id": "rc-1"}, time=when,
            event_id=uuid.UUID(int=rng.getrandbits(128)).hex))
        elif kind < 0.85:
            events.append(make_event("person.upserted", {
                "person_id": f"u-{i % 2000}", "name": f"Person {i}", "practice": "Data",
                "cost_rate": "80.00", "bill_rate": "150.00"}, time=when,
                event_id=uuid.UUID(int=rng.getrandbits(128)).hex))
        elif kind < 0.90:
            events.append(make_event("invoice.issued", {
                "invoice_id": f"inv-{i}", "client_id": f"c-{i % 60}", "amount": "1200.00",
                "currency": "USD", "issued_on": "2026-10-31", "due_on": "2026-11-30"},
                time=when, event_id=uuid.UUID(int=rng.getrandbits(128)).hex))
        else:
            ok = rng.random() < 0.9
            data = {"flow": "psa-to-erp", "source_system": "psa", "target_system": "erp",
                    "object_type": "time_entry", "object_id": f"te-{i}", "latency_ms": 850,
                    "attempt": 1}
            if not ok:
                data |= {"error_code": "ERP-409", "error_message": "period closed",
                         "retryable": False}
            events.append(make_event("sync.succeeded" if ok else "sync.failed", data, time=when,
                                     event_id=uuid.UUID(int=rng.getrandbits(128)).hex))
    return events


def setup_database() -> str:
    with psycopg.connect(PG + "postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    env = bench_env()
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run([sys.executable, "manage.py", "create_source", "bench", "--rate-limit",
                          "0"], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def bench_env(**extra: str) -> dict[str, str]:
    # Production settings over plain HTTP on localhost: no redirect to HTTPS, no HSTS.
    env = dict(os.environ)
    env.update(DATABASE_URL=PG + DB, CELERY_BROKER_URL=BROKER, CELERY_QUEUE=QUEUE,
               SECRET_KEY="bench-" + "k" * 40, DEBUG="0", ALLOWED_HOSTS="127.0.0.1",
               SECURE_SSL_REDIRECT="0", SECURE_HSTS_SECONDS="0", SECURE_COOKIES="0",
               LOG_LEVEL="ERROR", PYTHONPATH=ROOT, **extra)
    env.pop("REDIS_URL", None)  # rate limits: the bench source has none
    return env


def floor(events: list[dict[str, Any]], batch: int) -> float:
    """Bare executemany of the same rows, 100 per transaction, into a copy of the inbox."""
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(PG + DB) as conn:
        conn.execute("CREATE TABLE bench_floor (LIKE ingestion_inboxevent INCLUDING ALL)")
        source_id = conn.execute("SELECT id FROM ingestion_source").fetchone()[0]
        conn.commit()
        rows = [(source_id, e["source"], e["id"], e["type"], e["time"], "",
                 e.get("correlationid", ""), json.dumps(e), "", now, "pending", 0, "[]")
                for e in events]
        started = time.perf_counter()
        with conn.cursor() as cur:
            for i in range(0, len(rows), batch):
                cur.executemany(
                    "INSERT INTO bench_floor (source_id, event_source, event_id, type, time, "
                    "subject, correlation_id, raw, content_digest, received_at, status, "
                    "attempts, errors) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s::jsonb)",
                    rows[i:i + batch])
                conn.commit()
        return len(rows) / (time.perf_counter() - started)


def start_web(workers: int, port: int) -> subprocess.Popen[bytes]:
    """gunicorn serving the webhook, once it answers the handshake with 200."""
    env = bench_env()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-w", str(workers), "-b",
         f"127.0.0.1:{port}", "--log-level", "warning"], cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and web.poll() is None:
        try:
            answer = requests.options(f"http://127.0.0.1:{port}/ingest/bench/events",
                                      timeout=5, allow_redirects=False)
            if answer.status_code == 200:
                return web
            problem = f"the handshake answered {answer.status_code}"
            break
        except requests.RequestException:  # not listening yet, or still booting
            time.sleep(0.2)
    else:
        problem = "it exited" if web.poll() is not None else "no answer within 60 s"
    web.terminate()
    web.wait()
    raise RuntimeError(f"gunicorn did not start: {problem}")


def acceptance(events: list[dict[str, Any]], secret: str, batch: int, clients: int, port: int,
               ) -> tuple[int, float]:
    from ingestion.events import signed_request

    requests_ = [signed_request(secret, events[i:i + batch]) for i in range(0, len(events), batch)]
    url = f"http://127.0.0.1:{port}/ingest/bench/events"
    local = threading.local()

    def send(request: tuple[bytes, dict[str, str]]) -> int:
        body, headers = request
        if not hasattr(local, "session"):
            local.session = requests.Session()
        response = local.session.post(url, data=body, headers=headers, timeout=60)
        response.raise_for_status()
        return response.json()["accepted"]

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        accepted = sum(pool.map(send, requests_))
    elapsed = time.perf_counter() - started
    return accepted, accepted / elapsed


def processing(total: int, concurrency: int) -> tuple[float, dict[str, int]]:
    env = bench_env()
    pool = ["--pool", "solo"] if concurrency == 1 else ["--pool", "prefork", "-c",
                                                          str(concurrency)]
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", QUEUE,
         *pool, "--without-heartbeat", "--without-mingle", "--without-gossip",
         "-l", "warning"], cwd=ROOT, env=env)
    try:
        with psycopg.connect(PG + DB, autocommit=True) as conn:
            def pending() -> int:
                return conn.execute("SELECT count(*) FROM ingestion_inboxevent "
                                    "WHERE status = 'pending'").fetchone()[0]

            # The clock starts when the worker has booted and claimed its first batch.
            while pending() == total:
                time.sleep(0.02)
            started, left_at_start = time.perf_counter(), pending()
            while (left := pending()) > 0:
                log(f"  processing: {total - left}/{total}")
                time.sleep(0.25)
            elapsed = time.perf_counter() - started
            statuses = dict(conn.execute("SELECT status, count(*) FROM ingestion_inboxevent "
                                         "GROUP BY status").fetchall())
    finally:
        worker.terminate()
        worker.wait()
    return left_at_start / elapsed, statuses


# --- Scale-out: N separate worker commands ------------------------------------------------
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (and its waited-for children), or None once
    it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # After the command: state is field 3, utime..cstime are fields 14..17.
    return sum(int(value) for value in fields[11:15]) / TICKS


def redis_cpu_seconds(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class CpuMeter:
    """CPU seconds used from `start()` on by the worker processes, the PostgreSQL backends
    connected to the bench's database (but the meter's own), and the Redis server."""

    def __init__(self, conn: psycopg.Connection[Any], workers: list[int], redis_client: Any):
        self.conn, self.workers, self.redis = conn, workers, redis_client
        self.me = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.waits: collections.Counter[str] = collections.Counter()

    def _backends(self) -> list[int]:
        return [pid for (pid,) in self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()").fetchall()]

    def _deadlocks(self) -> int:
        return self.conn.execute("SELECT deadlocks FROM pg_stat_database "
                                 "WHERE datname = current_database()").fetchone()[0]

    def start(self) -> None:
        self.deadlocks_start = self._deadlocks()
        self.redis_start = redis_cpu_seconds(self.redis)
        self.workers_start = sum(cpu_seconds(pid) or 0.0 for pid in self.workers)
        self.sample(first=True)

    def sample(self, first: bool = False) -> None:
        # What the backends are doing: running, waiting on a lock, or idle in a transaction.
        for state, wait_type, wait in self.conn.execute(
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND state <> 'idle'").fetchall():
            self.waits[f"{wait_type}:{wait}" if wait_type else state] += 1
        for pid in self._backends():
            used = cpu_seconds(pid)
            if used is None:
                continue
            # A backend that connects after the start used nothing before it.
            self.first.setdefault(pid, used if first else 0.0)
            self.last[pid] = used

    def stop(self) -> dict[str, float]:
        self.sample()
        return {"workers": sum(cpu_seconds(pid) or 0.0 for pid in self.workers)
                - self.workers_start,
                "postgres": sum(self.last[pid] - self.first[pid] for pid in self.last),
                "redis": redis_cpu_seconds(self.redis) - self.redis_start,
                "deadlocks": self._deadlocks() - self.deadlocks_start}


def snapshot_accepted(redis_client: Any) -> list[bytes]:
    """Keep the accepted state: a copy of the database, and the queue's messages."""
    with psycopg.connect(PG + "postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB}_accepted WITH (FORCE)")
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s", [DB])
        conn.execute(f"CREATE DATABASE {DB}_accepted TEMPLATE {DB}")
    return redis_client.lrange(QUEUE, 0, -1)


def restore_accepted(redis_client: Any, messages: list[bytes]) -> None:
    """Back to the accepted state: the database copied again, the queue refilled."""
    with psycopg.connect(PG + "postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB} TEMPLATE {DB}_accepted")
    # The queue, and what a stopped worker had taken but not acknowledged.
    redis_client.delete(QUEUE, "unacked", "unacked_index", "unacked_mutex")
    if messages:
        redis_client.rpush(QUEUE, *messages)


def start_workers(count: int, run: str) -> list[subprocess.Popen[bytes]]:
    """`count` worker commands, each its own process with its own hostname."""
    env = bench_env()
    return [subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", QUEUE,
         "--pool", "solo", "--concurrency", "1", "-n", f"bench-{run}-{index}@%h",
         "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "warning"],
        cwd=ROOT, env=env, stdout=sys.stderr) for index in range(count)]


def scaled_processing(total: int, count: int, redis_client: Any,
                      ) -> tuple[float, float, dict[str, float], collections.Counter[str],
                                 dict[str, int]]:
    """(events/s, seconds, CPU seconds by component and deadlocks, what the backends were
    seen doing, statuses) of `count` workers draining the accepted inbox."""
    workers = start_workers(count, f"{count}w")
    try:
        with psycopg.connect(PG + DB, autocommit=True) as conn:
            def pending() -> int:
                return conn.execute("SELECT count(*) FROM ingestion_inboxevent "
                                    "WHERE status = 'pending'").fetchone()[0]

            meter = CpuMeter(conn, [worker.pid for worker in workers], redis_client)
            while pending() == total:
                if any(worker.poll() is not None for worker in workers):
                    raise RuntimeError("a worker exited before processing began")
                time.sleep(0.02)
            meter.start()
            started, left_at_start = time.perf_counter(), pending()
            while (left := pending()) > 0:
                log(f"  {count} worker(s): {total - left}/{total}")
                meter.sample()
                time.sleep(0.25)
            elapsed = time.perf_counter() - started
            cpu = meter.stop()
            statuses = dict(conn.execute("SELECT status, count(*) FROM ingestion_inboxevent "
                                         "GROUP BY status").fetchall())
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait()
    return left_at_start / elapsed, elapsed, cpu, meter.waits, statuses


def scale_out(total: int, counts: list[int], redis_client: Any) -> list[dict[str, Any]]:
    """One clean processing run per worker count, from the same accepted state."""
    messages = snapshot_accepted(redis_client)
    rows = []
    for count in counts:
        restore_accepted(redis_client, messages)
        log(f"processing by {count} worker(s)")
        rate, elapsed, cpu, waits, statuses = scaled_processing(total, count, redis_client)
        rows.append({"workers": count, "rate": rate, "seconds": elapsed, "cpu": cpu,
                     "waits": waits, "statuses": statuses})
    return rows


def print_scale_out(rows: list[dict[str, Any]], floor_rate: float) -> None:
    """The scale-out table."""
    base = next((row["rate"] for row in rows if row["workers"] == 1), None)
    cores = os.cpu_count() or 1
    print(f"scale-out: separate worker commands (solo pool, concurrency 1) sharing one "
          f"PostgreSQL and one Redis; this machine has {cores} CPU cores for everything "
          "(workers, PostgreSQL, Redis)")
    print(f"{'workers':>7} {'events/s':>9} {'of floor':>8} {'efficiency':>10} {'seconds':>8} "
          f"{'CPU s: workers':>14} {'postgres':>8} {'redis':>6} {'machine busy':>12}")
    for row in rows:
        cpu = row["cpu"]
        efficiency = (f"{row['rate'] / (row['workers'] * base):.0%}" if base else "n/a")
        busy = (cpu["workers"] + cpu["postgres"] + cpu["redis"]) / (cores * row["seconds"])
        print(f"{row['workers']:>7} {row['rate']:>9.0f} {row['rate'] / floor_rate:>8.0%} "
              f"{efficiency:>10} {row['seconds']:>8.1f} {cpu['workers']:>14.1f} "
              f"{cpu['postgres']:>8.1f} {cpu['redis']:>6.1f} {busy:>12.0%}")
        seen = sum(row["waits"].values()) or 1
        doing = ", ".join(f"{name} {n / seen:.0%}" for name, n in row["waits"].most_common(4))
        print(f"{'':>7} inbox after: {row['statuses']}; deadlocks: {cpu['deadlocks']:.0f}; "
              f"busy backends seen: {doing or 'none'}")
    print("efficiency = events/s with N workers / (N x events/s with 1); machine busy = CPU "
          "seconds of workers + PostgreSQL backends + Redis / (cores x seconds). Redis "
          "counts the whole server; PostgreSQL the bench database's backends only.")


def main() -> None:
    global DB, BROKER
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--worker-concurrency", type=int, default=1,
                        help="processes of the one Celery worker (1: solo pool)")
    parser.add_argument("--workers", type=int, nargs="+", metavar="N",
                        help="scale-out: process the same accepted events once per count, "
                        "with N separate worker commands (e.g. --workers 1 2 4)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--database", default=DB, help="the database to create and drop")
    parser.add_argument("--broker-url", default=BROKER)
    args = parser.parse_args()
    if args.workers and min(args.workers) < 1:
        parser.error("--workers: each count must be at least 1")
    DB, BROKER = args.database, args.broker_url

    os.environ.update(bench_env())
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()

    log(f"building {args.events} events")
    events = make_events(args.events)
    secret = setup_database()
    import redis

    redis_client = redis.Redis.from_url(BROKER)
    redis_client.delete(QUEUE)

    log("floor: bare executemany")
    floor_rate = floor(events, args.batch)
    log("acceptance over HTTP")
    web = start_web(args.web_workers, args.port)
    try:
        accepted, accept_rate = acceptance(events, secret, args.batch, args.clients, args.port)
    finally:
        web.terminate()
        web.wait()
    if args.workers:
        workers = f"{', '.join(map(str, args.workers))} Celery worker(s), one process each"
    else:
        workers = f"1 Celery worker (concurrency {args.worker_concurrency})"
    print(f"events: {args.events}, batch {args.batch}, {args.clients} HTTP clients, "
          f"{args.web_workers} gunicorn workers, {workers}")
    if args.workers:
        try:
            rows = scale_out(accepted, args.workers, redis_client)
        finally:
            if not args.keep:
                with psycopg.connect(PG + "postgres", autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {DB}_accepted WITH (FORCE)")
        process_rate, statuses = rows[0]["rate"], rows[0]["statuses"]
        process_label = f"processed by {rows[0]['workers']} worker(s):"
    else:
        log("processing by one worker")
        process_rate, statuses = processing(accepted, args.worker_concurrency)
        process_label = "processed by one worker:"

    print(f"floor (bare executemany):   {floor_rate:10.0f} events/s")
    print(f"accepted over HTTP:         {accept_rate:10.0f} events/s  "
          f"({accept_rate / floor_rate:.0%} of floor; target 40 %)")
    print(f"{process_label:<27} {process_rate:10.0f} events/s  "
          f"({process_rate / floor_rate:.0%} of floor; target 25 %)")
    print(f"inbox after: {statuses}")
    if args.workers:
        print_scale_out(rows, floor_rate)
    if not args.keep:
        with psycopg.connect(PG + "postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
