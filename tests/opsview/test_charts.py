"""Chart labels come from ingested names: plotly reads a subset of HTML in text, so every
label must reach the browser as text, whatever the sender named a client or a flow."""
import datetime as dt
import inspect
import json
import re

import pytest

from reporting import charts

HOSTILE = '<a href="https://evil.example/">Evil</a> <b>Bold</b> & Co'
ESCAPED = "&lt;a href=\"https://evil.example/\"&gt;Evil&lt;/a&gt; &lt;b&gt;Bold&lt;/b&gt; &amp; Co"
BUCKETS = {"0-30": "1.00", "31-60": "2.00", "61-90": "0.00", "90+": "4.00"}
MONEY = {"billable_value": "1", "invoiced_value": "1", "in_billing_value": "1", "ready_value": "1",
         "not_ready": {"unposted": "1", "missing_billing_setup": "1"}}

CHARTS = {
    "wip_aging": lambda: charts.wip_aging([{"key": "C1", "name": HOSTILE, **BUCKETS}]),
    "wip_aging_by_currency": lambda: charts.wip_aging_by_currency(
        {"currencies": {HOSTILE: {"aging": BUCKETS}}}),
    "readiness": lambda: charts.readiness({"currencies": {HOSTILE: MONEY}}),
    "latency_trend": lambda: charts.latency_trend(
        [{"week": HOSTILE, "p50_seconds": 3600, "p90_seconds": 7200, "p95_seconds": None}]),
    "utilization_by_practice": lambda: charts.utilization_by_practice({"by_practice": [
        {"practice": HOSTILE, "capacity_hours": "40", "billable_hours": "30",
         "total_hours": "35"}]}),
    "flow_throughput": lambda: charts.flow_throughput(
        [{"day": "2026-03-02", "flow": HOSTILE, "succeeded": 3, "failed": 1}]),
    "margin_bars": lambda: charts.margin_bars([{
        "name": HOSTILE, "currency": "USD", "earned_revenue": "1", "labor_cost": "1",
        "billed_revenue": "1", "recognized_revenue": "1"}]),
    "trend_lines": lambda: charts.trend_lines(
        [{"end": "2026-03-31", "currencies": {HOSTILE: "1.00"}}], HOSTILE),
    "billing_days": lambda: charts.billing_days({"currencies": {HOSTILE: {
        key: {"p50": 1.0, "p90": 2.0}
        for key in ("cycle_days", "billing_lag_days", "collection_days")}}}),
    "close_bars": lambda: charts.close_bars({"currencies": {HOSTILE: {
        "billed_value": "1", "in_billing_value": "1", "ready_value": "1",
        "not_ready": {"unposted": "1", "missing_billing_setup": "1"}}}}),
}
# Charts that draw no ingested text: fixed labels and counts, or an SVG line of numbers.
NO_INGESTED_TEXT = {"reconciliation_bars", "sparkline"}


def shown_strings(spec):
    """Every string plotly may draw: the traces and the layout (its theme template aside)."""
    layout = {key: value for key, value in spec["layout"].items() if key != "template"}
    found = []

    def walk(value):
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk([spec["data"], layout])
    return found


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_every_label_reaches_plotly_as_text(name):
    strings = shown_strings(CHARTS[name]())
    assert any(ESCAPED in text for text in strings), f"{name}: the hostile label is missing"
    for text in strings:
        assert "<" not in text and ">" not in text, (name, text)
        assert not re.search(r"&(?!amp;|lt;|gt;|quot;|#39;)", text), (name, text)


def test_every_chart_is_covered():
    public = {name for name, function in inspect.getmembers(charts, inspect.isfunction)
              if function.__module__ == charts.__name__ and not name.startswith("_")}
    helpers = {"as_spec", "text_only", "table_of", "flow_colors"}
    assert public - helpers - NO_INGESTED_TEXT == set(CHARTS)


def test_the_chart_json_on_the_page_holds_no_markup(client, logged_in, deliver, process):
    from ingestion.events import make_event

    from .firm import firm_events

    renamed = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)  # after the firm's
    events = firm_events() + [make_event("client.upserted", {"client_id": "C1", "name": HOSTILE},
                                         time=renamed)]
    for start in range(0, len(events), 100):
        deliver.send(*events[start:start + 100])
    process()
    logged_in("executive")
    html = client.get("/panels/margin_table/?period=2026-03&group_by=client").content.decode()
    chart = json.loads(re.search(r'<script id="chart-margin_table" type="application/json">'
                                 r"(.*?)</script>", html, re.S).group(1))
    assert any(ESCAPED in text for text in shown_strings(chart))
    assert not any("<b>" in text for text in shown_strings(chart))


def test_an_empty_period_draws_no_axes():
    assert charts.wip_aging_by_currency({"currencies": {}}) is None
    assert charts.latency_trend([{"week": "2026-03-02", "p50_seconds": None,
                                  "p90_seconds": None, "p95_seconds": None}]) is None
    zero = {stage: {"count": 0} for stage in ("approved", "posted", "billed")}
    assert charts.reconciliation_bars({"time": zero, "expenses": zero}) is None
    assert charts.wip_aging([{"key": "C1", "name": "Acme", **BUCKETS}]) is not None


def test_money_axes_name_their_currency_and_counts_say_count():
    spec = charts.wip_aging([{"key": "C1", "name": "Acme", **BUCKETS}], currency="EUR")
    assert spec["layout"]["yaxis"]["title"]["text"] == "Unbilled WIP (EUR)"
    flows = charts.flow_throughput([{"day": "2026-03-02", "flow": "a", "succeeded": 3,
                                     "failed": 1}])
    assert "(count)" in flows["layout"]["yaxis"]["title"]["text"]
    latency = charts.latency_trend([{"week": "2026-03-02", "p50_seconds": 3600,
                                     "p90_seconds": 7200, "p95_seconds": 9000}])
    assert latency["layout"]["yaxis"]["title"]["text"] == "Approval to posting (hours)"
    assert [t["y"][0] for t in latency["data"]] == [1.0, 2.0, 2.5]


def test_each_flow_keeps_its_own_colour_and_its_failures_are_not_one_red():
    series = [{"day": "2026-03-02", "flow": flow, "succeeded": 3, "failed": 1}
              for flow in ("erp-to-crm", "psa-to-erp")]
    colors = charts.flow_colors(["psa-to-erp", "erp-to-crm", "hr-to-psa"])
    assert colors == charts.flow_colors(["hr-to-psa", "psa-to-erp", "erp-to-crm"])
    assert len(set(colors.values())) == 3
    spec = charts.flow_throughput(series, colors)
    failed = {t["name"]: t["marker"]["pattern"]["fgcolor"] for t in spec["data"]
              if t["name"].endswith("failed")}
    assert failed == {"erp-to-crm · failed": colors["erp-to-crm"],
                      "psa-to-erp · failed": colors["psa-to-erp"]}
    ok = {t["name"]: t["marker"]["color"] for t in spec["data"] if t["name"].endswith("succeeded")}
    assert ok["psa-to-erp · succeeded"] == colors["psa-to-erp"]


def test_a_chart_offers_its_numbers_as_a_table():
    spec = charts.wip_aging([{"key": "C1", "name": "Acme", **BUCKETS},
                             {"key": "C2", "name": "Globex", **BUCKETS, "90+": "1234.50"}],
                            currency="USD")
    table = charts.table_of(spec)
    assert table["columns"] == ["", "0-30 days old", "31-60 days old", "61-90 days old",
                                "90+ days old"]
    assert table["rows"] == [["Acme", "1", "2", "0", "4"], ["Globex", "1", "2", "0", "1,234.5"]]
    assert table["caption"] == "Unbilled WIP (USD)"
    horizontal = charts.table_of(charts.readiness({"currencies": {"USD": MONEY}}))
    assert horizontal["rows"][0][0] == "USD" and len(horizontal["rows"][0]) == 6


def test_trend_axes_say_money_or_ratio():
    points = [{"end": "2026-03-31", "currencies": {"USD": "1.00", "EUR": "2.00"}}]
    assert charts.trend_lines(points, "Unbilled WIP")["layout"]["yaxis"]["title"][
        "text"] == "Unbilled WIP (own currency)"
    ratio = charts.trend_lines([{"end": "2026-03-31", "currencies": {"USD": 0.5}}],
                               "Invoice readiness", ratio=True)
    assert ratio["layout"]["yaxis"]["title"]["text"] == "Invoice readiness"
