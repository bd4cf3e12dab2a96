"""The KPIs of SPEC section 4 (version 2): one function each, plain arguments in, JSON-ready
dicts out, one module per concept.

The pages, the read API and the tests all call these functions. Money and hours come out as
decimal strings with two places, ratios as numbers (None on an empty denominator), durations
in seconds. Amounts are grouped by currency and never converted. "Value" is billable value
(`opsview.selectors`); "as of T" is point in time, read from the WIP spans and the invoices'
dates (`opsview.timeline`).

This module re-exports the names the rest of the tree reads as `kpis.<name>`, so callers do not
need to know which module holds a KPI.
"""
from opsview.selectors import counted_invoices
from reporting.kpis.choices import filter_choices
from reporting.kpis.formatting import (
    _clean,
    _iso,
    age_bucket,
    money,
    percentile_cont,
    percentile_from_counts,
    ratio,
    weekdays,
)
from reporting.kpis.integration import flow_series, integration_health
from reporting.kpis.latency import posting_latency, posting_latency_trend
from reporting.kpis.margin import MARGIN_GROUPS, margin
from reporting.kpis.periods import GROUPS, _day_bounds
from reporting.kpis.readiness import (
    blocked_invoices,
    invoice_readiness,
    readiness_breakdown,
    readiness_population,
)
from reporting.kpis.receivables import receivables
from reporting.kpis.utilization import utilization
from reporting.kpis.wip import _wip_rows, fixed_fee_wip, wip, wip_breakdown, wip_entries, wip_totals

__all__ = [
    "GROUPS",
    "MARGIN_GROUPS",
    "_clean",
    "_day_bounds",
    "_iso",
    "_wip_rows",
    "age_bucket",
    "blocked_invoices",
    "counted_invoices",
    "filter_choices",
    "fixed_fee_wip",
    "flow_series",
    "integration_health",
    "invoice_readiness",
    "margin",
    "money",
    "percentile_cont",
    "percentile_from_counts",
    "posting_latency",
    "posting_latency_trend",
    "ratio",
    "readiness_breakdown",
    "readiness_population",
    "receivables",
    "utilization",
    "weekdays",
    "wip",
    "wip_breakdown",
    "wip_entries",
    "wip_totals",
]
