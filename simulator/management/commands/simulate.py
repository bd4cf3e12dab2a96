"""`manage.py simulate`: deliver a simulated firm's events, in batches, to the inbox
(directly through `store_events`, the webhook's own intake) or as signed HTTP."""
import datetime as dt
import itertools
import sys
import time
from collections.abc import Callable
from typing import Any

import requests
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingestion.events import signed_request
from ingestion.intake import store_events
from ingestion.models import Source
from ingestion.pipeline import drain_inbox
from simulator import SIZES, FirmSimulator
from simulator.dates import Event


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done, self.started = total, label, 0, time.monotonic()

    def advance(self, n: int) -> None:
        """n more done: redraw the bar."""
        self.done += n
        self.total = max(self.total, self.done)  # the total is an estimate
        width = 30
        filled = width * self.done // max(self.total, 1)
        rate = self.done / max(time.monotonic() - self.started, 1e-6)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{self.done}/{self.total} ({rate:,.0f}/s)")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


class Command(BaseCommand):
    help = ("Simulate a professional-services firm's integration traffic, faults included, "
            "into the inbox (directly, or as signed HTTP to a running server).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--size", choices=sorted(SIZES), default="small")
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--end", help="last simulated day, YYYY-MM-DD (default: now)")
        parser.add_argument("--start", help="first simulated day, YYYY-MM-DD "
                                            "(default: --months before --end)")
        parser.add_argument("--months", type=int, help="span in months (default by size: "
                                                       "small 3, medium 6, large 12)")
        parser.add_argument("--source", default="simulator", help="source slug")
        parser.add_argument("--url", help="send signed batches to this server, e.g. "
                                          "http://127.0.0.1:8000 (needs --secret)")
        parser.add_argument("--secret", help="the source's whsec_ secret, with --url")
        parser.add_argument("--batch", type=int, default=500)
        parser.add_argument("--process", action="store_true",
                            help="drain the inbox afterwards (direct mode)")
        parser.add_argument("--live", action="store_true",
                            help="then keep sending current events every few seconds")
        parser.add_argument("--duration", type=int, default=600,
                            help="seconds the live feed runs")
        parser.add_argument("--interval", type=float, default=5.0)

    def handle(self, *args: Any, **options: Any) -> None:
        end_day = _day(options["end"], "--end")
        start = _day(options["start"], "--start")
        end = dt.datetime.combine(end_day, dt.time(18), dt.UTC) if end_day else None
        if options["batch"] < 1 or options["batch"] > 1000:
            raise CommandError("--batch must be between 1 and 1000")
        simulator = FirmSimulator(options["size"], seed=options["seed"], end=end, start=start,
                                  months=options["months"])
        if simulator.start >= simulator.end:
            raise CommandError("--start must be before --end")
        send = self._sender(options)
        self.stdout.write(f"simulating a {options['size']} firm from "
                          f"{simulator.start:%Y-%m-%d} to {simulator.end:%Y-%m-%d}")
        progress = Progress(simulator.estimated_deliveries(), "sending")
        totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
        events, started = simulator.events(), time.monotonic()
        while batch := list(itertools.islice(events, options["batch"])):
            result = send(batch)
            for key in totals:
                value = result[key]
                totals[key] += len(value) if isinstance(value, list) else value
            progress.advance(len(batch))
        progress.close()
        seconds = time.monotonic() - started
        self.stdout.write("{deliveries} deliveries in {seconds:.1f} s ({rate:,.0f}/s): accepted "
                          "{accepted}, duplicates {duplicates}, rejected {rejected}".format(
                              deliveries=progress.done, seconds=seconds,
                              rate=progress.done / max(seconds, 1e-6), **totals))
        self.stdout.write("planted (docs/simulator.md says what each should show):")
        for name, ids in sorted(simulator.planted.items()):
            more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
            self.stdout.write(f"  {name}: {', '.join(ids[:3])}{more}")
        if options["process"] and not options["url"]:
            counts = drain_inbox()
            self.stdout.write(f"drained what was still pending in the inbox: {counts}")
        if options["live"]:
            self._live(simulator, send, options)

    def _sender(self, options: dict[str, Any]) -> Callable[[list[Event]], dict[str, Any]]:
        if options["url"]:
            if not options["secret"]:
                raise CommandError("--url needs --secret (the source's whsec_ secret)")
            url = f"{options['url'].rstrip('/')}/ingest/{options['source']}/events"
            session = requests.Session()

            def send_http(batch: list[Event]) -> dict[str, Any]:
                body, headers = signed_request(options["secret"], batch)
                response = session.post(url, data=body, headers=headers, timeout=120)
                if response.status_code != 202:
                    raise CommandError(f"{url} answered {response.status_code}: "
                                       f"{response.text[:300]}")
                return response.json()

            return send_http
        source, _ = Source.objects.get_or_create(
            slug=options["source"], defaults={"name": "Firm simulator", "rate_limit_per_minute": 0})

        def send_direct(batch: list[Event]) -> dict[str, Any]:
            return store_events(source, batch).as_dict()

        return send_direct

    def _live(self, simulator: FirmSimulator, send: Callable[[list[Event]], dict[str, Any]],
              options: dict[str, Any]) -> None:
        self.stdout.write(f"live feed: every {options['interval']} s for "
                          f"{options['duration']} s (Ctrl-C to stop)")
        deadline = time.monotonic() + options["duration"]
        try:
            while time.monotonic() < deadline:
                now = dt.datetime.now(dt.UTC)
                result = send(simulator.live_events(now))
                if options["process"] and not options["url"]:
                    drain_inbox()
                self.stdout.write(f"{now:%H:%M:%S} accepted {result['accepted']}")
                time.sleep(options["interval"])
        except KeyboardInterrupt:
            self.stdout.write("live feed stopped")


def _day(value: str | None, option: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option} must be YYYY-MM-DD") from None
