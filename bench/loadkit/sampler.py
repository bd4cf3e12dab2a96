"""Sampling every few seconds: the inbox backlog (PostgreSQL), each worker's RSS and each
component's CPU time and run-queue wait (/proc)."""
from __future__ import annotations

import datetime as dt
import os
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import psycopg

from loadkit.common import CLOCK_TICKS, SAMPLE_SECONDS
from loadkit.stats import rounded

if TYPE_CHECKING:
    from loadkit.feed import Feed
    from loadkit.stack import Stack


def read_proc() -> dict[int, tuple[int, float, str]]:
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


def process_tree(root: int, processes: dict[int, tuple[int, float, str]]) -> list[int]:
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


def rss_mib(pids: Iterable[int]) -> float:
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


def run_queue_wait(pid: int) -> float:
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


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Sampler:
    """Every SAMPLE_SECONDS: the inbox (pending rows, oldest pending age, rows received),
    each worker's RSS, and CPU seconds by component, accumulated from per-process deltas."""

    def __init__(self, database_url: str, stack: Stack, feed: Feed) -> None:
        self.database_url, self.stack, self.feed = database_url, stack, feed
        self.database = urllib.parse.urlsplit(database_url).path.strip("/")
        self.samples = []
        self.cpu_seen = {}  # pid -> (cpu seconds, run-queue seconds) at the previous sample
        self.cpu_total = defaultdict(float)  # component -> seconds on a CPU
        self.wait_total = defaultdict(float)  # component -> seconds runnable, waiting for one
        self.system = self._system_cpu()
        self.machine_cpu = 0.0  # busy CPU seconds of the whole machine, all cores

    def run(self, started: float, stop: threading.Event) -> list[threading.Thread]:
        self.started = started
        self.conn = psycopg.connect(self.database_url, autocommit=True)
        self.base_id = self.conn.execute(
            "SELECT coalesce(max(id), 0) FROM ingestion_inboxevent").fetchone()[0]
        self.take()
        thread = threading.Thread(target=self._loop, args=(stop,), daemon=True)
        thread.start()
        return [thread]

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(SAMPLE_SECONDS - (time.monotonic() - self.started) % SAMPLE_SECONDS):
            self.take()

    def take(self) -> None:
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

    def _component(self, pid: int, name: str, trees: dict[str, list[int]]) -> str | None:
        for component, pids in trees.items():
            if pid in pids:
                return component
        if name == "postgres":
            return ("postgres (this database)" if f" {self.database} " in cmdline(pid)
                    else "postgres (other: background, other databases)")
        if name.startswith("redis-server"):
            return "redis"
        return None

    def _account_cpu(self, processes: dict[int, tuple[int, float, str]]) -> None:
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
    def _system_cpu() -> tuple[float, float]:
        """(all, idle) jiffies of all cores: user nice system idle iowait irq softirq steal."""
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
        return sum(fields), fields[3] + fields[4]


def inbox_figures(database_url: str, window_start: dt.datetime, window_end: dt.datetime,
                  ) -> dict[str, Any]:
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
