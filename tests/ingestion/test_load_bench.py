"""bench/load.py in miniature: the sustained-load harness (gunicorn, two Celery workers on
Redis, beat, the live feed, the dashboard poller) runs for half a minute at a low rate and
accounts for every event. The ten-minute run at 2,000 events/s and its figures are in
docs/load.md; this keeps the harness working, it does not measure speed."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(not os.environ.get("CELERY_BROKER_URL", "").startswith("redis")
                       or not os.environ.get("DATABASE_URL", "").startswith("postgres"),
                       reason="the load harness needs PostgreSQL and Redis"),
]


def test_the_load_harness_accounts_for_every_event(tmp_path):
    database = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/opsview_load_test"
    out = tmp_path / "load.json"
    result = subprocess.run(
        [sys.executable, "bench/load.py", "--duration", "25", "--warmup", "5", "--rate", "200",
         "--poll-interval", "5", "--drain-timeout", "60", "--database-url", database,
         "--broker-url", "redis://127.0.0.1:6379/7", "--port", "8766",
         "--out", str(out), "--chart", str(tmp_path / "load.html")],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    report = json.loads(out.read_text())
    events = report["events"]
    assert events["scheduled"] == 25 * 200
    assert events["accepted"] == events["scheduled"], events
    assert [key for key in events if key.startswith("http ")] == ["http 202"], events
    assert events["rejected"] == 0
    assert report["inbox_lag_s"]["still_pending"] == 0
    assert report["dashboard_ms"]["all"]["n"] > 0
    assert report["dashboard_ms"]["all"]["errors"] == 0
    assert report["worker_rss_mib"]["total"]["max"] > 0
    assert (tmp_path / "load.html").read_text().count("plotly") > 0
