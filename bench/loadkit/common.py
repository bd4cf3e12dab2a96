"""What every part of the load harness shares: the repository root, the queue, source
and user it creates, the pages and KPIs it polls, and its log line."""
from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
UTC = dt.UTC
QUEUE = "opsview-load"
SOURCE = "load"
USERNAME, PASSWORD = "loadbench", "loadbench-password-7"
SAMPLE_SECONDS = 5
PAGES = ["/", "/readiness/", "/wip/", "/latency/", "/integration/", "/margin/"]
KPIS = ["wip", "invoice-readiness", "posting-latency", "utilization", "integration-health",
        "margin", "receivables"]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
