"""Plotly figures from KPI results. Each returns a plain dict (data + layout) for the page."""
import html
import json
from decimal import Decimal

import plotly.graph_objects as go
import plotly.io as pio

PALETTE = {"ready": "#1a7f4b", "unposted": "#d97706", "missing_billing_setup": "#c0352b",
           "invoiced": "#64748b", "earned": "#2f5bea", "labor": "#94a3b8", "billed": "#0ea5e9",
           "recognized": "#7c3aed", "ok": "#1a7f4b", "failed": "#c0352b"}
AGING_COLORS = {"0-30": "#93c5fd", "31-60": "#3b82f6", "61-90": "#f59e0b", "90+": "#c0352b"}


def _layout(title=None, height=320, **extra):
    layout = {
        "height": height, "margin": {"l": 60, "r": 20, "t": 40 if title else 16, "b": 60},
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13,
                 "color": "#1d2330"},
        "paper_bgcolor": "white", "plot_bgcolor": "white",
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        "xaxis": {"gridcolor": "#eef0f3", "automargin": True},
        "yaxis": {"gridcolor": "#eef0f3", "automargin": True, "rangemode": "tozero"},
    }
    if title:
        layout["title"] = {"text": title, "x": 0, "font": {"size": 15}}
    layout.update(extra)
    return layout


def as_spec(figure):
    """The figure as the page's JSON, every label text: every chart goes through here."""
    spec = json.loads(pio.to_json(figure, validate=False))
    spec["data"] = text_only(spec["data"])
    spec["layout"] = {key: value if key == "template" else text_only(value)
                      for key, value in spec["layout"].items()}
    return spec


def text_only(value):
    """`value` with every string HTML-escaped. plotly.js draws a subset of HTML in labels,
    legends and hover text (links, bold, line breaks) and decodes entities, so names that
    senders chose (clients, practices, flows) are shown as they are, never as markup."""
    if isinstance(value, str):
        return html.escape(value, quote=False)
    if isinstance(value, list):
        return [text_only(item) for item in value]
    if isinstance(value, dict):
        return {key: text_only(item) for key, item in value.items()}
    return value


def _num(value):
    return float(Decimal(value)) if value is not None else None


def _aging_bars(labels, buckets_of, yaxis_title):
    """Stacked bars of the four WIP age buckets; buckets_of(i) gives label i's buckets."""
    figure = go.Figure([
        go.Bar(name=f"{bucket} days", x=labels,
               y=[_num(buckets_of(i)[bucket]) for i in range(len(labels))],
               marker_color=AGING_COLORS[bucket])
        for bucket in AGING_COLORS
    ])
    figure.update_layout(**_layout(barmode="stack", yaxis_title=yaxis_title))
    return as_spec(figure)


def wip_aging(rows, label="key", limit=12):
    """WIP age buckets for the largest groups (one currency)."""
    rows = rows[:limit]
    return _aging_bars([str(r.get("name") or r[label]) for r in rows], lambda i: rows[i],
                       "Unbilled value")


def wip_aging_by_currency(result):
    currencies = sorted(result["currencies"])
    return _aging_bars(currencies, lambda i: result["currencies"][currencies[i]]["aging"],
                       "Unbilled WIP")


def readiness(result):
    currencies = sorted(result["currencies"])
    parts = [("ready", "Ready", lambda c: c["ready_value"]),
             ("unposted", "Not posted to ERP", lambda c: c["not_ready"]["unposted"]),
             ("missing_billing_setup", "Billing set-up missing",
              lambda c: c["not_ready"]["missing_billing_setup"]),
             ("invoiced", "Already invoiced", lambda c: c["invoiced_value"])]
    figure = go.Figure([
        go.Bar(name=label, y=currencies, x=[_num(pick(result["currencies"][c])) for c in currencies],
               orientation="h", marker_color=PALETTE[key])
        for key, label, pick in parts
    ])
    figure.update_layout(**_layout(barmode="stack", height=110 + 50 * len(currencies),
                                   xaxis_title="Value"))
    return as_spec(figure)


def latency_trend(weeks):
    labels = [w["week"] for w in weeks]
    figure = go.Figure([
        go.Scatter(name=name, x=labels,
                   y=[None if w[key] is None else w[key] / 3600 for w in weeks],
                   mode="lines+markers", line={"color": color})
        for name, key, color in (("p50", "p50_seconds", "#1a7f4b"),
                                 ("p90", "p90_seconds", "#d97706"),
                                 ("p95", "p95_seconds", "#c0352b"))
    ])
    figure.update_layout(**_layout(yaxis_title="Hours from approval to posting"))
    return as_spec(figure)


def utilization_by_practice(result):
    practices = [row["practice"] for row in result["by_practice"]]
    figure = go.Figure([
        go.Bar(name="Capacity", x=practices,
               y=[_num(r["capacity_hours"]) for r in result["by_practice"]],
               marker_color="#e2e8f0"),
        go.Bar(name="Billable hours", x=practices,
               y=[_num(r["billable_hours"]) for r in result["by_practice"]],
               marker_color="#2f5bea"),
        go.Bar(name="All hours", x=practices,
               y=[_num(r["total_hours"]) for r in result["by_practice"]],
               marker_color="#93c5fd"),
    ])
    figure.update_layout(**_layout(barmode="group", yaxis_title="Hours"))
    return as_spec(figure)


def flow_throughput(series):
    """series: [{"day", "flow", "succeeded", "failed"}] → stacked bars per day."""
    days = sorted({row["day"] for row in series})
    traces = []
    for flow in sorted({row["flow"] for row in series}):
        by_day = {row["day"]: row for row in series if row["flow"] == flow}
        traces.append(go.Bar(name=f"{flow} ok", x=days,
                             y=[by_day.get(d, {}).get("succeeded", 0) for d in days]))
        traces.append(go.Bar(name=f"{flow} failed", x=days,
                             y=[by_day.get(d, {}).get("failed", 0) for d in days],
                             marker_color=PALETTE["failed"]))
    figure = go.Figure(traces)
    figure.update_layout(**_layout(barmode="stack", yaxis_title="Sync attempts"))
    return as_spec(figure)


def margin_bars(rows, limit=12):
    rows = rows[:limit]
    names = [f"{r['name']} ({r['currency']})" for r in rows]
    figure = go.Figure([
        go.Bar(name="Earned", x=names, y=[_num(r["earned_revenue"]) for r in rows],
               marker_color=PALETTE["earned"]),
        go.Bar(name="Labor cost", x=names, y=[_num(r["labor_cost"]) for r in rows],
               marker_color=PALETTE["labor"]),
        go.Bar(name="Billed", x=names, y=[_num(r["billed_revenue"]) for r in rows],
               marker_color=PALETTE["billed"]),
        go.Bar(name="Recognized", x=names, y=[_num(r["recognized_revenue"]) for r in rows],
               marker_color=PALETTE["recognized"]),
    ])
    figure.update_layout(**_layout(barmode="group", yaxis_title="Value"))
    return as_spec(figure)
