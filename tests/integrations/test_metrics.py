"""/metrics: Prometheus text that the client library's own parser reads, behind a bearer
token, with the business and the pipeline in it; counters that add up across processes."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from opsview.models import ApiToken
from tests.conftest import make_role_user
from tests.opsview.firm import firm_events

from .test_retry import failure

ROOT = Path(__file__).resolve().parents[2]


def scrape(client, token):
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        samples[("family", family.name)] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


@pytest.fixture
def token(db):
    return ApiToken.issue(make_role_user("prometheus", "executive"), name="scraper")[1]


def test_metrics_parse_and_carry_the_business_and_the_pipeline(client, deliver, process,
                                                               token, settings):
    settings.METRICS_CACHE_SECONDS = 0
    import datetime as dt

    deliver.send(*firm_events())
    deliver.send(failure(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
    deliver.send({"specversion": "1.0", "id": "no-time", "source": "s", "type": "x.y"})
    before = scrape(client, token)
    process()
    samples = scrape(client, token)
    assert value(samples, "opsview_unbilled_wip", currency="USD") > 0
    assert value(samples, "opsview_open_ar", currency="USD") >= 0
    assert samples["family", "opsview_not_ready_value"] == "gauge"
    assert samples["family", "opsview_processing_latency_seconds"] == "histogram"
    assert value(samples, "opsview_open_cases", type="sync_failed", severity="medium",
                 sla_state="on_track") == 1
    assert value(samples, "opsview_inbox_pending") == 0
    assert value(before, "opsview_inbox_pending") > 0
    assert value(samples, "opsview_dead_letters") == 1
    assert value(samples, "opsview_flow_seconds_since_last_event", flow="psa-to-erp") >= 3600
    processed = value(samples, "opsview_events_processed_total", outcome="processed")
    assert processed - value(before, "opsview_events_processed_total",
                             outcome="processed") == len(firm_events()) + 1
    assert value(samples, "opsview_processing_latency_seconds_count") >= processed
    assert value(samples, "opsview_events_received_total", outcome="rejected") >= 1


def test_metrics_need_a_read_token(client, db):
    assert client.get("/metrics").status_code == 401
    _, triage_only = ApiToken.issue(make_role_user("bot", "integration"), scopes="triage")
    response = client.get("/metrics", headers={"Authorization": f"Bearer {triage_only}"})
    assert response.status_code == 403


def test_business_gauges_are_cached_briefly(client, deliver, token, settings):
    settings.METRICS_CACHE_SECONDS = 30
    first = scrape(client, token)
    deliver.send({"specversion": "1.0", "id": "no-time", "source": "s", "type": "x.y"})
    assert value(first, "opsview_dead_letters") == 0
    assert value(scrape(client, token), "opsview_dead_letters") == 0  # served from the cache
    settings.METRICS_CACHE_SECONDS = 0
    assert value(scrape(client, token), "opsview_dead_letters") == 1
    started = time.monotonic()
    scrape(client, token)
    assert time.monotonic() - started < 1


def test_counters_add_up_across_processes(tmp_path):
    """Web and worker processes each count; with PROMETHEUS_MULTIPROC_DIR one scrape sees
    the sum (what docs/operations.md sets up)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
           "DJANGO_SETTINGS_MODULE": "config.settings"}
    count = ("import django; django.setup(); from ingestion import metrics; "
             "metrics.RECEIVED.labels('accepted').inc({n})")
    for n in (3, 4):
        subprocess.run([sys.executable, "-c", count.format(n=n)], cwd=ROOT, env=env,
                       check=True, timeout=60)
    read = ("import django; django.setup(); from prometheus_client import CollectorRegistry, "
            "generate_latest; from prometheus_client.multiprocess import "
            "MultiProcessCollector; r = CollectorRegistry(); MultiProcessCollector(r); "
            "print(generate_latest(r).decode())")
    out = subprocess.run([sys.executable, "-c", read], cwd=ROOT, env=env, check=True,
                         timeout=60, capture_output=True, text=True).stdout
    samples = {(s.name, tuple(s.labels.items())): s.value
               for family in text_string_to_metric_families(out) for s in family.samples}
    assert samples[("opsview_events_received_total", (("outcome", "accepted"),))] == 7


def test_the_dashboard_and_alert_rules_name_only_metrics_that_exist(client, token):
    """docs/monitoring: every metric the Grafana dashboard and the alert rules query is one
    /metrics serves."""
    import json
    import re

    import yaml

    served = {name for kind, name in scrape(client, token) if kind == "family"}
    served |= {f"{name}_total" for name in served} | {
        f"{name}_{part}" for name in served for part in ("bucket", "count", "sum")}
    docs = ROOT / "docs" / "monitoring"
    dashboard = json.loads((docs / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = yaml.safe_load((docs / "prometheus-rules.yml").read_text())
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    named = {name for expr in exprs for name in re.findall(r"\bopsview_\w+", expr)}
    assert named and named <= served, named - served
