"""Sustained load: the simulator's live feed at a target rate, with the dashboards polled.

A `--duration`-second run (default 10 minutes) against the real stack — gunicorn, `--workers`
Celery workers and beat on PostgreSQL and Redis, each a subprocess:

1. feed:    signed batches of `FirmSimulator.live_events` (time approved, its sync telemetry)
            POSTed to /ingest/<source>/events, paced at `--rate` events/s;
2. poller:  every `--poll-interval` s a logged-in user loads each dashboard page and the
            panels it pulls in, and a bearer token reads every /api/v1/kpis/* endpoint;
3. sampler: every 5 s, the inbox backlog and the age of its oldest pending row (PostgreSQL),
            each worker's RSS (its process tree), and the CPU time and the time spent
            waiting for a CPU of each component (/proc).

Reported over the steady window (the feed after a `--warmup` of 30 s): accepted and
processed events/s, the backlog at start and end and its slope, inbox lag p50/p95/max,
worker RSS at start/middle/end and its slope, dashboard p50/p95 per URL, CPU by component
and error counts. Target: no backlog growth at 2,000 events/s, worker RSS flat.

Usage (PostgreSQL and Redis running; run it on an otherwise idle machine):
    python bench/load.py                                 # 10 minutes at 2,000 events/s
    python bench/load.py --duration 60 --rate 500        # a short trial
It drops and recreates the database of --database-url (default `opsview_load`), uses the
Celery queue `opsview-load` on --broker-url (Redis db 5) and the next Redis db (6) as the
cache, and writes the figures with their time series to --out and a chart to --chart.
Definitions of every figure: docs/load.md.
"""
import argparse
import datetime as dt
import html
import itertools
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections import defaultdict
from pathlib import Path

import psycopg
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingestion.events import BATCHED, dumps
from ingestion.signing import signed_headers
from simulator import SIZES, FirmSimulator

UTC = dt.UTC
QUEUE = "opsview-load"
SOURCE = "load"
USERNAME, PASSWORD = "loadbench", "loadbench-password-7"
SAMPLE_SECONDS = 5
PAGES = ["/", "/readiness/", "/wip/", "/latency/", "/integration/", "/margin/"]
KPIS = ["wip", "invoice-readiness", "posting-latency", "utilization", "integration-health",
        "margin", "receivables"]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message):
    print(message, file=sys.stderr, flush=True)


# --- Statistics --------------------------------------------------------------------------
def percentile(values, q):
    """Linear interpolation between closest ranks: PostgreSQL's percentile_cont."""
    values = sorted(values)
    if not values:
        return None
    position = (len(values) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return values[low] + (values[high] - values[low]) * (position - low)


def slope_per_minute(points):
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if not spread:
        return None
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def rounded(value, digits=1):
    return None if value is None else round(value, digits)


# --- The stack -----------------------------------------------------------------------------
def stack_env(args):
    """The environment every process of the stack shares. DEBUG stays off: with DEBUG on
    Django keeps every SQL statement in memory, which would distort worker RSS."""
    broker = urllib.parse.urlsplit(args.broker_url)
    cache_db = int(broker.path.strip("/") or 0) + 1
    env = dict(os.environ)
    env.update(DATABASE_URL=args.database_url, CELERY_BROKER_URL=args.broker_url,
               REDIS_URL=broker._replace(path=f"/{cache_db}").geturl(), CELERY_QUEUE=QUEUE,
               SECRET_KEY="opsview-load-bench", DEBUG="0", ALLOWED_HOSTS="127.0.0.1,localhost",
               SECURE_COOKIES="0", SECURE_SSL_REDIRECT="0", SECURE_HSTS_SECONDS="0",
               LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    return env


def manage(env, *command, extra_env=None):
    """Run a management command; its stdout."""
    result = subprocess.run([sys.executable, "manage.py", *command], check=False, cwd=ROOT,
                            env={**env, **(extra_env or {})}, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"manage.py {' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return result.stdout


def recreate_database(database_url):
    name = urllib.parse.urlsplit(database_url).path.strip("/")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise SystemExit(f"refusing to drop a database named {name!r}")
    server = urllib.parse.urlsplit(database_url)._replace(path="/postgres").geturl()
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def purge_queue(broker_url):
    """Drop our queue's messages (tasks the seeding enqueued, or a crashed run's)."""
    client = redis.Redis.from_url(broker_url)
    for key in client.scan_iter(match=f"{QUEUE}*"):
        client.delete(key)


def seed(env, size):
    """A source, a user with a token, and a small firm's history, processed. Returns
    (source secret, API token)."""
    secret = manage(env, "create_source", SOURCE, "--rate-limit", "0").strip().splitlines()[-1]
    manage(env, "createsuperuser", "--noinput", "--username", USERNAME, "--email",
           "load@example.com", extra_env={"DJANGO_SUPERUSER_PASSWORD": PASSWORD})
    token = manage(env, "create_api_token", USERNAME, "--name", "load bench").strip()
    manage(env, "simulate", "--size", size, "--months", "1", "--source", SOURCE, "--process")
    manage(env, "process_inbox")
    return secret, token.splitlines()[-1]


class Stack:
    """The subprocesses: gunicorn, the Celery workers and beat, each in its own process
    group so that stopping one stops its children too."""

    def __init__(self, env, log_dir):
        self.env, self.log_dir = env, log_dir
        self.processes = {}  # name -> Popen

    def start(self, name, command):
        with open(self.log_dir / f"{name}.log", "w") as output:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", *command], cwd=ROOT, env=self.env, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True)

    def start_web(self, port, workers, threads):
        self.start("web", ["gunicorn", "config.wsgi", "-w", str(workers), "-k", "gthread",
                           "--threads", str(threads), "-b", f"127.0.0.1:{port}",
                           "--timeout", "120", "--log-level", "warning"])
        url = f"http://127.0.0.1:{port}/ingest/{SOURCE}/events"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.options(url, timeout=10)
                return
            except requests.RequestException:  # not listening yet, or still importing
                self.check_alive()
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not start")

    def start_workers(self, count, pool, concurrency):
        for i in range(count):
            self.start(f"worker-{i}", [
                "celery", "-A", "config", "worker", "-Q", QUEUE, "-n", f"load{i}@%h",
                "--pool", pool, *(["-c", str(concurrency)] if pool != "solo" else []),
                "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "warning"])

    def start_beat(self):
        self.start("beat", ["celery", "-A", "config", "beat", "-l", "warning",
                            "-s", str(self.log_dir / "celerybeat-schedule"),
                            "--pidfile", str(self.log_dir / "celerybeat.pid")])

    def workers(self):
        return {name: p.pid for name, p in self.processes.items() if name.startswith("worker")}

    def check_alive(self):
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see "
                                   f"{self.log_dir / name}.log")

    def stop(self):
        """SIGTERM to each main process (a warm shutdown: Celery lets its pool child finish
        the task in hand, gunicorn its workers the request in hand), then SIGKILL to each
        process group, so nothing is left behind."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()


def _signal_group(pid, signum):
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


# --- The feed ------------------------------------------------------------------------------
class BatchTemplates:
    """Pre-serialized batches of live events with holes for the ids and the time, so a
    request costs a string join and an HMAC, not building and encoding 100 events. Every
    event gets a unique id and every time entry a unique id, so each event is new work."""

    def __init__(self, simulator, batch, count=50):
        self.run = uuid.uuid4().hex[:8]
        self.templates = [self._template(simulator.live_events(
            dt.datetime.now(UTC), count=math.ceil(batch / 2))[:batch]) for _ in range(count)]

    @staticmethod
    def _template(events):
        text = dumps(events)
        entry_ids = dict.fromkeys(e["data"]["time_entry_id"] for e in events
                                  if e["type"].startswith("time_entry."))
        for k, event in enumerate(events):
            text = text.replace(f'"{event["id"]}"', f'"@@E{k}@@"')
        for k, entry_id in enumerate(entry_ids):
            text = text.replace(entry_id, f"@@T{k}@@")
        text = text.replace(f'"{events[0]["time"]}"', '"@@TIME@@"')
        text = text.replace(f'"work_date":"{events[0]["data"]["work_date"]}"',
                            '"work_date":"@@DATE@@"')
        return re.split(r"@@(\w+?)@@", text)  # literal, hole, literal, hole, …

    def body(self, request_no):
        now = dt.datetime.now(UTC)
        prefix = f"{self.run}-{request_no:07d}-"
        fill = {"E": prefix, "T": f"TE-LOAD-{prefix}"}
        stamp, day = now.isoformat().replace("+00:00", "Z"), now.date().isoformat()
        parts = self.templates[request_no % len(self.templates)]
        out = []
        for i, part in enumerate(parts):
            if i % 2 == 0:
                out.append(part)
            elif part == "TIME":
                out.append(stamp)
            elif part == "DATE":
                out.append(day)
            else:
                out.append(fill[part[0]] + part[1:].zfill(3))
        return "".join(out).encode()


class Feed:
    """Signed batches POSTed at a fixed pace by `threads` threads: request n is due at
    start + n × batch / rate. A thread that falls behind sends at once; at the end of the
    duration the feed stops, and what it did not manage to send is counted as unsent."""

    def __init__(self, url, secret, templates, rate, batch, duration, threads):
        self.url, self.secret, self.templates = url, secret, templates
        self.batch, self.interval, self.duration = batch, batch / rate, duration
        self.total = max(1, round(duration * rate / batch))
        self.threads = threads
        self.lock, self.next_no = threading.Lock(), 0
        self.responses = []  # (seconds since start, accepted, status, ms, behind schedule s)
        self.totals = defaultdict(int)

    def run(self, started, stop):
        self.started = started
        pool = [threading.Thread(target=self._send_loop, args=(stop,), daemon=True)
                for _ in range(self.threads)]
        for thread in pool:
            thread.start()
        return pool

    def _send_loop(self, stop):
        session = requests.Session()
        while not stop.is_set():
            with self.lock:
                request_no, self.next_no = self.next_no, self.next_no + 1
            if request_no >= self.total or time.monotonic() >= self.started + self.duration:
                return
            due = self.started + request_no * self.interval
            if (delay := due - time.monotonic()) > 0:
                time.sleep(delay)
            self._send(session, request_no, time.monotonic() - due)

    def _send(self, session, request_no, behind):
        body = self.templates.body(request_no)
        headers = signed_headers(self.secret, f"msg_{uuid.uuid4().hex}", body)
        headers["content-type"] = BATCHED
        sent = time.monotonic()
        answer = {"accepted": 0, "duplicates": 0, "rejected": []}
        try:
            response = session.post(self.url, data=body, headers=headers, timeout=60)
            status = str(response.status_code)
            if response.status_code == 202:
                answer = response.json()
        except requests.RequestException as exc:
            status = type(exc).__name__
        done = time.monotonic()
        with self.lock:
            self.totals["sent"] += self.batch
            self.totals["accepted"] += answer["accepted"]
            self.totals["duplicates"] += answer["duplicates"]
            self.totals["rejected"] += len(answer["rejected"])
            self.totals[f"http {status}"] += 1
            self.responses.append((done - self.started, answer["accepted"], status,
                                   (done - sent) * 1000, max(0.0, behind)))


# --- The dashboards ------------------------------------------------------------------------
class Poller:
    """A logged-in user loading every dashboard page and the panels it pulls in (htmx
    hx-get, as a browser would), and an API client reading every KPI with a bearer token."""

    def __init__(self, base, token, interval):
        self.base, self.interval = base, interval
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Bearer {token}"
        self.browser = requests.Session()
        self.samples = []  # (seconds since start, url, kind, ms, status)
        self.lock = threading.Lock()

    def log_in(self):
        login = f"{self.base}/accounts/login/"
        page = self.browser.get(login, timeout=30)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
        answer = self.browser.post(login, data={
            "username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token,
            "next": "/"}, headers={"Referer": login}, timeout=30, allow_redirects=False)
        if answer.status_code != 302 or "sessionid" not in self.browser.cookies:
            raise RuntimeError(f"log-in failed: {answer.status_code}")

    def run(self, started, stop):
        self.started = started
        thread = threading.Thread(target=self._loop, args=(stop,), daemon=True)
        thread.start()
        return [thread]

    def _loop(self, stop):
        while not stop.is_set():
            round_started = time.monotonic()
            self.poll_once(stop)
            stop.wait(max(0.0, self.interval - (time.monotonic() - round_started)))

    def poll_once(self, stop):
        for page in PAGES:
            if stop.is_set():
                return
            answer = self._get(self.browser, page, "page")
            for panel in re.findall(r'hx-get="(/panels/[^"]+)"', answer.text if answer else ""):
                self._get(self.browser, html.unescape(panel), "panel")
        for kpi in KPIS:
            if stop.is_set():
                return
            self._get(self.api, f"/api/v1/kpis/{kpi}", "api")

    def _get(self, session, path, kind):
        started = time.monotonic()
        try:
            answer = session.get(self.base + path, timeout=60, allow_redirects=False)
            status = str(answer.status_code)
        except requests.RequestException as exc:
            answer, status = None, type(exc).__name__
        done = time.monotonic()
        with self.lock:
            self.samples.append((done - self.started, path.split("?")[0], kind,
                                 (done - started) * 1000, status))
        return answer


# --- Sampling ------------------------------------------------------------------------------
def read_proc():
    """{pid: (parent pid, CPU seconds used, command name)} for every process."""
    processes = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        processes[int(entry.name)] = (int(fields[1]),
                                      (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, name)
    return processes


def process_tree(root, processes):
    """The root and all its descendants."""
    children = defaultdict(list)
    for pid, (ppid, _, _) in processes.items():
        children[ppid].append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in processes:
            tree.append(pid)
            todo.extend(children[pid])
    return tree


def rss_mib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def run_queue_wait(pid):
    """Seconds the process's threads have spent runnable but waiting for a CPU (the second
    field of /proc/<pid>/task/<tid>/schedstat): how much a busy machine holds it back."""
    total = 0
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with open(f"{task.path}/schedstat") as schedstat:
                total += int(schedstat.read().split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return total / 1e9


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Sampler:
    """Every SAMPLE_SECONDS: the inbox (pending rows, oldest pending age, rows received),
    each worker's RSS, and CPU seconds by component, accumulated from per-process deltas."""

    def __init__(self, database_url, stack, feed):
        self.database_url, self.stack, self.feed = database_url, stack, feed
        self.database = urllib.parse.urlsplit(database_url).path.strip("/")
        self.samples = []
        self.cpu_seen = {}  # pid -> (cpu seconds, run-queue seconds) at the previous sample
        self.cpu_total = defaultdict(float)  # component -> seconds on a CPU
        self.wait_total = defaultdict(float)  # component -> seconds runnable, waiting for one
        self.system = self._system_cpu()
        self.machine_cpu = 0.0  # busy CPU seconds of the whole machine, all cores

    def run(self, started, stop):
        self.started = started
        self.conn = psycopg.connect(self.database_url, autocommit=True)
        self.base_id = self.conn.execute(
            "SELECT coalesce(max(id), 0) FROM ingestion_inboxevent").fetchone()[0]
        self.take()
        thread = threading.Thread(target=self._loop, args=(stop,), daemon=True)
        thread.start()
        return [thread]

    def _loop(self, stop):
        while not stop.wait(SAMPLE_SECONDS - (time.monotonic() - self.started) % SAMPLE_SECONDS):
            self.take()

    def take(self):
        t = time.monotonic() - self.started
        # The partial index on pending rows keeps this cheap however large the inbox grows;
        # max(id) counts rows received without scanning them.
        pending, oldest = self.conn.execute(
            "SELECT count(*), extract(epoch FROM now() - min(received_at)) "
            "FROM ingestion_inboxevent WHERE status = 'pending'").fetchone()
        received = self.conn.execute(
            "SELECT coalesce(max(id), 0) FROM ingestion_inboxevent").fetchone()[0] - self.base_id
        # What the database's busy backends are doing: on CPU (no wait event), or waiting
        # for a lock, I/O or the client.
        active = dict(self.conn.execute(
            "SELECT coalesce(wait_event_type, 'CPU'), count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND state = 'active' "
            "AND pid <> pg_backend_pid() GROUP BY 1").fetchall())
        processes = read_proc()
        rss = {name: round(rss_mib(process_tree(pid, processes)), 1)
               for name, pid in self.stack.workers().items()}
        self._account_cpu(processes)
        system = self._system_cpu()
        total, idle = system[0] - self.system[0], system[1] - self.system[1]
        busy = 1 - idle / total if total else 0.0
        self.machine_cpu += (total - idle) / CLOCK_TICKS
        self.system = system
        self.samples.append({
            "t": round(t, 1), "pending": pending, "oldest_pending_s": rounded(oldest and
                                                                              float(oldest)),
            "received": received, "processed": received - pending,
            "accepted": self.feed.totals["accepted"], "rss_mib": rss,
            "cpu_s": {k: round(v, 2) for k, v in self.cpu_total.items()},
            "cpu_wait_s": {k: round(v, 2) for k, v in self.wait_total.items()},
            "pg_active": active,
            "machine_busy": round(busy, 3), "machine_cpu_s": round(self.machine_cpu, 2),
        })

    def _component(self, pid, name, trees):
        for component, pids in trees.items():
            if pid in pids:
                return component
        if name == "postgres":
            return ("postgres (this database)" if f" {self.database} " in cmdline(pid)
                    else "postgres (other: background, other databases)")
        if name.startswith("redis-server"):
            return "redis"
        return None

    def _account_cpu(self, processes):
        trees = {"bench (feed, poller, sampler)": {os.getpid()}}
        for name, process in self.stack.processes.items():
            component = "workers" if name.startswith("worker") else name
            trees.setdefault(component, set()).update(process_tree(process.pid, processes))
        seen = {}
        for pid, (_, cpu, name) in processes.items():
            component = self._component(pid, name, trees)
            if component is None:
                continue
            seen[pid] = (cpu, run_queue_wait(pid))
            # A process born since the last sample (a new database connection) counts whole;
            # at the first sample every process only sets its baseline. What a process used
            # between the last sample and its exit is lost: a short undercount.
            before = self.cpu_seen.get(pid, (0.0, 0.0) if self.cpu_seen else seen[pid])
            self.cpu_total[component] += cpu - before[0]
            # A thread that exited takes its schedstat with it: never count backwards.
            self.wait_total[component] += max(0.0, seen[pid][1] - before[1])
        self.cpu_seen = seen

    @staticmethod
    def _system_cpu():
        """(all, idle) jiffies of all cores: user nice system idle iowait irq softirq steal."""
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
        return sum(fields), fields[3] + fields[4]


def inbox_figures(database_url, window_start, window_end):
    """Lag (processed_at − received_at) of the rows received in the window, rows still
    pending counted at their age; rows processed in the window; statuses."""
    with psycopg.connect(database_url) as conn:
        count, pending, (p50, p95), worst = conn.execute("""
            SELECT count(*), count(*) FILTER (WHERE status = 'pending'),
                   percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY lag), max(lag)
            FROM (SELECT status,
                         extract(epoch FROM coalesce(processed_at, now()) - received_at) AS lag
                  FROM ingestion_inboxevent
                  WHERE received_at >= %s AND received_at < %s) received""",
            (window_start, window_end)).fetchone()
        processed = conn.execute(
            "SELECT count(*) FROM ingestion_inboxevent WHERE processed_at >= %s "
            "AND processed_at < %s", (window_start, window_end)).fetchone()[0]
        statuses = dict(conn.execute(
            "SELECT status, count(*) FROM ingestion_inboxevent GROUP BY status").fetchall())
    return {"rows": count, "still_pending": pending, "p50": rounded(p50 and float(p50), 2),
            "p95": rounded(p95 and float(p95), 2), "max": rounded(worst and float(worst), 2),
            "processed_in_window": processed, "statuses": statuses}


# --- The report ----------------------------------------------------------------------------
def summarize(args, feed, poller, sampler, inbox, window, drained):
    """Every figure over the steady window (`window`: seconds since the feed started), the
    verdict, and the time series behind them."""
    start, end = window
    steady = [s for s in sampler.samples if start <= s["t"] <= end]
    report = {
        "config": dict(vars(args)),
        "window_s": [round(start, 1), round(end, 1)],
        **feed_figures(feed, window),
        "processed_per_s": {"steady": round(inbox["processed_in_window"] / (end - start), 1)},
        "backlog": backlog_figures(steady, drained),
        "inbox_lag_s": inbox,
        "worker_rss_mib": rss_figures(steady),
        **cpu_figures(steady),
        "pg_active_backends_mean": {
            kind: round(sum(s["pg_active"].get(kind, 0) for s in steady) / len(steady), 2)
            for kind in sorted({k for s in steady for k in s["pg_active"]})},
        "dashboard_ms": dashboard_figures(poller.samples, window),
    }
    report["verdict"] = verdict(args, report)
    report["series"] = {
        "samples": sampler.samples,
        "requests": [[round(t, 2), a, s, round(ms, 1), round(b, 3)]
                     for t, a, s, ms, b in feed.responses],
        "dashboard": [[round(t, 2), url, kind, round(ms, 1), status]
                      for t, url, kind, ms, status in poller.samples]}
    return report


def feed_figures(feed, window):
    start, end = window
    in_window = [r for r in feed.responses if start <= r[0] < end]
    scheduled = feed.total * feed.batch
    return {
        "accepted_per_s": {"steady": round(sum(r[1] for r in in_window) / (end - start), 1),
                           "overall": round(feed.totals["accepted"] / end, 1)},
        "events": {"scheduled": scheduled,
                   "unsent (feed behind schedule)": scheduled - feed.totals["sent"],
                   **dict(sorted(feed.totals.items()))},
        "sender": {
            "request_ms_p50": rounded(percentile([r[3] for r in feed.responses], 0.5)),
            "request_ms_p95": rounded(percentile([r[3] for r in feed.responses], 0.95)),
            "behind_schedule_s_p95": rounded(
                percentile([r[4] for r in feed.responses], 0.95), 2),
            "behind_schedule_s_max": rounded(
                max((r[4] for r in feed.responses), default=0), 2)},
    }


def backlog_figures(steady, drained):
    drain_seconds, pending_at_feed_end = drained
    return {
        "start": steady[0]["pending"], "end": steady[-1]["pending"],
        "max": max(s["pending"] for s in steady),
        "slope_per_min": rounded(slope_per_minute([(s["t"], s["pending"]) for s in steady])),
        "oldest_pending_s_max": max(s["oldest_pending_s"] or 0 for s in steady),
        "at_feed_end": pending_at_feed_end,
        "drain_s_after_feed": rounded(drain_seconds),
        # Processing alone, once the feed and the dashboards have stopped.
        "drain_rate_per_s": rounded(pending_at_feed_end / drain_seconds
                                    if drain_seconds and pending_at_feed_end else None)}


def rss_figures(steady):
    """Per worker and in total: RSS at start, middle and end of the window, its maximum,
    and its slope over the whole window and over its second half."""
    figures = {}
    for name in [*steady[0]["rss_mib"], "total"]:
        def value(sample, name=name):
            return (sum(sample["rss_mib"].values()) if name == "total"
                    else sample["rss_mib"].get(name, 0))
        figures[name] = {
            "start": rounded(value(steady[0])), "middle": rounded(value(steady[len(steady) // 2])),
            "end": rounded(value(steady[-1])), "max": rounded(max(map(value, steady))),
            "slope_per_min": rounded(slope_per_minute([(s["t"], value(s)) for s in steady]), 2),
            "slope_second_half_per_min": rounded(slope_per_minute(
                [(s["t"], value(s)) for s in steady[len(steady) // 2:]]), 2)}
    return figures


def cpu_figures(steady):
    """CPU used and run-queue wait by component, in % of one core, over the window; what
    the rest of the machine used is the machine's busy time minus the components'."""
    running, waiting = {}, {}
    first, last = steady[0], steady[-1]
    span = last["t"] - first["t"]
    if span <= 0:
        return {"cpu_percent_of_one_core": running, "cpu_wait_percent_of_one_core": waiting}
    for component in sorted(last["cpu_s"]):
        running[component] = rounded(
            100 * (last["cpu_s"][component] - first["cpu_s"].get(component, 0)) / span)
        waiting[component] = rounded(
            100 * (last["cpu_wait_s"][component] - first["cpu_wait_s"].get(component, 0)) / span)
    machine = 100 * (last["machine_cpu_s"] - first["machine_cpu_s"]) / span
    running["other processes on the machine"] = rounded(machine - sum(running.values()))
    running[f"machine ({os.cpu_count()} cores)"] = rounded(machine)
    return {"cpu_percent_of_one_core": running, "cpu_wait_percent_of_one_core": waiting,
            "machine_busy_percent": rounded(machine / os.cpu_count())}


def dashboard_figures(samples, window):
    """p50/p95/max per URL, per kind (page, panel, api) and overall, over the window."""
    start, end = window
    groups = defaultdict(list)
    errors = defaultdict(int)
    for t, url, kind, ms, status in samples:
        if not start <= t <= end:
            continue
        for key in (url, f"all {kind}s", "all"):
            groups[key].append(ms)
            if status != "200":
                errors[key] += 1
    return {key: {"n": len(values), "p50": rounded(percentile(values, 0.5)),
                  "p95": rounded(percentile(values, 0.95)), "max": rounded(max(values)),
                  "errors": errors[key]}
            for key, values in groups.items()}


def verdict(args, report):
    """The targets, as this benchmark judges them: over the steady window the backlog grows
    by less than 1 % of a minute's feed per minute, and over its second half (caches and
    connection pools fill early; a leak keeps growing) no worker's RSS grows by more than
    1 MiB a minute."""
    backlog_slope = report["backlog"]["slope_per_min"] or 0
    rss_slopes = [v["slope_second_half_per_min"] or 0
                  for k, v in report["worker_rss_mib"].items() if k != "total"]
    return {
        "rate_reached": report["accepted_per_s"]["steady"] >= 0.98 * args.rate,
        "no_backlog_growth": backlog_slope <= 0.01 * args.rate * 60,
        "worker_rss_flat": all(slope <= 1.0 for slope in rss_slopes),
    }


def print_report(report, out):
    c = report["config"]
    print(f"\nsustained load: {c['rate']} events/s target, {c['duration']} s, batches of "
          f"{c['batch']}, {c['workers']} workers ({c['pool']}), {c['web_workers']} gunicorn "
          f"workers × {c['web_threads']} threads")
    start, end = report["window_s"]
    print(f"steady window: {start:.0f}–{end:.0f} s (after a {c['warmup']} s warm-up)\n")
    lag, backlog = report["inbox_lag_s"], report["backlog"]
    sender = report["sender"]
    rows = [
        ("accepted events/s (steady / overall)", "{:,.0f} / {:,.0f}".format(
            report["accepted_per_s"]["steady"], report["accepted_per_s"]["overall"])),
        ("processed events/s (steady)", f"{report['processed_per_s']['steady']:,.0f}"),
        ("backlog start → end (max)",
         f"{backlog['start']:,} → {backlog['end']:,} ({backlog['max']:,})"),
        ("backlog slope", f"{backlog['slope_per_min']:+,.0f} events/min"),
        ("oldest pending (max)", f"{backlog['oldest_pending_s_max']:.1f} s"),
        ("drain after the feed stopped", f"{backlog['drain_s_after_feed']} s" + (
            f" ({backlog['drain_rate_per_s']:,.0f} events/s)"
            if backlog["drain_rate_per_s"] else "")),
        ("inbox lag p50 / p95 / max", f"{lag['p50']} / {lag['p95']} / {lag['max']} s"),
        ("  over rows received in the window",
         f"{lag['rows']:,} ({lag['still_pending']:,} still pending at the end)"),
        ("sender request p50 / p95",
         f"{sender['request_ms_p50']} / {sender['request_ms_p95']} ms"),
        ("sender behind schedule p95 / max",
         f"{sender['behind_schedule_s_p95']} / {sender['behind_schedule_s_max']} s"),
        ("machine busy (all cores)", f"{report.get('machine_busy_percent')} %"),
        ("PostgreSQL active backends (mean)", ", ".join(
            f"{kind} {n}" for kind, n in report["pg_active_backends_mean"].items()) or "none"),
    ]
    for label, value in rows:
        print(f"  {label:<38} {value}")
    print("\n  worker RSS (MiB)        start   middle      end      max   slope/min "
          "(2nd half)")
    for name, rss in report["worker_rss_mib"].items():
        print(f"  {name:<20} {rss['start']:>9} {rss['middle']:>8} {rss['end']:>8} "
              f"{rss['max']:>8} {rss['slope_per_min']:>+10} "
              f"({rss['slope_second_half_per_min']:+})")
    print("\n  CPU, % of one core (steady window)                 running  waiting for a CPU")
    for component, percent in report["cpu_percent_of_one_core"].items():
        waiting = report["cpu_wait_percent_of_one_core"].get(component, "")
        print(f"  {component:<46} {percent:>11} {waiting:>12}")
    print("\n  dashboards while loaded (ms)             n      p50      p95      max  errors")
    for url, figures in sorted(report["dashboard_ms"].items(),
                               key=lambda item: (item[0].startswith("all"), item[0])):
        print(f"  {url:<36} {figures['n']:>6} {figures['p50']:>8} {figures['p95']:>8} "
              f"{figures['max']:>8} {figures['errors']:>7}")
    print("\n  requests and events: " + ", ".join(f"{k} {v:,}"
                                                 for k, v in report["events"].items()))
    print(f"  inbox statuses: {lag['statuses']}")
    print("  verdict: " + ", ".join(f"{k} {'yes' if v else 'NO'}"
                                    for k, v in report["verdict"].items()))
    print(f"  figures and time series: {out}")


def write_chart(report, path):
    """Rates, backlog, oldest pending, worker RSS, CPU and dashboard latency over time, as
    one self-contained HTML file (plotly.js inline)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    samples = report["series"]["samples"]
    t = [s["t"] for s in samples]
    fig = make_subplots(rows=6, cols=1, shared_xaxes=True, vertical_spacing=0.03, subplot_titles=[
        "events/s (per 5 s)", "inbox backlog (pending rows)", "oldest pending row (s)",
        "worker RSS (MiB)", "CPU (% of one core)", "dashboard latency (ms)"])

    def per_second(key):
        return [None] + [(b[key] - a[key]) / max(b["t"] - a["t"], 1e-9)
                         for a, b in itertools.pairwise(samples)]

    def add(row, **trace):
        # Each panel has its own legend beside it (legend, legend2, …): one long legend
        # for six panels would leave the reader matching colours across the page.
        kind = trace.pop("kind", go.Scatter)
        fig.add_trace(kind(legend="legend" if row == 1 else f"legend{row}", **trace), row, 1)

    add(1, x=t, y=per_second("accepted"), name="accepted/s")
    add(1, x=t, y=per_second("processed"), name="processed/s")
    add(1, x=[t[0], t[-1]], y=[report["config"]["rate"]] * 2, name="target",
        line={"dash": "dot"})
    add(2, x=t, y=[s["pending"] for s in samples], name="pending rows")
    add(3, x=t, y=[s["oldest_pending_s"] for s in samples], name="oldest pending")
    for name in samples[-1]["rss_mib"]:
        add(4, x=t, y=[s["rss_mib"].get(name) for s in samples], name=name)
    for component in samples[-1]["cpu_s"]:
        add(5, x=t, y=[None] + [
            100 * (b["cpu_s"].get(component, 0) - a["cpu_s"].get(component, 0))
            / max(b["t"] - a["t"], 1e-9) for a, b in itertools.pairwise(samples)],
            name=component)
    by_kind = defaultdict(lambda: ([], []))
    for when, url, kind, ms, status in report["series"]["dashboard"]:
        by_kind[kind][0].append(when)
        by_kind[kind][1].append(ms)
    for kind, (x, y) in by_kind.items():
        add(6, x=x, y=y, mode="markers", name=kind, marker={"size": 4})
    fig.update_yaxes(type="log", title_text="ms (log)", row=6, col=1)
    for row in range(1, 7):
        top = fig.layout[f"yaxis{'' if row == 1 else row}"].domain[1]
        fig.update_layout({"legend" if row == 1 else f"legend{row}": {
            "x": 1.01, "y": top, "xanchor": "left", "yanchor": "top"}})
    start, end = report["window_s"]
    fig.add_vrect(x0=0, x1=start, fillcolor="grey", opacity=0.12, line_width=0,
                  annotation_text="warm-up", row="all", col=1)
    fig.add_vline(x=end, line_dash="dash", line_color="grey", row="all", col=1)
    c = report["config"]
    fig.update_layout(height=1700, title=f"OpsView sustained load: {c['rate']} events/s for "
                                         f"{c['duration']} s, {c['workers']} workers")
    fig.update_xaxes(title_text="seconds since the feed started", row=6, col=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        try:
            fig.write_image(path)
            return path
        except (ImportError, ValueError) as exc:  # kaleido missing: HTML instead
            log(f"cannot write PNG ({exc}); writing HTML")
            path = path.with_suffix(".html")
    fig.write_html(path, include_plotlyjs=True)
    return path


# --- The run -------------------------------------------------------------------------------
def progress_line(t, feed, sampler, last):
    sample = sampler.samples[-1]
    accepted = feed.totals["accepted"]
    rate = (accepted - last[1]) / max(t - last[0], 1e-9)
    rss = sum(sample["rss_mib"].values())
    log(f"  {t:6.0f} s  sent {feed.totals['sent']:>9,}  accepted {rate:7,.0f}/s  "
        f"pending {sample['pending']:>7,}  oldest {sample['oldest_pending_s'] or 0:6.1f} s  "
        f"worker RSS {rss:7.1f} MiB")
    return t, accepted


def run_load(args, stack, secret, token):
    """The feed, the poller and the sampler, then the drain; the report."""
    simulator = FirmSimulator(args.size, seed=args.seed, months=1)
    simulator.master_data()  # the people and projects the seeded firm already has
    simulator.rng = random.Random(f"{args.seed}-live")  # fresh ids, not the seed's next ones
    templates = BatchTemplates(simulator, args.batch)
    base = f"http://127.0.0.1:{args.port}"
    feed = Feed(f"{base}/ingest/{SOURCE}/events", secret, templates, args.rate, args.batch,
                args.duration, args.senders)
    poller = Poller(base, token, args.poll_interval)
    poller.log_in()
    sampler = Sampler(args.database_url, stack, feed)

    stop_feed, stop_sampling = threading.Event(), threading.Event()
    started, started_at = time.monotonic(), dt.datetime.now(UTC)
    sampler.run(started, stop_sampling)
    maintenance = Maintenance(args.database_url)
    if maintenance.needed():
        log("the server has autovacuum off: VACUUM (ANALYZE) of the growing tables every 60 s")
        maintenance.run(started, stop_sampling)
    senders = feed.run(started, stop_feed)
    pollers = poller.run(started, stop_feed) if args.poll_interval > 0 else []
    log(f"feeding {args.rate} events/s for {args.duration} s")
    last = (0.0, 0)
    try:
        while any(s.is_alive() for s in senders):
            time.sleep(0.5)
            stack.check_alive()
            if (t := time.monotonic() - started) - last[0] >= 10 and sampler.samples:
                last = progress_line(t, feed, sampler, last)
        feed_end = time.monotonic() - started
    finally:
        stop_feed.set()
    drained = drain(args.database_url, args.drain_timeout, started + feed_end)
    for thread in pollers:
        thread.join(60)
    stop_sampling.set()
    inbox = inbox_figures(args.database_url, started_at + dt.timedelta(seconds=args.warmup),
                          started_at + dt.timedelta(seconds=feed_end))
    report = summarize(args, feed, poller, sampler, inbox, (args.warmup, feed_end), drained)
    report["started_at"] = started_at.isoformat()
    report["maintenance"] = {"stand_in_for_autovacuum": bool(maintenance.runs),
                             "runs": maintenance.runs}
    return report


class Maintenance:
    """Stands in for autovacuum when the server has it off (`SHOW autovacuum`): every
    `interval` seconds, VACUUM (ANALYZE) of the tables the feed grows and updates, as
    autovacuum would on a production server. Without it the planner keeps the statistics of
    the seeded firm while the tables grow a hundredfold, and the inbox keeps every dead row
    its status updates leave."""

    TABLES = ["ingestion_inboxevent", "opsview_timeentry", "opsview_syncattempt",
              "exceptions_case"]

    def __init__(self, database_url, interval=60):
        self.database_url, self.interval, self.runs = database_url, interval, []

    def needed(self):
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute("SHOW autovacuum").fetchone()[0] == "off"

    def run(self, started, stop):
        thread = threading.Thread(target=self._loop, args=(started, stop), daemon=True)
        thread.start()
        return thread

    def _loop(self, started, stop):
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not stop.wait(self.interval):
                began = time.monotonic()
                for table in self.TABLES:
                    conn.execute(f"VACUUM (ANALYZE) {table}")
                self.runs.append({"t": round(began - started, 1),
                                  "seconds": round(time.monotonic() - began, 2)})


def drain(database_url, timeout, feed_end):
    """(seconds from the end of the feed until the backlog is empty — None if not within
    `timeout` —, the backlog when the feed ended). The sampler keeps sampling meanwhile."""
    log("feed stopped; waiting for the backlog to drain")
    at_feed_end = None
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() - feed_end < timeout:
            pending = conn.execute("SELECT count(*) FROM ingestion_inboxevent "
                                   "WHERE status = 'pending'").fetchone()[0]
            at_feed_end = pending if at_feed_end is None else at_feed_end
            if pending == 0:
                return time.monotonic() - feed_end, at_feed_end
            time.sleep(1)
    return None, at_feed_end


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=600, help="seconds of feed")
    parser.add_argument("--rate", type=int, default=2000, help="events per second")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--workers", type=int, default=2,
                        help="Celery workers, each processing one task at a time")
    parser.add_argument("--pool", choices=["prefork", "solo"], default="prefork",
                        help="each worker's pool (prefork: a main process and one child)")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--senders", type=int, default=16,
                        help="feed threads (enough to keep the pace while requests queue)")
    parser.add_argument("--poll-interval", type=float, default=5.0,
                        help="seconds between dashboard rounds (0: no dashboards)")
    parser.add_argument("--warmup", type=int, default=30, help="seconds left out of figures")
    parser.add_argument("--drain-timeout", type=int, default=120,
                        help="seconds to wait for the backlog after the feed")
    parser.add_argument("--size", choices=sorted(SIZES), default="small",
                        help="the seeded firm's size (one month of it is seeded)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--database-url",
                        default="postgresql://postgres@127.0.0.1:5432/opsview_load")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/5")
    parser.add_argument("--port", type=int, default=8765, help="gunicorn's port")
    parser.add_argument("--out", default="artifacts/load.json")
    parser.add_argument("--chart", default="artifacts/load.html")
    args = parser.parse_args()
    if args.duration <= args.warmup:
        parser.error("--duration must be longer than --warmup")

    # Ctrl-C (even when started in the background, which ignores SIGINT) and a plain kill
    # both unwind through the finally below, which stops the stack.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = ROOT / args.out
    log_dir = out.parent / f"{out.stem}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = stack_env(args)
    log(f"recreating {args.database_url}, migrating, seeding a {args.size} firm")
    recreate_database(args.database_url)
    manage(env, "migrate", "-v0")
    purge_queue(args.broker_url)
    secret, token = seed(env, args.size)
    purge_queue(args.broker_url)  # the seeding's tasks: their rows are processed already

    stack = Stack(env, log_dir)
    try:
        log(f"starting gunicorn, {args.workers} workers and beat (logs in {log_dir})")
        stack.start_workers(args.workers, args.pool, 1)
        stack.start_beat()
        stack.start_web(args.port, args.web_workers, args.web_threads)
        report = run_load(args, stack, secret, token)
    finally:
        log("stopping the stack")
        stack.stop()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    chart = write_chart(report, ROOT / args.chart)
    print_report(report, out)
    print(f"  chart: {chart}")


if __name__ == "__main__":
    main()
