"""bench/faults.py at CI size: the real stack (gunicorn, two Celery workers, a private Redis
and a private PostgreSQL) under every fault ends in the clean run's state and KPIs.

A worker killed -9 mid-batch, Redis restarted without its queue, PostgreSQL crashed while
events flow, a broker backlog, every event twice in a shuffled order: after each, every KPI
endpoint, every business table and every open case equal those of a clean, ordered run, and
the inbox has nothing pending. One month of the small firm (about 5,300 events).
"""
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(not os.environ.get("CELERY_BROKER_URL", "").startswith("redis"),
                       reason="the fault runs go with the real-worker tests (Redis, PostgreSQL)"),
    pytest.mark.skipif(not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
                       or not shutil.which("redis-server"),
                       reason="needs the PostgreSQL server binaries and redis-server"),
]


def test_every_fault_ends_in_the_clean_runs_state_and_kpis(tmp_path):
    out = tmp_path / "faults.json"
    result = subprocess.run(
        [sys.executable, "bench/faults.py", "--months", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    runs = {run["scenario"]: run for run in json.loads(out.read_text())}
    assert set(runs) == {"clean", "kill9", "redis_restart", "pg_restart", "backlog",
                         "duplicate_shuffle"}
    clean = runs["clean"]
    for name, run in runs.items():
        assert run["differences"] == [], name
        assert run["inbox"].get("pending", 0) == 0, name
        assert run["tables"] == clean["tables"], name
        assert not run["failures"], name
    # The faults really happened.
    assert runs["pg_restart"]["statuses"].get("503", 0) > 0  # refused, retried, not lost
    assert runs["pg_restart"]["outage_reads"] == {"api": 503}  # a read while it was down
    assert any("killed -9" in note for note in runs["kill9"]["notes"])
    assert runs["backlog"]["pending_after_send"] > 0
    assert runs["duplicate_shuffle"]["duplicates"] >= clean["accepted"]
