"""A busy web tier against PostgreSQL's connection limit: persistent connections per thread,
or a connection pool per process (DB_POOL_MAX_SIZE).

Creates a role whose connections PostgreSQL limits (`--connection-limit`) and a database of
its own, starts gunicorn with threaded workers on it, and sends signed webhook deliveries
from `--clients` concurrent senders for `--seconds`, while it samples how many connections
the role holds. Prints the figures as JSON; exits 1 if any delivery was refused.

    python bench/pool_bench.py --mode persistent   # DB_CONN_MAX_AGE=60: a connection a thread
    python bench/pool_bench.py --mode pool         # DB_POOL_MAX_SIZE = limit / workers

Needs PostgreSQL on 127.0.0.1:5432 (user postgres); drops what it created.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import requests
from slow_clients import free_port, log, wait_for  # this folder's probe of the web tier

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SERVER = "127.0.0.1:5432"
SLUG = "pool-probe"


def admin() -> psycopg.Connection:
    return psycopg.connect(f"postgresql://postgres@{SERVER}/postgres", autocommit=True)


def create_database(name: str, role: str, limit: int) -> None:
    with admin() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT {limit}")
        conn.execute(f"CREATE DATABASE {name} OWNER {role}")


def drop_database(name: str, role: str) -> None:
    with admin() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"DROP ROLE IF EXISTS {role}")


class ConnectionSampler(threading.Thread):
    """The most connections the role held at once, sampled every 50 ms."""

    def __init__(self, role: str) -> None:
        super().__init__(daemon=True)
        self.role, self.peak, self.stop = role, 0, threading.Event()

    def run(self) -> None:
        with admin() as conn:
            while not self.stop.wait(0.05):
                count = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
                                     [self.role]).fetchone()[0]
                self.peak = max(self.peak, count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["persistent", "pool"], default="pool")
    parser.add_argument("--connection-limit", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per process")
    parser.add_argument("--clients", type=int, default=16, help="concurrent senders")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--database", default="opsview_pool_probe")
    args = parser.parse_args()
    role = f"{args.database}_role"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "pool-bench-signing-only")
    import django

    django.setup()
    from ingestion.events import make_event, signed_request

    env = {**os.environ, "DATABASE_URL": f"postgresql://{role}@{SERVER}/{args.database}",
           "SECRET_KEY": "pool-bench-" + uuid.uuid4().hex, "DEBUG": "0",
           "ALLOWED_HOSTS": "127.0.0.1", "SECURE_SSL_REDIRECT": "0",
           "SECURE_HSTS_SECONDS": "0", "SECURE_COOKIES": "0", "LOG_LEVEL": "ERROR",
           "PYTHONPATH": ROOT, "DB_CONN_MAX_AGE": "60", "DB_POOL_MAX_SIZE": "0"}
    for name in ("CELERY_BROKER_URL", "REDIS_URL", "PYTEST_VERSION"):
        env.pop(name, None)  # processing runs in the request (eager): a busy web tier
    if args.mode == "pool":
        env["DB_POOL_MAX_SIZE"] = str(max(1, args.connection_limit // args.workers))
    create_database(args.database, role, args.connection_limit)
    web = None
    sampler = ConnectionSampler(role)
    try:
        def manage(*command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env,
                                  check=True, capture_output=True, text=True).stdout

        manage("migrate", "-v0")
        secret = manage("create_source", SLUG, "--rate-limit", "0").splitlines()[-1]
        port = free_port()
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "-w", str(args.workers),
             "--threads", str(args.threads), "-b", f"127.0.0.1:{port}", "--log-level",
             "error"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/ingest/{SLUG}/events"
        wait_for(url, web)
        sampler.start()
        ends = time.monotonic() + args.seconds

        def sender(_: int) -> dict[str | int, int]:
            statuses = {}
            session = requests.Session()
            while time.monotonic() < ends:
                event = make_event("client.upserted", {"client_id": uuid.uuid4().hex[:12],
                                                       "name": "Pool probe"})
                body, headers = signed_request(secret, [event])
                try:
                    status = session.post(url, data=body, headers=headers, timeout=30).status_code
                except requests.RequestException as exc:
                    status = type(exc).__name__
                statuses[status] = statuses.get(status, 0) + 1
            return statuses

        log(f"{args.mode}: {args.clients} senders for {args.seconds:.0f} s, "
            f"{args.workers} x {args.threads} threads, {args.connection_limit} connections")
        totals = {}
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            for statuses in pool.map(sender, range(args.clients)):
                for status, count in statuses.items():
                    totals[str(status)] = totals.get(str(status), 0) + count
    finally:
        sampler.stop.set()
        if web is not None:
            web.send_signal(signal.SIGTERM)
            web.wait(timeout=30)
        drop_database(args.database, role)
    sent = sum(totals.values())
    report = {"mode": args.mode, "connection_limit": args.connection_limit,
              "gunicorn": f"{args.workers} workers x {args.threads} threads",
              "pool_max_size_per_process": int(env["DB_POOL_MAX_SIZE"]) or None,
              "clients": args.clients, "seconds": args.seconds, "sent": sent,
              "accepted": totals.get("202", 0), "answers": totals,
              "accepted_per_second": round(totals.get("202", 0) / args.seconds, 1),
              "peak_connections": sampler.peak}
    print(json.dumps(report, indent=2))
    return 0 if sent and report["accepted"] == sent else 1


if __name__ == "__main__":
    sys.exit(main())
