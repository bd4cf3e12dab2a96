"""The demo firm served on a port, for the scripts that look at it in a browser
(bench/page_loads.py, docs/screenshots.py): a temporary SQLite database with the demo users,
the small simulated firm and every rule evaluated, static files collected (hashed and
compressed, as `make demo` serves them), and runserver with DEBUG=1 as in `make demo`."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "opsview-demo"  # simulator/management/commands/setup_demo.py
CHROMIUM = os.environ.get("OPSVIEW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]


@contextlib.contextmanager
def served_demo(port: int, months: int | None = None) -> Iterator[str]:
    """Build the demo (the small firm; `months` shortens it, for tests) and serve it; yields
    its base URL. Everything is removed afterwards."""
    work = tempfile.mkdtemp(prefix="opsview-demo-")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{work}/demo.sqlite3", "DEBUG": "1",
           "CELERY_BROKER_URL": "", "REDIS_URL": "", "STATIC_ROOT": f"{work}/static"}
    manage = [sys.executable, os.path.join(ROOT, "manage.py")]
    for command in (["migrate", "--noinput", "-v0"], ["setup_demo"],
                    ["simulate", "--size", "small", "--process",
                     *(["--months", str(months)] if months else [])], ["process_inbox"],
                    ["collectstatic", "--noinput", "-v0"]):
        print("manage.py", " ".join(command), file=sys.stderr, flush=True)
        subprocess.run(manage + command, env=env, check=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen(manage + ["runserver", "--noreload", f"127.0.0.1:{port}"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(base + "/accounts/login/", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def log_in(page: Page, base: str, username: str) -> None:
    page.goto(base + "/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login" not in url)


def first_case_url(page: Page, base: str) -> str | None:
    """The first case of the exceptions list (the demo opens cases of every kind)."""
    page.goto(base + "/exceptions/")
    return page.locator("table.cases td.title a").first.get_attribute("href")
