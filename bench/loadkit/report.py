"""The load report: figures over the steady window, the verdict against the targets, the
printed summary and the chart."""
from __future__ import annotations

import argparse
import itertools
import os
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadkit.common import log
from loadkit.stats import percentile, rounded, slope_per_minute

if TYPE_CHECKING:
    from loadkit.feed import Feed
    from loadkit.poller import Poller
    from loadkit.sampler import Sampler


def summarize(args: argparse.Namespace, feed: Feed, poller: Poller, sampler: Sampler,
              inbox: dict[str, Any], window: tuple[float, float],
              drained: tuple[float | None, int | None]) -> dict[str, Any]:
    """Every figure over the steady window (`window`: seconds since the feed started), the
    verdict, and the time series behind them."""
    start, end = window
    steady = [s for s in sampler.samples if start <= s["t"] <= end]
    report = {
        "config": dict(vars(args)),
        "window_s": [round(start, 1), round(end, 1)],
        **feed_figures(feed, window),
        "processed_per_s": {"steady": round(inbox["processed_in_window"] / (end - start), 1)},
        "backlog": backlog_figures(steady, drained),
        "inbox_lag_s": inbox,
        "worker_rss_mib": rss_figures(steady),
        **cpu_figures(steady),
        "pg_active_backends_mean": {
            kind: round(sum(s["pg_active"].get(kind, 0) for s in steady) / len(steady), 2)
            for kind in sorted({k for s in steady for k in s["pg_active"]})},
        "dashboard_ms": dashboard_figures(poller.samples, window),
    }
    report["verdict"] = verdict(args, report)
    report["series"] = {
        "samples": sampler.samples,
        "requests": [[round(t, 2), a, s, round(ms, 1), round(b, 3)]
                     for t, a, s, ms, b in feed.responses],
        "dashboard": [[round(t, 2), url, kind, round(ms, 1), status]
                      for t, url, kind, ms, status in poller.samples]}
    return report


def feed_figures(feed: Feed, window: tuple[float, float]) -> dict[str, Any]:
    start, end = window
    in_window = [r for r in feed.responses if start <= r[0] < end]
    scheduled = feed.total * feed.batch
    return {
        "accepted_per_s": {"steady": round(sum(r[1] for r in in_window) / (end - start), 1),
                           "overall": round(feed.totals["accepted"] / end, 1)},
        "events": {"scheduled": scheduled,
                   "unsent (feed behind schedule)": scheduled - feed.totals["sent"],
                   **dict(sorted(feed.totals.items()))},
        "sender": {
            "request_ms_p50": rounded(percentile([r[3] for r in feed.responses], 0.5)),
            "request_ms_p95": rounded(percentile([r[3] for r in feed.responses], 0.95)),
            "behind_schedule_s_p95": rounded(
                percentile([r[4] for r in feed.responses], 0.95), 2),
            "behind_schedule_s_max": rounded(
                max((r[4] for r in feed.responses), default=0), 2)},
    }


def backlog_figures(steady: list[dict[str, Any]], drained: tuple[float | None, int | None],
                    ) -> dict[str, Any]:
    drain_seconds, pending_at_feed_end = drained
    return {
        "start": steady[0]["pending"], "end": steady[-1]["pending"],
        "max": max(s["pending"] for s in steady),
        "slope_per_min": rounded(slope_per_minute([(s["t"], s["pending"]) for s in steady])),
        "oldest_pending_s_max": max(s["oldest_pending_s"] or 0 for s in steady),
        "at_feed_end": pending_at_feed_end,
        "drain_s_after_feed": rounded(drain_seconds),
        # Processing alone, once the feed and the dashboards have stopped.
        "drain_rate_per_s": rounded(pending_at_feed_end / drain_seconds
                                    if drain_seconds and pending_at_feed_end else None)}


def rss_figures(steady: list[dict[str, Any]]) -> dict[str, Any]:
    """Per worker and in total: RSS at start, middle and end of the window, its maximum,
    and its slope over the whole window and over its second half."""
    figures = {}
    for name in [*steady[0]["rss_mib"], "total"]:
        def value(sample: dict[str, Any], name: str = name) -> float:
            return (sum(sample["rss_mib"].values()) if name == "total"
                    else sample["rss_mib"].get(name, 0))
        figures[name] = {
            "start": rounded(value(steady[0])), "middle": rounded(value(steady[len(steady) // 2])),
            "end": rounded(value(steady[-1])), "max": rounded(max(map(value, steady))),
            "slope_per_min": rounded(slope_per_minute([(s["t"], value(s)) for s in steady]), 2),
            "slope_second_half_per_min": rounded(slope_per_minute(
                [(s["t"], value(s)) for s in steady[len(steady) // 2:]]), 2)}
    return figures


def cpu_figures(steady: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU used and run-queue wait by component, in % of one core, over the window; what
    the rest of the machine used is the machine's busy time minus the components'."""
    running, waiting = {}, {}
    first, last = steady[0], steady[-1]
    span = last["t"] - first["t"]
    if span <= 0:
        return {"cpu_percent_of_one_core": running, "cpu_wait_percent_of_one_core": waiting}
    for component in sorted(last["cpu_s"]):
        running[component] = rounded(
            100 * (last["cpu_s"][component] - first["cpu_s"].get(component, 0)) / span)
        waiting[component] = rounded(
            100 * (last["cpu_wait_s"][component] - first["cpu_wait_s"].get(component, 0)) / span)
    machine = 100 * (last["machine_cpu_s"] - first["machine_cpu_s"]) / span
    running["other processes on the machine"] = rounded(machine - sum(running.values()))
    running[f"machine ({os.cpu_count()} cores)"] = rounded(machine)
    return {"cpu_percent_of_one_core": running, "cpu_wait_percent_of_one_core": waiting,
            "machine_busy_percent": rounded(machine / os.cpu_count())}


def dashboard_figures(samples: list[tuple[float, str, str, float, str]],
                      window: tuple[float, float]) -> dict[str, Any]:
    """p50/p95/max per URL, per kind (page, panel, api) and overall, over the window."""
    start, end = window
    groups = defaultdict(list)
    errors = defaultdict(int)
    for t, url, kind, ms, status in samples:
        if not start <= t <= end:
            continue
        for key in (url, f"all {kind}s", "all"):
            groups[key].append(ms)
            if status != "200":
                errors[key] += 1
    return {key: {"n": len(values), "p50": rounded(percentile(values, 0.5)),
                  "p95": rounded(percentile(values, 0.95)), "max": rounded(max(values)),
                  "errors": errors[key]}
            for key, values in groups.items()}


def verdict(args: argparse.Namespace, report: dict[str, Any]) -> dict[str, Any]:
    """The targets, as this benchmark judges them: over the steady window the backlog grows
    by less than 1 % of a minute's feed per minute, and over its second half (caches and
    connection pools fill early; a leak keeps growing) no worker's RSS grows by more than
    1 MiB a minute."""
    backlog_slope = report["backlog"]["slope_per_min"] or 0
    rss_slopes = [v["slope_second_half_per_min"] or 0
                  for k, v in report["worker_rss_mib"].items() if k != "total"]
    return {
        "rate_reached": report["accepted_per_s"]["steady"] >= 0.98 * args.rate,
        "no_backlog_growth": backlog_slope <= 0.01 * args.rate * 60,
        "worker_rss_flat": all(slope <= 1.0 for slope in rss_slopes),
    }


def print_report(report: dict[str, Any], out: Path) -> None:
    c = report["config"]
    print(f"\nsustained load: {c['rate']} events/s target, {c['duration']} s, batches of "
          f"{c['batch']}, {c['workers']} workers ({c['pool']}), {c['web_workers']} gunicorn "
          f"workers × {c['web_threads']} threads")
    start, end = report["window_s"]
    print(f"steady window: {start:.0f}–{end:.0f} s (after a {c['warmup']} s warm-up)\n")
    lag, backlog = report["inbox_lag_s"], report["backlog"]
    sender = report["sender"]
    rows = [
        ("accepted events/s (steady / overall)", "{:,.0f} / {:,.0f}".format(
            report["accepted_per_s"]["steady"], report["accepted_per_s"]["overall"])),
        ("processed events/s (steady)", f"{report['processed_per_s']['steady']:,.0f}"),
        ("backlog start → end (max)",
         f"{backlog['start']:,} → {backlog['end']:,} ({backlog['max']:,})"),
        ("backlog slope", f"{backlog['slope_per_min']:+,.0f} events/min"),
        ("oldest pending (max)", f"{backlog['oldest_pending_s_max']:.1f} s"),
        ("drain after the feed stopped", f"{backlog['drain_s_after_feed']} s" + (
            f" ({backlog['drain_rate_per_s']:,.0f} events/s)"
            if backlog["drain_rate_per_s"] else "")),
        ("inbox lag p50 / p95 / max", f"{lag['p50']} / {lag['p95']} / {lag['max']} s"),
        ("  over rows received in the window",
         f"{lag['rows']:,} ({lag['still_pending']:,} still pending at the end)"),
        ("sender request p50 / p95",
         f"{sender['request_ms_p50']} / {sender['request_ms_p95']} ms"),
        ("sender behind schedule p95 / max",
         f"{sender['behind_schedule_s_p95']} / {sender['behind_schedule_s_max']} s"),
        ("machine busy (all cores)", f"{report.get('machine_busy_percent')} %"),
        ("PostgreSQL active backends (mean)", ", ".join(
            f"{kind} {n}" for kind, n in report["pg_active_backends_mean"].items()) or "none"),
    ]
    for label, value in rows:
        print(f"  {label:<38} {value}")
    print("\n  worker RSS (MiB)        start   middle      end      max   slope/min "
          "(2nd half)")
    for name, rss in report["worker_rss_mib"].items():
        print(f"  {name:<20} {rss['start']:>9} {rss['middle']:>8} {rss['end']:>8} "
              f"{rss['max']:>8} {rss['slope_per_min']:>+10} "
              f"({rss['slope_second_half_per_min']:+})")
    print("\n  CPU, % of one core (steady window)                 running  waiting for a CPU")
    for component, percent in report["cpu_percent_of_one_core"].items():
        waiting = report["cpu_wait_percent_of_one_core"].get(component, "")
        print(f"  {component:<46} {percent:>11} {waiting:>12}")
    print("\n  dashboards while loaded (ms)             n      p50      p95      max  errors")
    for url, figures in sorted(report["dashboard_ms"].items(),
                               key=lambda item: (item[0].startswith("all"), item[0])):
        print(f"  {url:<36} {figures['n']:>6} {figures['p50']:>8} {figures['p95']:>8} "
              f"{figures['max']:>8} {figures['errors']:>7}")
    print("\n  requests and events: " + ", ".join(f"{k} {v:,}"
                                                 for k, v in report["events"].items()))
    print(f"  inbox statuses: {lag['statuses']}")
    print("  verdict: " + ", ".join(f"{k} {'yes' if v else 'NO'}"
                                    for k, v in report["verdict"].items()))
    print(f"  figures and time series: {out}")


def write_chart(report: dict[str, Any], path: Path) -> Path:
    """Rates, backlog, oldest pending, worker RSS, CPU and dashboard latency over time, as
    one self-contained HTML file (plotly.js inline)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    samples = report["series"]["samples"]
    t = [s["t"] for s in samples]
    fig = make_subplots(rows=6, cols=1, shared_xaxes=True, vertical_spacing=0.03, subplot_titles=[
        "events/s (per 5 s)", "inbox backlog (pending rows)", "oldest pending row (s)",
        "worker RSS (MiB)", "CPU (% of one core)", "dashboard latency (ms)"])

    def per_second(key: str) -> list[float | None]:
        return [None] + [(b[key] - a[key]) / max(b["t"] - a["t"], 1e-9)
                         for a, b in itertools.pairwise(samples)]

    def add(row: int, **trace: Any) -> None:
        # Each panel has its own legend beside it (legend, legend2, …): one long legend
        # for six panels would leave the reader matching colours across the page.
        kind = trace.pop("kind", go.Scatter)
        fig.add_trace(kind(legend="legend" if row == 1 else f"legend{row}", **trace), row, 1)

    add(1, x=t, y=per_second("accepted"), name="accepted/s")
    add(1, x=t, y=per_second("processed"), name="processed/s")
    add(1, x=[t[0], t[-1]], y=[report["config"]["rate"]] * 2, name="target",
        line={"dash": "dot"})
    add(2, x=t, y=[s["pending"] for s in samples], name="pending rows")
    add(3, x=t, y=[s["oldest_pending_s"] for s in samples], name="oldest pending")
    for name in samples[-1]["rss_mib"]:
        add(4, x=t, y=[s["rss_mib"].get(name) for s in samples], name=name)
    for component in samples[-1]["cpu_s"]:
        add(5, x=t, y=[None] + [
            100 * (b["cpu_s"].get(component, 0) - a["cpu_s"].get(component, 0))
            / max(b["t"] - a["t"], 1e-9) for a, b in itertools.pairwise(samples)],
            name=component)
    by_kind = defaultdict(lambda: ([], []))
    for when, _url, kind, ms, _status in report["series"]["dashboard"]:
        by_kind[kind][0].append(when)
        by_kind[kind][1].append(ms)
    for kind, (x, y) in by_kind.items():
        add(6, x=x, y=y, mode="markers", name=kind, marker={"size": 4})
    fig.update_yaxes(type="log", title_text="ms (log)", row=6, col=1)
    for row in range(1, 7):
        top = fig.layout[f"yaxis{'' if row == 1 else row}"].domain[1]
        fig.update_layout({"legend" if row == 1 else f"legend{row}": {
            "x": 1.01, "y": top, "xanchor": "left", "yanchor": "top"}})
    start, end = report["window_s"]
    fig.add_vrect(x0=0, x1=start, fillcolor="grey", opacity=0.12, line_width=0,
                  annotation_text="warm-up", row="all", col=1)
    fig.add_vline(x=end, line_dash="dash", line_color="grey", row="all", col=1)
    c = report["config"]
    fig.update_layout(height=1700, title=f"OpsView sustained load: {c['rate']} events/s for "
                                         f"{c['duration']} s, {c['workers']} workers")
    fig.update_xaxes(title_text="seconds since the feed started", row=6, col=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        try:
            fig.write_image(path)
            return path
        except (ImportError, ValueError) as exc:  # kaleido missing: HTML instead
            log(f"cannot write PNG ({exc}); writing HTML")
            path = path.with_suffix(".html")
    fig.write_html(path, include_plotlyjs=True)
    return path
