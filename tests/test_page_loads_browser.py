"""bench/page_loads.py runs: a short demo firm, two pages, one round (figures: docs)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_page_load_bench_measures_cold_and_warm_loads():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Chromium not installed at {CHROMIUM}")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "page_loads.py"), "--pages",
                          "overview,case", "--rounds", "1", "--months", "1", "--json",
                          "--port", str(free_port())],
                         env=env, capture_output=True, text=True, timeout=600, check=True)
    results = {r["page"]: r for r in json.loads(out.stdout)}
    assert set(results) == {"overview", "case"}
    overview = results["overview"]
    assert overview["cold_ms"] > 0 and overview["warm_ms"] > 0
    # The partial plotly bundle, compressed: far below the full bundle's 4.8 MB.
    assert 100 < overview["cold_kb"] < 1000
    assert results["case"]["path"] == "/exceptions/<id>/"
