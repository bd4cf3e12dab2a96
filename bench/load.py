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
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadkit.common import log
from loadkit.report import print_report, write_chart
from loadkit.run import run_load
from loadkit.stack import Stack, manage, purge_queue, recreate_database, seed, stack_env

from simulator import SIZES


def main() -> None:
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
