"""One run: the feed, the poller and the sampler side by side for the duration, then the
drain."""
from __future__ import annotations

import argparse
import datetime as dt
import random
import threading
import time
from typing import TYPE_CHECKING, Any

import psycopg

from loadkit.common import SOURCE, UTC, log
from loadkit.feed import BatchTemplates, Feed
from loadkit.poller import Poller
from loadkit.report import summarize
from loadkit.sampler import Sampler, inbox_figures
from simulator import FirmSimulator

if TYPE_CHECKING:
    from loadkit.stack import Stack


def progress_line(t: float, feed: Feed, sampler: Sampler, last: tuple[float, int],
                  ) -> tuple[float, int]:
    sample = sampler.samples[-1]
    accepted = feed.totals["accepted"]
    rate = (accepted - last[1]) / max(t - last[0], 1e-9)
    rss = sum(sample["rss_mib"].values())
    log(f"  {t:6.0f} s  sent {feed.totals['sent']:>9,}  accepted {rate:7,.0f}/s  "
        f"pending {sample['pending']:>7,}  oldest {sample['oldest_pending_s'] or 0:6.1f} s  "
        f"worker RSS {rss:7.1f} MiB")
    return t, accepted


def run_load(args: argparse.Namespace, stack: Stack, secret: str, token: str) -> dict[str, Any]:
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

    def __init__(self, database_url: str, interval: float = 60) -> None:
        self.database_url, self.interval, self.runs = database_url, interval, []

    def needed(self) -> bool:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute("SHOW autovacuum").fetchone()[0] == "off"

    def run(self, started: float, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self._loop, args=(started, stop), daemon=True)
        thread.start()
        return thread

    def _loop(self, started: float, stop: threading.Event) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not stop.wait(self.interval):
                began = time.monotonic()
                for table in self.TABLES:
                    conn.execute(f"VACUUM (ANALYZE) {table}")
                self.runs.append({"t": round(began - started, 1),
                                  "seconds": round(time.monotonic() - began, 2)})


def drain(database_url: str, timeout: float, feed_end: float) -> tuple[float | None, int | None]:
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
