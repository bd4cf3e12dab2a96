"""The dashboards: a logged-in user loading each page and its panels, a bearer token
reading every KPI endpoint, timed."""
from __future__ import annotations

import html
import re
import threading
import time

import requests

from loadkit.common import KPIS, PAGES, PASSWORD, USERNAME


class Poller:
    """A logged-in user loading every dashboard page and the panels it pulls in (htmx
    hx-get, as a browser would), and an API client reading every KPI with a bearer token."""

    def __init__(self, base: str, token: str, interval: float) -> None:
        self.base, self.interval = base, interval
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Bearer {token}"
        self.browser = requests.Session()
        self.samples = []  # (seconds since start, url, kind, ms, status)
        self.lock = threading.Lock()

    def log_in(self) -> None:
        login = f"{self.base}/accounts/login/"
        page = self.browser.get(login, timeout=30)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
        answer = self.browser.post(login, data={
            "username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token,
            "next": "/"}, headers={"Referer": login}, timeout=30, allow_redirects=False)
        if answer.status_code != 302 or "sessionid" not in self.browser.cookies:
            raise RuntimeError(f"log-in failed: {answer.status_code}")

    def run(self, started: float, stop: threading.Event) -> list[threading.Thread]:
        self.started = started
        thread = threading.Thread(target=self._loop, args=(stop,), daemon=True)
        thread.start()
        return [thread]

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            round_started = time.monotonic()
            self.poll_once(stop)
            stop.wait(max(0.0, self.interval - (time.monotonic() - round_started)))

    def poll_once(self, stop: threading.Event) -> None:
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

    def _get(self, session: requests.Session, path: str, kind: str) -> requests.Response | None:
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
