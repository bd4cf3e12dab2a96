"""Slow clients against the web tier: gunicorn alone, or nginx (deploy/nginx) in front of it.

Starts gunicorn (sync workers, as in production) on a throw-away SQLite database, optionally
real nginx in front with the repository's server block, then times signed webhook deliveries
(one event each, one after another) twice: with no other traffic, and while `--slow` sockets
each send a request one byte every `--interval` seconds (reconnecting when cut off), as a
slow or hostile client does. Prints the figures as JSON; exits 1 if any delivery under slow
clients failed or took longer than `--timeout` seconds.

    python bench/slow_clients.py --front gunicorn   # gunicorn straight on the port
    python bench/slow_clients.py --front nginx      # the production shape

It needs the nginx binary for `--front nginx` (Debian package `nginx`), binds free ports on
127.0.0.1 and leaves nothing behind.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
TEMPLATE = os.path.join(ROOT, "deploy", "nginx", "opsview.conf.template")
SLUG = "slow-probe"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            if requests.options(url, timeout=2, allow_redirects=False).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def nginx_conf(workdir: str, listen: int, upstream: int) -> str:
    """A whole nginx.conf around the repository's server block, everything under `workdir`."""
    with open(TEMPLATE) as template:
        server = (template.read().replace("${OPSVIEW_WEB}", upstream)
                  .replace("${OPSVIEW_LISTEN}", f"127.0.0.1:{listen}"))
    temp = os.path.join(workdir, "temp")
    os.makedirs(temp)
    os.chmod(temp, 0o777)  # nginx's workers may run as another user than its master
    user = "user nobody nogroup;" if os.geteuid() == 0 else ""
    return f"""{user}
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{server}
}}
"""


class Stack:
    """gunicorn (and nginx) on a fresh SQLite database in a temporary directory."""

    def __init__(self, front: str, workers: int) -> None:
        self.front, self.workers = front, workers
        self.dir = tempfile.mkdtemp(prefix="opsview-slow-")
        self.processes = []
        self.env = {**os.environ, "DATABASE_URL": f"sqlite:///{self.dir}/probe.sqlite3",
                    "SECRET_KEY": "slow-clients-" + uuid.uuid4().hex, "DEBUG": "0",
                    "ALLOWED_HOSTS": "127.0.0.1", "SECURE_SSL_REDIRECT": "0",
                    "SECURE_HSTS_SECONDS": "0", "SECURE_COOKIES": "0", "LOG_LEVEL": "ERROR",
                    "PYTHONPATH": ROOT}
        for name in ("CELERY_BROKER_URL", "REDIS_URL", "PYTEST_VERSION"):
            self.env.pop(name, None)  # eager processing, local cache: the web tier alone

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                              check=True, capture_output=True, text=True).stdout

    def start(self) -> Stack:
        self.manage("migrate", "-v0")
        self.secret = self.manage("create_source", SLUG, "--rate-limit", "0").splitlines()[-1]
        web_port = free_port()
        self.processes.append(subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "-w", str(self.workers),
             "-b", f"127.0.0.1:{web_port}", "--log-level", "error"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(f"http://127.0.0.1:{web_port}/ingest/{SLUG}/events", self.processes[0])
        self.port = web_port
        if self.front == "nginx":
            self.port = free_port()
            conf = os.path.join(self.dir, "nginx.conf")
            with open(conf, "w") as out:
                out.write(nginx_conf(self.dir, self.port, f"127.0.0.1:{web_port}"))
            nginx = shutil.which("nginx") or "/usr/sbin/nginx"
            self.processes.append(subprocess.Popen(
                [nginx, "-p", self.dir, "-c", conf, "-g", "daemon off;"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for(f"http://127.0.0.1:{self.port}/ingest/{SLUG}/events", self.processes[1])
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class SlowClient(threading.Thread):
    """One socket that sends a webhook request one byte every `interval` seconds, forever;
    reconnects when the server cuts it off."""

    REQUEST = (f"POST /ingest/{SLUG}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Content-Type: application/cloudevents+json\r\nContent-Length: 100000\r\n"
               "webhook-id: msg_slow\r\n\r\n" + "x" * 100_000).encode()

    def __init__(self, port: int, interval: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.interval, self.stop, self.cut_off = port, interval, stop, 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    for byte in self.REQUEST:
                        sock.sendall(bytes([byte]))
                        if self.stop.wait(self.interval):
                            return
            except OSError:
                self.cut_off += 1
                self.stop.wait(0.5)


def deliveries(stack: Stack, seconds: float, timeout: float) -> list[tuple[str, float]]:
    """Signed one-event deliveries, one after another, for `seconds`: their outcomes."""
    from ingestion.events import make_event, signed_request

    url = f"http://127.0.0.1:{stack.port}/ingest/{SLUG}/events"
    outcomes, ends = [], time.monotonic() + seconds
    while time.monotonic() < ends:
        event = make_event("client.upserted", {"client_id": uuid.uuid4().hex[:12],
                                               "name": "Probe"})
        body, headers = signed_request(stack.secret, event)
        started = time.perf_counter()
        try:
            status = requests.post(url, data=body, headers=headers, timeout=timeout).status_code
        except requests.RequestException as exc:
            status = type(exc).__name__
        outcomes.append((status, time.perf_counter() - started))
    return outcomes


def summary(outcomes: list[tuple[str, float]]) -> dict[str, Any]:
    seconds = sorted(elapsed for _, elapsed in outcomes)
    ok = [elapsed for status, elapsed in outcomes if status == 202]
    return {
        "sent": len(outcomes), "accepted": len(ok),
        "failed": {str(status): sum(1 for s, _ in outcomes if s == status)
                   for status in {s for s, _ in outcomes if s != 202}},
        "p50_ms": round(statistics.median(seconds) * 1000) if seconds else None,
        "p95_ms": round(seconds[int(0.95 * (len(seconds) - 1))] * 1000) if seconds else None,
        "max_ms": round(seconds[-1] * 1000) if seconds else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--front", choices=["gunicorn", "nginx"], default="nginx")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--slow", type=int, default=8, help="slow sockets")
    parser.add_argument("--interval", type=float, default=3.0,
                        help="seconds between two bytes of a slow socket")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="how long each phase sends deliveries")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="a delivery slower than this has failed")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "slow-clients-signing-only")
    import django

    django.setup()
    stack = Stack(args.front, args.workers).start()
    stop, slow = threading.Event(), []
    try:
        log(f"{args.front}: deliveries with no other traffic")
        quiet = summary(deliveries(stack, args.seconds, args.timeout))
        log(f"{args.front}: {args.slow} slow sockets, one byte every {args.interval} s")
        slow = [SlowClient(stack.port, args.interval, stop) for _ in range(args.slow)]
        for client in slow:
            client.start()
        time.sleep(min(5.0, args.interval * 2))  # let them take hold
        loaded = summary(deliveries(stack, args.seconds, args.timeout))
    finally:
        stop.set()
        stack.stop()
    report = {"front": args.front, "gunicorn_workers": args.workers,
              "slow_sockets": args.slow, "interval_s": args.interval,
              "timeout_s": args.timeout, "quiet": quiet, "slow_clients": loaded,
              "slow_sockets_cut_off": sum(client.cut_off for client in slow)}
    print(json.dumps(report, indent=2))
    return 0 if loaded["sent"] and loaded["accepted"] == loaded["sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
