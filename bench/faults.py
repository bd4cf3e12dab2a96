"""Fault injection: the real stack loses nothing and counts nothing twice when parts of it fail.

    python bench/faults.py                       # every scenario, about ten minutes
    python bench/faults.py --scenario pg_restart --scenario kill9

Runs on a private PostgreSQL cluster (port 5433) and a private Redis (port 6391) that it
creates under /tmp/opsview-faults, so it may stop and start them without touching anything
else. Needs the PostgreSQL server binaries (initdb, pg_ctl) and redis-server.

Each scenario starts the real processes: gunicorn serving the webhook (2 workers) and two
Celery workers (solo pool) on Redis; a sender posts the simulator's firm (small, three
months, about 14,700 events) as signed batches at a steady rate and, like any Standard
Webhooks sender, retries a batch on a connection error or a 5xx with the same webhook-id.
The sweeper (beat's `sweep_inbox`) is sent every 10 s.

Scenarios:
  clean              every event once, in time order: the reference
  kill9              kill -9 a worker while it processes a batch (twice), restart it
  redis_restart      Redis shut down without saving (the queued messages are lost) for 8 s
  pg_restart         PostgreSQL crashed (immediate shutdown) for 6 s while events flow
  backlog            no workers while every event is sent, then two workers catch up
  duplicate_shuffle  every event twice, in a random order, in random batch sizes

After each: wait until the inbox has nothing pending; run the time-based rules and the SLA
sweep once at a pinned moment (bench/faults_probe.py); then compare with the clean run:
  - every KPI endpoint's JSON (fixed parameters), except the fields that measure the run
    rather than the business: integration-health `duplicates` and `conflicts` (repeat
    deliveries, which the scenarios cause on purpose), utilization `freshness_seconds`
    (age of the newest event,
    measured now) and exceptions `mttr_seconds`/`mtta_seconds` (how long cases stayed open
    during processing, which depends on arrival order);
  - a digest of every business table (rows by external keys);
  - the open exception cases (type, fingerprint, status, severity, money at stake);
  - the inbox: nothing pending, no row stuck.
Writes artifacts/faults.json; exits 1 if any scenario differs from the clean run.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

WORK = "/tmp/opsview-faults"
PG_PORT, REDIS_PORT, WEB_PORT = 5433, 6391, 8791
QUEUE = "opsview-faults"
PRIVATE_BROKER = f"redis://127.0.0.1:{REDIS_PORT}/0"
SECRET_KEY = "faults-" + "k" * 50
SCENARIOS = ["clean", "kill9", "redis_restart", "pg_restart", "backlog", "duplicate_shuffle"]
# Fields that measure the run rather than the business (see the module docstring).
RUN_FIELDS = {"duplicates", "conflicts", "freshness_seconds", "mttr_seconds", "mtta_seconds"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)


# --- Private services ------------------------------------------------------------------------
def as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class Postgres:
    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            sys.exit("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.bin = bins[-1]
        self.data = os.path.join(WORK, "pg")
        self.url = f"postgresql://postgres@127.0.0.1:{PG_PORT}/"

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(as_postgres([f"{self.bin}/pg_ctl", "-D", self.data, *args]))

    def init(self) -> None:
        if os.path.exists(self.data):
            self.stop()  # a cluster left running by an interrupted run
            shutil.rmtree(self.data)
        os.makedirs(self.data)
        if os.geteuid() == 0:
            shutil.chown(WORK, "postgres")
            shutil.chown(self.data, "postgres")
        run(as_postgres([f"{self.bin}/initdb", "-D", self.data, "-U", "postgres",
                         "--auth=trust", "-E", "UTF8", "--no-sync"]))
        self.start()

    def start(self) -> None:
        # fsync off: the operating system does not crash here, PostgreSQL does. Commits stay
        # synchronous, so what was acknowledged survives an immediate shutdown through WAL.
        self.pg_ctl("-w", "-l", os.path.join(WORK, "pg.log"), "-o",
                    f"-p {PG_PORT} -k {WORK} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c max_connections=200", "start")

    def crash(self) -> None:
        self.pg_ctl("-m", "immediate", "stop")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.pg_ctl("-m", "fast", "stop")

    def execute(self, sql: str, db: str = "postgres") -> Any:
        """SELECT: its rows; anything else: the cursor."""
        with psycopg.connect(self.url + db, autocommit=True) as conn:
            return conn.execute(sql).fetchall() if sql.lstrip().upper().startswith(
                "SELECT") else conn.execute(sql)


class Redis:
    def __init__(self) -> None:
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", WORK], stdout=subprocess.DEVNULL)
        for _ in range(50):
            if subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "ping"],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        sys.exit("private Redis did not start")

    def stop(self) -> None:
        """Shut down without saving: every queued message is gone."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def queue_length(self) -> int | None:
        result = subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "-n", "0", "llen", QUEUE],
                                capture_output=True, text=True)
        return int(result.stdout.strip() or 0) if result.returncode == 0 else None


# --- The application's processes -------------------------------------------------------------
def app_env(db: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{PG_PORT}/{db}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
        "REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/1",
        "CELERY_QUEUE": QUEUE, "INGEST_SWEEP_AFTER_SECONDS": "15",
        "DEBUG": "0", "SECRET_KEY": SECRET_KEY, "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0", "SECURE_HSTS_SECONDS": "0", "PYTHONPATH": ROOT,
    })
    return env


def manage(db: str, *args: str) -> str:
    return run([sys.executable, "manage.py", *args], cwd=ROOT, env=app_env(db)).stdout


class Stack:
    """gunicorn and the Celery workers for one scenario's database."""

    def __init__(self, db: str) -> None:
        self.db, self.env = db, app_env(db)
        self.web = None
        self.workers = [None, None]

    def start_web(self) -> None:
        self.web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "-w", "2", "-b",
             f"127.0.0.1:{WEB_PORT}", "--timeout", "60", "--graceful-timeout", "5",
             "--log-level", "warning"], cwd=ROOT, env=self.env,
            # The log outlives this call: the server writes to it until it is stopped.
            stderr=open(os.path.join(WORK, f"web-{self.db}.log"), "w"))  # noqa: SIM115
        for _ in range(100):
            try:
                requests.get(f"http://127.0.0.1:{WEB_PORT}/ingest/schemas/", timeout=10)
                return
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not start")

    def start_worker(self, n: int) -> None:
        self.workers[n] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", QUEUE,
             "-n", f"faults{n}@%h", "--pool", "solo", "--without-heartbeat",
             "--without-mingle", "--without-gossip", "-l", "warning"], cwd=ROOT, env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(WORK, f"worker{n}-{self.db}.log"), "a"))  # noqa: SIM115

    def kill9(self, n: int) -> None:
        self.workers[n].send_signal(signal.SIGKILL)
        self.workers[n].wait()

    def stop(self) -> None:
        """The inbox is drained by now: a worker still in its drain loop need not finish it."""
        for process in [self.web, *self.workers]:
            if process and process.poll() is None:
                process.terminate()
        for process in [self.web, *self.workers]:
            if process:
                try:
                    process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


class Sweeper(threading.Thread):
    """What beat does every minute, every 10 s: re-enqueue inbox rows left pending."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        from celery import Celery

        # Celery prefers the environment's CELERY_BROKER_URL to an app's own broker (CI sets
        # it to its Redis): main() points it at the private one before any sweeper starts.
        self.app = Celery(broker=PRIVATE_BROKER)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(10):
            try:
                self.app.send_task("ingestion.tasks.sweep_inbox", queue=QUEUE)
            except Exception as exc:  # noqa: BLE001 - Redis is down in one scenario
                log(f"  sweeper: could not send ({type(exc).__name__})")


# --- Events and delivery ---------------------------------------------------------------------
def firm_events(end: dt.datetime, months: int) -> list[dict[str, Any]]:
    from simulator.firm import FirmSimulator

    return list(FirmSimulator("small", seed=11, end=end, months=months).events())


def unique(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # CloudEvents make source + id the key: one id under two sources is two events.
    seen, result = set(), []
    for event in events:
        if (event["source"], event["id"]) not in seen:
            seen.add((event["source"], event["id"]))
            result.append(event)
    return result


def batches_of(events: list[dict[str, Any]], sizes: Iterator[int]) -> list[list[dict[str, Any]]]:
    result, start = [], 0
    while start < len(events):
        size = next(sizes)
        result.append(events[start:start + size])
        start += size
    return result


def plan(scenario: str, delivered: list[dict[str, Any]], rng: random.Random,
         ) -> list[list[dict[str, Any]]]:
    """The batches a scenario sends."""
    if scenario == "clean":
        ordered = sorted(unique(delivered), key=lambda e: (e["time"], e["id"], e["source"]))
        return batches_of(ordered, iter(lambda: 100, None))
    if scenario == "duplicate_shuffle":
        twice = unique(delivered) * 2
        rng.shuffle(twice)
        return batches_of(twice, iter(lambda: rng.randint(1, 250), None))
    return batches_of(delivered, iter(lambda: 100, None))  # the simulator's own order


class Sender:
    """Posts batches at a steady rate from two threads; retries like a webhook sender."""

    def __init__(self, secret: str, slug: str, batches: list[list[dict[str, Any]]], rate: float,
                 ) -> None:
        from ingestion.events import BATCHED, dumps

        self.secret, self.url = secret, f"http://127.0.0.1:{WEB_PORT}/ingest/{slug}/events"
        self.bodies = [(f"msg_{i}", dumps(batch).encode(), len(batch))
                       for i, batch in enumerate(batches)]
        self.content_type, self.rate = BATCHED, rate
        self.lock = threading.Lock()
        self.next_index, self.sent_events, self.total = 0, 0, sum(b[2] for b in self.bodies)
        self.statuses, self.retries, self.accepted, self.duplicates = {}, 0, 0, 0
        self.rejected, self.failures = 0, []
        self.started = time.monotonic()

    @property
    def fraction(self) -> float:
        return self.sent_events / self.total

    def _take(self) -> tuple[str, bytes, int] | None:
        with self.lock:
            if self.next_index >= len(self.bodies):
                return None
            item = self.bodies[self.next_index]
            self.next_index += 1
            # Pace: the n-th event leaves no earlier than n / rate seconds after the start.
            due = self.started + self.sent_events / self.rate
            self.sent_events += item[2]
        time.sleep(max(0.0, due - time.monotonic()))
        return item

    def _deliver(self, session: requests.Session, msg_id: str, body: bytes) -> None:
        from ingestion.signing import signed_headers

        for attempt in range(60):
            headers = signed_headers(self.secret, msg_id, body)
            headers["content-type"] = self.content_type
            try:
                response = session.post(self.url, data=body, headers=headers, timeout=30)
                status = response.status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            with self.lock:
                self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            if status == 202:
                result = response.json()
                with self.lock:
                    self.accepted += result["accepted"]
                    self.duplicates += result["duplicates"]
                    self.rejected += len(result["rejected"])
                return
            if isinstance(status, int) and status < 500 and status != 429:
                self.failures.append(f"{msg_id}: {status} {response.text[:200]}")
                return
            with self.lock:
                self.retries += 1
            time.sleep(min(5.0, 0.25 * 2 ** attempt))
        self.failures.append(f"{msg_id}: gave up after 60 attempts")

    def _work(self) -> None:
        session = requests.Session()
        while (item := self._take()) is not None:
            self._deliver(session, item[0], item[1])

    def start(self) -> None:
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(2)]
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()


# --- Measuring -------------------------------------------------------------------------------
def pending(pg: Postgres, db: str) -> int | None:
    """Inbox rows not processed, plus processed batches the exception rules have not seen
    (their worker killed or the database restarted in between; the sweeper announces them)."""
    try:
        return pg.execute(
            "SELECT (SELECT count(*) FROM ingestion_inboxevent WHERE status = 'pending') + "
            "(SELECT count(*) FROM ingestion_processedbatch)", db)[0][0]
    except psycopg.Error:
        return None  # PostgreSQL is restarting


def wait_drained(pg: Postgres, db: str, timeout: float = 600) -> tuple[float, int | None]:
    started, quiet, at_start = time.monotonic(), 0, None
    while time.monotonic() - started < timeout:
        count = pending(pg, db)
        at_start = count if at_start is None else at_start
        quiet = quiet + 1 if count == 0 else 0
        if quiet >= 3:
            return time.monotonic() - started, at_start
        time.sleep(1)
    raise RuntimeError(f"{db}: inbox still has {pending(pg, db)} pending after {timeout} s")


def kpi_urls(start: dt.date, end: dt.date) -> dict[str, str]:
    last_month = (end.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
    window = f"start={start}&end={end}"
    urls = {
        "wip": f"wip?as_of={end}",
        "invoice-readiness": f"invoice-readiness?period={end.strftime('%Y-%m')}",
        "invoice-readiness-previous": f"invoice-readiness?period={last_month}",
        "posting-latency": f"posting-latency?{window}",
        "utilization": f"utilization?{window}",
        "integration-health": f"integration-health?{window}",
        "receivables": f"receivables?as_of={end}",
        "exceptions": "exceptions",
    }
    for group in ("project", "practice", "client"):
        urls[f"margin-{group}"] = f"margin?{window}&group_by={group}"
    return urls


def fetch_kpis(token: str, urls: dict[str, str]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    result = {}
    for name, path in urls.items():
        response = requests.get(f"http://127.0.0.1:{WEB_PORT}/api/v1/kpis/{path}",
                                headers=headers, timeout=60)
        response.raise_for_status()
        result[name] = response.json()
    return result


def read_during_outage(token: str) -> dict[str, Any]:
    """What the read API answers while the database is down: 503 with Retry-After, not 500
    (tests/opsview/test_errors.py shows the same for pages)."""
    base = f"http://127.0.0.1:{WEB_PORT}"
    reads = {"api": (f"{base}/api/v1/kpis/wip", {"Authorization": f"Bearer {token}"})}
    statuses = {}
    for name, (url, headers) in reads.items():
        try:
            response = requests.get(url, headers=headers, timeout=30, allow_redirects=False)
            statuses[name] = response.status_code
            if response.status_code == 503 and "Retry-After" not in response.headers:
                statuses[name] = "503 without Retry-After"
        except requests.RequestException as exc:
            statuses[name] = type(exc).__name__
    return statuses


def probe(db: str, evaluate_at: str) -> dict[str, Any]:
    output = run([sys.executable, "bench/faults_probe.py", "--evaluate-at", evaluate_at],
                 cwd=ROOT, env=app_env(db)).stdout
    return json.loads(output)


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Paths where two JSON values differ, fields in RUN_FIELDS left out."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in sorted(set(expected) | set(actual)):
            if key in RUN_FIELDS:
                continue
            found += differences(expected.get(key), actual.get(key), f"{path}.{key}")
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(
            actual):
        found = []
        for i, (a, b) in enumerate(zip(expected, actual, strict=False)):
            found += differences(a, b, f"{path}[{i}]")
        return found
    return [] if expected == actual else [f"{path}: {str(expected)[:80]} != {str(actual)[:80]}"]


# --- Scenarios -------------------------------------------------------------------------------
def inject(scenario: str, stack: Stack, pg: Postgres, redis: Redis, sender: Sender,
           notes: list[str], token: str, outage_reads: dict[str, Any]) -> None:
    """Runs beside the sender: waits for the moment, breaks something, repairs it."""

    def when(fraction: float) -> None:
        while sender.fraction < fraction and any(t.is_alive() for t in sender.threads):
            time.sleep(0.05)

    if scenario == "kill9":
        for n, fraction in ((0, 0.3), (1, 0.6)):
            when(fraction)
            deadline = time.monotonic() + 5
            while not pending(pg, stack.db) and time.monotonic() < deadline:
                time.sleep(0.05)  # kill it with work in flight
            stack.kill9(n)
            notes.append(f"worker {n} killed -9 at {sender.fraction:.0%} sent, "
                         f"{pending(pg, stack.db)} pending")
            time.sleep(2)
            stack.start_worker(n)
    elif scenario == "redis_restart":
        when(0.3)
        lost = redis.queue_length()
        redis.stop()
        notes.append(f"Redis down at {sender.fraction:.0%} sent, {lost} queued messages lost")
        time.sleep(8)
        redis.start()
        notes.append(f"Redis back at {sender.fraction:.0%} sent")
    elif scenario == "pg_restart":
        when(0.3)
        pg.crash()
        notes.append(f"PostgreSQL crashed (immediate shutdown) at {sender.fraction:.0%} sent")
        time.sleep(1)
        outage_reads.update(read_during_outage(token))
        notes.append(f"reads while it was down: {outage_reads}")
        time.sleep(5)
        pg.start()
        notes.append(f"PostgreSQL back at {sender.fraction:.0%} sent")


def run_scenario(scenario: str, pg: Postgres, redis: Redis, delivered: list[dict[str, Any]],
                 secret: str, token: str, rate: float, evaluate_at: str, urls: dict[str, str],
                 ) -> dict[str, Any]:
    db = f"faults_{scenario}"
    pg.execute(f"DROP DATABASE IF EXISTS {db}")
    pg.execute(f"CREATE DATABASE {db} TEMPLATE faults_template")
    stack, sweeper = Stack(db), Sweeper()
    notes, outage_reads, started = [], {}, time.monotonic()
    try:
        stack.start_web()
        if scenario != "backlog":
            stack.start_worker(0)
            stack.start_worker(1)
        sweeper.start()
        batches = plan(scenario, delivered, random.Random(5))
        sender = Sender(secret, "faults", batches, rate)
        sender.start()
        injector = threading.Thread(target=inject,
                                    args=(scenario, stack, pg, redis, sender, notes, token,
                                          outage_reads))
        injector.start()
        sender.join()
        injector.join()
        send_seconds = time.monotonic() - started
        if scenario == "backlog":
            notes.append(f"backlog: {pending(pg, db)} events pending, "
                         f"{redis.queue_length()} messages queued, no worker running")
            stack.start_worker(0)
            stack.start_worker(1)
        drain_seconds, at_start = wait_drained(pg, db)
        kpis = fetch_kpis(token, urls)
    finally:
        sweeper.stopped.set()
        stack.stop()
    state = probe(db, evaluate_at)
    return {
        "scenario": scenario, "events_sent": sender.total, "requests": len(sender.bodies),
        "statuses": sender.statuses, "retries": sender.retries, "accepted": sender.accepted,
        "duplicates": sender.duplicates, "rejected": sender.rejected,
        "failures": sender.failures, "send_seconds": round(send_seconds, 1),
        "drain_seconds_after_send": round(drain_seconds, 1), "pending_after_send": at_start,
        "notes": notes, "outage_reads": outage_reads, "kpis": kpis, "state": state,
    }


def compare(clean: dict[str, Any], result: dict[str, Any]) -> list[str]:
    found = []
    found += [f"kpi {d}" for d in differences(clean["kpis"], result["kpis"])]
    for table, digest in clean["state"]["tables"].items():
        if result["state"]["tables"].get(table) != digest:
            found.append(f"table {table}: {digest} != {result['state']['tables'].get(table)}")
    open_cases = {tuple(c) for c in clean["state"]["open_cases"]}
    now_open = {tuple(c) for c in result["state"]["open_cases"]}
    if open_cases != now_open:
        found.append(f"open cases: {len(open_cases)} != {len(now_open)}; only in clean "
                     f"{sorted(open_cases - now_open)[:3]}, only here "
                     f"{sorted(now_open - open_cases)[:3]}")
    if result["state"]["inbox"].get("pending"):
        found.append(f"inbox: {result['state']['inbox']['pending']} pending")
    if result["state"].get("unseen_batches"):
        found.append(f"{result['state']['unseen_batches']} processed batches the rules "
                     "never saw")
    if result["failures"]:
        found.append(f"deliveries failed: {result['failures'][:3]}")
    if any(status != 503 for status in result.get("outage_reads", {}).values()):
        found.append(f"reads during the outage not answered 503: {result['outage_reads']}")
    if any(status.startswith("5") and status != "503" for status in result["statuses"]):
        found.append(f"a 5xx other than 503: {result['statuses']}")
    return found


def prepare_template(pg: Postgres) -> tuple[str, str]:
    pg.execute("DROP DATABASE IF EXISTS faults_template")
    pg.execute("CREATE DATABASE faults_template")
    log("migrating the template database")
    manage("faults_template", "migrate", "--noinput")
    secret = manage("faults_template", "create_source", "faults", "--rate-limit",
                    "1000000").strip().splitlines()[-1]
    manage("faults_template", "shell", "-c",
           "from django.contrib.auth.models import User; "
           "User.objects.create_user('faults', password=None, is_staff=False)")
    token = manage("faults_template", "create_api_token", "faults").strip().splitlines()[-1]
    return secret, token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=SCENARIOS[1:],
                        help="run only these (the clean reference always runs)")
    parser.add_argument("--rate", type=int, default=1000, help="events per second sent")
    parser.add_argument("--months", type=int, default=3, help="the simulated firm's span")
    parser.add_argument("--out", default=os.path.join(ROOT, "artifacts", "faults.json"))
    args = parser.parse_args()
    os.environ["CELERY_BROKER_URL"] = PRIVATE_BROKER  # the sweeper's, see Sweeper
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()

    os.makedirs(WORK, exist_ok=True)
    pg, redis = Postgres(), Redis()
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    delivered = firm_events(end, args.months)
    start_day = min(e["time"] for e in delivered)[:10]
    urls = kpi_urls(dt.date.fromisoformat(start_day), end.date())
    evaluate_at = (end + dt.timedelta(minutes=30)).isoformat()
    log(f"{len(delivered)} deliveries of {len(unique(delivered))} events, {start_day} to "
        f"{end:%Y-%m-%d %H:%M}")
    results, failed = [], False
    try:
        log("starting a private PostgreSQL (port 5433) and Redis (port 6391)")
        pg.init()
        redis.start()
        secret, token = prepare_template(pg)
        for scenario in ["clean", *(args.scenario or SCENARIOS[1:])]:
            log(f"scenario {scenario}")
            result = run_scenario(scenario, pg, redis, delivered, secret, token, args.rate,
                                  evaluate_at, urls)
            result["differences"] = [] if scenario == "clean" else compare(results[0], result)
            failed |= bool(result["differences"])
            results.append(result)
            verdict = "reference" if scenario == "clean" else (
                "EQUAL to clean" if not result["differences"] else
                f"DIFFERS: {result['differences'][:5]}")
            log(f"  sent {result['events_sent']} in {result['requests']} requests "
                f"({result['retries']} retries, statuses {result['statuses']}); drained "
                f"{result['drain_seconds_after_send']} s after the last send, from "
                f"{result['pending_after_send']} pending; {verdict}")
            for note in result["notes"]:
                log(f"  - {note}")
    finally:
        redis.stop()
        pg.stop()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump([{k: v for k, v in r.items() if k not in ("kpis", "state")} | {
            "inbox": r["state"]["inbox"], "open_cases": len(r["state"]["open_cases"]),
            "cases": r["state"]["cases"],
            "tables": {t: d["rows"] for t, d in r["state"]["tables"].items()}}
            for r in results], handle, indent=1)
    print_table(results)
    sys.exit(1 if failed else 0)


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"\n{'scenario':<18} {'sent':>6} {'retries':>7} {'5xx':>5} {'pending':>10} "
          f"{'drain s':>7}  result")
    for r in results:
        errors = sum(n for s, n in r["statuses"].items() if s.startswith("5") or not
                     s.isdigit())
        verdict = "reference" if r["scenario"] == "clean" else (
            "equal to clean" if not r["differences"] else f"{len(r['differences'])} differences")
        print(f"{r['scenario']:<18} {r['events_sent']:>6} {r['retries']:>7} {errors:>5} "
              f"{r['pending_after_send']:>10} {r['drain_seconds_after_send']:>7}  {verdict}")


if __name__ == "__main__":
    main()
