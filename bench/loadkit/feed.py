"""The feed: the simulator's live events as signed batches, POSTed at a steady rate."""
from __future__ import annotations

import datetime as dt
import math
import re
import threading
import time
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import requests

from ingestion.events import BATCHED, dumps
from ingestion.signing import signed_headers
from loadkit.common import UTC

if TYPE_CHECKING:
    from simulator import FirmSimulator


class BatchTemplates:
    """Pre-serialized batches of live events with holes for the ids and the time, so a
    request costs a string join and an HMAC, not building and encoding 100 events. Every
    event gets a unique id and every time entry a unique id, so each event is new work."""

    def __init__(self, simulator: FirmSimulator, batch: int, count: int = 50) -> None:
        self.run = uuid.uuid4().hex[:8]
        self.templates = [self._template(simulator.live_events(
            dt.datetime.now(UTC), count=math.ceil(batch / 2))[:batch]) for _ in range(count)]

    @staticmethod
    def _template(events: list[dict[str, Any]]) -> list[str]:
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

    def body(self, request_no: int) -> bytes:
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

    def __init__(self, url: str, secret: str, templates: BatchTemplates, rate: int, batch: int,
                 duration: int, threads: int) -> None:
        self.url, self.secret, self.templates = url, secret, templates
        self.batch, self.interval, self.duration = batch, batch / rate, duration
        self.total = max(1, round(duration * rate / batch))
        self.threads = threads
        self.lock, self.next_no = threading.Lock(), 0
        self.responses = []  # (seconds since start, accepted, status, ms, behind schedule s)
        self.totals = defaultdict(int)

    def run(self, started: float, stop: threading.Event) -> list[threading.Thread]:
        self.started = started
        pool = [threading.Thread(target=self._send_loop, args=(stop,), daemon=True)
                for _ in range(self.threads)]
        for thread in pool:
            thread.start()
        return pool

    def _send_loop(self, stop: threading.Event) -> None:
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

    def _send(self, session: requests.Session, request_no: int, behind: float) -> None:
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
