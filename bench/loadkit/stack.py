"""The stack under load: gunicorn, Celery workers and beat as subprocesses over a fresh
database seeded with a firm."""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import psycopg
import redis
import requests

from loadkit.common import PASSWORD, QUEUE, ROOT, SOURCE, USERNAME


def stack_env(args: argparse.Namespace) -> dict[str, str]:
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


def manage(env: dict[str, str], *command: str, extra_env: dict[str, str] | None = None) -> str:
    """Run a management command; its stdout."""
    result = subprocess.run([sys.executable, "manage.py", *command], check=False, cwd=ROOT,
                            env={**env, **(extra_env or {})}, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"manage.py {' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return result.stdout


def recreate_database(database_url: str) -> None:
    name = urllib.parse.urlsplit(database_url).path.strip("/")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise SystemExit(f"refusing to drop a database named {name!r}")
    server = urllib.parse.urlsplit(database_url)._replace(path="/postgres").geturl()
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def purge_queue(broker_url: str) -> None:
    """Drop our queue's messages (tasks the seeding enqueued, or a crashed run's)."""
    client = redis.Redis.from_url(broker_url)
    for key in client.scan_iter(match=f"{QUEUE}*"):
        client.delete(key)


def seed(env: dict[str, str], size: str) -> tuple[str, str]:
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

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.processes = {}  # name -> Popen

    def start(self, name: str, command: list[str]) -> None:
        with open(self.log_dir / f"{name}.log", "w") as output:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", *command], cwd=ROOT, env=self.env, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True)

    def start_web(self, port: int, workers: int, threads: int) -> None:
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

    def start_workers(self, count: int, pool: str, concurrency: int) -> None:
        for i in range(count):
            self.start(f"worker-{i}", [
                "celery", "-A", "config", "worker", "-Q", QUEUE, "-n", f"load{i}@%h",
                "--pool", pool, *(["-c", str(concurrency)] if pool != "solo" else []),
                "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "warning"])

    def start_beat(self) -> None:
        self.start("beat", ["celery", "-A", "config", "beat", "-l", "warning",
                            "-s", str(self.log_dir / "celerybeat-schedule"),
                            "--pidfile", str(self.log_dir / "celerybeat.pid")])

    def workers(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items() if name.startswith("worker")}

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see "
                                   f"{self.log_dir / name}.log")

    def stop(self) -> None:
        """SIGTERM to each main process (a warm shutdown: Celery lets its pool child finish
        the task in hand, gunicorn its workers the request in hand), then SIGKILL to each
        process group, so nothing is left behind."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)
