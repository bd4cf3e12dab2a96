"""Plotly figures from KPI results. Each returns a plain dict (data + layout) for the page,
or None when the period has nothing to draw (the page then says so instead of drawing empty
axes). Axis titles carry their unit, money its currency."""
import html
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from reporting.kpis.formatting import Json

PALETTE = {"ready": "#1a7f4b", "unposted": "#d97706", "missing_billing_setup": "#c0352b",
           "invoiced": "#64748b", "in_billing": "#a78bfa", "earned": "#2f5bea", "labor": "#94a3b8",
           "billed": "#0ea5e9",
           "recognized": "#7c3aed", "ok": "#1a7f4b", "failed": "#c0352b"}
# One colour per currency on every chart, so USD is USD wherever a reader looks.
CURRENCY_COLORS = {"USD": "#2f5bea", "EUR": "#1a7f4b", "GBP": "#d97706"}
AGING_COLORS = {"0-30": "#93c5fd", "31-60": "#3b82f6", "61-90": "#f59e0b", "90+": "#c0352b"}
# Flows take these in the order of their names, the same on every chart and table.
FLOW_PALETTE = ["#2f5bea", "#d97706", "#0f766e", "#9333ea", "#be185d", "#65a30d", "#0891b2",
                "#a16207", "#475569", "#dc2626"]
# Bar charts' hover: the category, the series and the number with thousands separators.
MONEY_HOVER = "%{fullData.name}: %{value:,.0f}"
# A chart as the page embeds it: plotly's JSON of the figure (data and layout).
Spec = dict[str, Any]


def _layout(title: str | None = None, height: int = 320, **extra: Any) -> dict[str, Any]:
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


def as_spec(figure: go.Figure) -> Spec | None:
    """The figure as the page's JSON, every label text: every chart goes through here.
    None when no trace has a number other than zero: an empty period draws no axes."""
    if not any(_has_numbers(trace) for trace in figure.data):
        return None
    spec = json.loads(pio.to_json(figure, validate=False))
    spec["data"] = text_only(spec["data"])
    spec["layout"] = {key: value if key == "template" else text_only(value)
                      for key, value in spec["layout"].items()}
    return spec


def text_only(value: Any) -> Any:
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


def _has_numbers(trace: Any) -> bool:
    values = trace.x if getattr(trace, "orientation", None) == "h" else trace.y
    return any(v not in (None, 0) for v in values or ())


def flow_colors(flows: Iterable[str]) -> dict[str, str]:
    """A colour per flow, the same on every chart that shows flows."""
    """{flow: colour}, by the flows' names in order: the same flow, the same colour."""
    return {flow: FLOW_PALETTE[i % len(FLOW_PALETTE)] for i, flow in enumerate(sorted(flows))}


def _num(value: Decimal | str | float | None) -> float | None:
    return float(Decimal(value)) if value is not None else None


def _aging_bars(labels: list[str], buckets_of: Callable[[int], Mapping[str, Any]],
                yaxis_title: str) -> Spec | None:
    """Stacked bars of the four WIP age buckets; buckets_of(i) gives label i's buckets."""
    figure = go.Figure([
        go.Bar(name=f"{bucket} days old", x=labels,
               y=[_num(buckets_of(i)[bucket]) for i in range(len(labels))],
               marker_color=AGING_COLORS[bucket], hovertemplate=MONEY_HOVER)
        for bucket in AGING_COLORS
    ])
    figure.update_layout(**_layout(barmode="stack", yaxis_title=yaxis_title))
    return as_spec(figure)


def wip_aging(rows: list[Json], label: str = "key", limit: int = 12, currency: str = "",
              ) -> Spec | None:
    """WIP age buckets for the largest groups (one currency)."""
    rows = rows[:limit]
    return _aging_bars([str(r.get("name") or r[label]) for r in rows], lambda i: rows[i],
                       f"Unbilled WIP ({currency})" if currency else "Unbilled WIP (amount)")


def wip_aging_by_currency(result: Json) -> Spec | None:
    """WIP age buckets per currency, from wip()'s answer."""
    currencies = sorted(result["currencies"])
    return _aging_bars(currencies, lambda i: result["currencies"][currencies[i]]["aging"],
                       "Unbilled WIP (own currency)")


def readiness(result: Json) -> Spec | None:
    currencies = sorted(result["currencies"])
    parts = [("ready", "Ready", lambda c: c["ready_value"]),
             ("unposted", "Not posted to ERP", lambda c: c["not_ready"]["unposted"]),
             ("missing_billing_setup", "Billing set-up missing",
              lambda c: c["not_ready"]["missing_billing_setup"]),
             ("in_billing", "In billing (invoice drafted or blocked)",
              lambda c: c["in_billing_value"]),
             ("invoiced", "Already invoiced", lambda c: c["invoiced_value"])]
    figure = go.Figure([
        go.Bar(name=label, y=currencies,
               x=[_num(pick(result["currencies"][c])) for c in currencies],
               orientation="h", marker_color=PALETTE[key], hovertemplate=MONEY_HOVER)
        for key, label, pick in parts
    ])
    figure.update_layout(**_layout(barmode="stack", height=150 + 50 * len(currencies),
                                   xaxis_title="Billable value (each in its own currency)"))
    return as_spec(figure)


def latency_trend(weeks: list[Json]) -> Spec | None:
    labels = [w["week"] for w in weeks]
    figure = go.Figure([
        go.Scatter(name=name, x=labels,
                   y=[None if w[key] is None else w[key] / 3600 for w in weeks],
                   mode="lines+markers", line={"color": color})
        for name, key, color in (("Median (p50)", "p50_seconds", "#1a7f4b"),
                                 ("p90", "p90_seconds", "#d97706"),
                                 ("p95", "p95_seconds", "#c0352b"))
    ])
    figure.update_layout(**_layout(yaxis_title="Approval to posting (hours)",
                                   xaxis_title="Week starting"))
    return as_spec(figure)


def utilization_by_practice(result: Json) -> Spec | None:
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


def flow_throughput(series: list[Json], colors: Mapping[str, str] | None = None,
                    ) -> Spec | None:
    """series: [{"day", "flow", "succeeded", "failed"}] → stacked bars per day, each flow in
    its own colour (`colors`, from flow_colors), its failures hatched in the same colour."""
    days = sorted({row["day"] for row in series})
    flows = sorted({row["flow"] for row in series})
    colors = colors or flow_colors(flows)
    traces = []
    for flow in flows:
        by_day = {row["day"]: row for row in series if row["flow"] == flow}
        color = colors.get(flow, FLOW_PALETTE[0])
        traces.append(go.Bar(name=f"{flow} · succeeded", x=days, legendgroup=flow,
                             y=[by_day.get(d, {}).get("succeeded", 0) for d in days],
                             marker={"color": color}, hovertemplate=MONEY_HOVER))
        traces.append(go.Bar(name=f"{flow} · failed", x=days, legendgroup=flow,
                             y=[by_day.get(d, {}).get("failed", 0) for d in days],
                             marker={"color": "white", "line": {"color": color, "width": 1.5},
                                     "pattern": {"shape": "/", "fgcolor": color, "solidity": 0.5}},
                             hovertemplate=MONEY_HOVER))
    figure = go.Figure(traces)
    figure.update_layout(**_layout(barmode="stack", yaxis_title="Sync attempts (count)",
                                   xaxis_title="Day"))
    return as_spec(figure)


def margin_bars(rows: list[Json], limit: int = 12) -> Spec | None:
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
    for trace in figure.data:
        trace.hovertemplate = MONEY_HOVER
    figure.update_layout(**_layout(barmode="group",
                                   yaxis_title="Amount (own currency)"))
    return as_spec(figure)


def sparkline(values: Sequence[float | None], width: int = 120, height: int = 30,
              pad: int = 3) -> str:
    """The SVG polyline points of a small trend line (None values skipped), or "" when
    fewer than two values are known."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(known) < 2:
        return ""
    low, high = min(v for _, v in known), max(v for _, v in known)
    span = (high - low) or 1
    step = (width - 2 * pad) / max(1, len(values) - 1)
    return " ".join(f"{pad + i * step:.1f},"
                    f"{height - pad - (v - low) / span * (height - 2 * pad):.1f}"
                    for i, v in known)


def trend_lines(points: list[Json], title_of: str, ratio: bool = False) -> Spec | None:
    """One line per currency (or one line) of a trends answer's points."""
    ends = [p["end"] for p in points]
    if points and "currencies" in points[0]:
        currencies = sorted({c for p in points for c in p["currencies"]})
        lines = [(c, [_num(p["currencies"].get(c)) for p in points]) for c in currencies]
        if "(" not in title_of and not ratio:  # money: each line in its own currency
            title_of = f"{title_of} (own currency)"
    else:
        lines = [(title_of, [p["value"] for p in points])]
    figure = go.Figure([go.Scatter(name=name, x=ends, y=values, mode="lines+markers",
                                   line={"color": CURRENCY_COLORS.get(name, "#2f5bea"),
                                         "width": 3}, connectgaps=False)
                        for name, values in lines])
    figure.update_layout(**_layout(height=300, yaxis_title=title_of, xaxis_title="Interval ending",
                                   **({"yaxis_tickformat": ".0%"} if ratio else {})))
    return as_spec(figure)


def billing_days(result: Json) -> Spec | None:
    """Days p50 and p90 of the cycle, the billing lag and collection, per currency."""
    measures = [("cycle_days", "Draft to issue"), ("billing_lag_days", "Work to invoice"),
                ("collection_days", "Invoice to cash")]
    traces = []
    for currency, figures in sorted(result["currencies"].items()):
        for fraction, color in (("p50", "#2f5bea"), ("p90", "#93c5fd")):
            traces.append(go.Bar(name=f"{currency} {fraction}",
                                 x=[label for _, label in measures],
                                 y=[figures[key][fraction] for key, _ in measures],
                                 marker_color=color if len(result["currencies"]) == 1
                                 else None))
    figure = go.Figure(traces)
    figure.update_layout(**_layout(barmode="group", yaxis_title="Days (p50 and p90)"))
    return as_spec(figure)


def close_bars(result: Json) -> Spec | None:
    """Per currency: billed, in billing, ready and not ready (by reason) of a period."""
    currencies = sorted(result["currencies"])
    parts = [("invoiced", "Billed", lambda c: c["billed_value"]),
             ("in_billing", "In billing", lambda c: c["in_billing_value"]),
             ("ready", "Ready to bill", lambda c: c["ready_value"]),
             ("unposted", "Not posted to ERP", lambda c: c["not_ready"]["unposted"]),
             ("missing_billing_setup", "Billing set-up missing",
              lambda c: c["not_ready"]["missing_billing_setup"])]
    figure = go.Figure([
        go.Bar(name=label, y=currencies,
               x=[_num(pick(result["currencies"][c])) for c in currencies],
               orientation="h", marker_color=PALETTE[key], hovertemplate=MONEY_HOVER)
        for key, label, pick in parts])
    figure.update_layout(**_layout(barmode="stack", height=150 + 50 * len(currencies),
                                   xaxis_title="Billable value of the period "
                                               "(each in its own currency)"))
    return as_spec(figure)


def reconciliation_bars(result: Json) -> Spec | None:
    """Approved, posted and billed counts of time entries and expenses."""
    stages = [("approved", "Approved in PSA", "#94a3b8"), ("posted", "Posted to ERP", "#2f5bea"),
              ("billed", "Billed", "#1a7f4b")]
    kinds = [("time", "Time entries"), ("expenses", "Expenses")]
    figure = go.Figure([go.Bar(name=label, x=[name for _, name in kinds],
                               y=[result[kind][stage]["count"] for kind, _ in kinds],
                               marker_color=color) for stage, label, color in stages])
    figure.update_layout(**_layout(barmode="group", yaxis_title="Items (count)"))
    return as_spec(figure)


def table_of(spec: Spec) -> dict[str, Any]:
    """A drawn chart's numbers as a table, its text alternative: {"caption", "columns",
    "rows"} with one row per category and one column per series (names as drawn)."""
    traces = spec["data"]
    horizontal = bool(traces) and traces[0].get("orientation") == "h"
    category, value = ("y", "x") if horizontal else ("x", "y")
    axis = spec["layout"].get(f"{category}axis", {}).get("title", {})
    categories = []
    for trace in traces:
        categories += [c for c in trace.get(category) or [] if c not in categories]
    columns = [axis.get("text", "") if isinstance(axis, dict) else "",
               *[trace.get("name", "") for trace in traces]]
    by_trace = [dict(zip(trace.get(category) or [], trace.get(value) or [], strict=False))
                for trace in traces]
    rows = [[c, *[_cell(values.get(c)) for values in by_trace]] for c in categories]
    caption = spec["layout"].get(f"{value}axis", {}).get("title", {})
    return {"caption": caption.get("text", "") if isinstance(caption, dict) else "",
            "columns": columns, "rows": rows}


def _cell(number: float | None) -> str:
    if number is None:
        return "—"
    if isinstance(number, float) and not number.is_integer():
        return f"{number:,.1f}"
    return f"{number:,.0f}"
