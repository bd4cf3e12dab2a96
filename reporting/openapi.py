"""The OpenAPI 3.1 document of the ingestion and read APIs, served at /api/schema/.

Built from the same sources the endpoints use: the event contracts (pydantic), the case
filter's choices and the KPI parameter rules, so the document cannot drift far from the
code. The property-based contract tests (tests/test_openapi.py) run against it.
"""
import functools

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from exceptions.filters import AGE_BUCKETS, SORTS
from exceptions.models import Case, CaseType, Severity
from exceptions.services import RESOLUTION_CODES
from exceptions.views import ACTIONS
from ingestion import catalog
from reporting.case_api import TEXT_LIMITS
from reporting.trends import METRICS as TREND_METRICS

PROBLEM = "application/problem+json"
REF = "#/components/schemas/"


def ref(name):
    return {"$ref": REF + name}


def problem(description, headers=None):
    response = {"description": description, "content": {PROBLEM: {"schema": ref("Problem")}}}
    if headers:
        response["headers"] = headers
    return response


RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}}
UNAVAILABLE = problem("The database cannot be reached (down or restarting); nothing was "
                      "changed. Retry after the given seconds.", RETRY_AFTER)


# --- Schemas -------------------------------------------------------------------------------
DECIMAL = {"type": "string", "pattern": r"^-?\d+\.\d{2}$", "description": "Decimal, two places"}
RATIO = {"type": ["number", "null"], "description": "null where the denominator is 0"}
SECONDS = {"type": ["number", "null"], "description": "Seconds"}
DATETIME = {"type": ["string", "null"], "format": "date-time"}
BY_CURRENCY = {"type": "object", "description": "Keyed by ISO 4217 currency code"}


def _object(required, properties=None, **extra):
    """An object with these required keys; more keys may follow (the contract says so)."""
    schema = {"type": "object", "required": list(required),
              "properties": {key: {} for key in required}}
    schema["properties"].update(properties or {})
    schema.update(extra)
    return schema


DAYS = {"type": "object", "required": ["p50", "p90"], "description": "Days",
        "properties": {"p50": {"type": ["number", "null"]}, "p90": {"type": ["number", "null"]}}}
REPORTING = _object(["currency", "total", "rates", "unconverted"], {
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}, "total": DECIMAL,
    "rates": {"type": "array", "items": _object(["base", "quote", "rate", "date"], {
        "rate": {"type": "string"}, "date": {"type": "string", "format": "date"}})},
    "unconverted": {"type": "array", "items": {"type": "string"}}},
    description="The headline amounts converted into the currency asked for (`currency=`)")


def _reconciled(hours):
    """The figures of one kind of item in the reconciliation answer."""
    counted = ["count", "hours", "currencies"] if hours else ["count", "currencies"]
    figures = _object(counted, {"count": {"type": "integer"},
                                "currencies": {**BY_CURRENCY, "additionalProperties": DECIMAL}})
    gap = _object([*counted, "ids"], {**figures["properties"], "ids": {
        "type": "array", "maxItems": 100, "items": {"type": "string"}}})
    return _object(["approved", "posted", "billed", "approved_not_posted", "posted_not_billed",
                    "billed_not_posted", "reversed_but_billed"], {
        "approved": figures, "posted": figures, "billed": figures,
        "approved_not_posted": gap, "posted_not_billed": gap, "billed_not_posted": gap,
        "reversed_but_billed": _object(["count", "currencies", "ids"],
                                       {**figures["properties"], "ids": gap["properties"]["ids"]})})


def _money_by_currency(keys):
    return {**BY_CURRENCY, "additionalProperties": _object(
        keys, dict.fromkeys(keys, DECIMAL))}


KPI_SCHEMAS = {
    "WipKpi": _object(["as_of", "currencies"], {
        "as_of": {"type": "string", "format": "date"},
        "currencies": {**BY_CURRENCY, "additionalProperties": _object(
            ["total", "time", "expenses", "milestones", "fixed_fee", "in_billing", "aging"],
            {"total": DECIMAL, "time": DECIMAL, "expenses": DECIMAL, "milestones": DECIMAL,
             "fixed_fee": DECIMAL, "in_billing": DECIMAL,
             "aging": _object(["0-30", "31-60", "61-90", "90+"])})}}),
    "InvoiceReadinessKpi": _object(["period", "currencies", "blocked_invoices"], {
        "period": {"type": "string", "pattern": r"^\d{4}-\d{2}$"},
        "currencies": {**BY_CURRENCY, "additionalProperties": _object(
            ["billable_value", "invoiced_value", "in_billing_value", "ready_value",
             "not_ready_value", "not_ready", "readiness_ratio"],
            {"in_billing_value": DECIMAL, "readiness_ratio": RATIO,
             "not_ready": _object(["unposted", "missing_billing_setup"])})},
        "blocked_invoices": _object(["count", "by_reason", "currencies"], {
            "count": {"type": "integer"},
            "currencies": {**BY_CURRENCY, "additionalProperties": DECIMAL}})}),
    "PostingLatencyKpi": _object(
        ["start", "end", "sla_seconds", "count", "p50_seconds", "p90_seconds", "p95_seconds",
         "within_sla_ratio", "backlog", "expenses"],
        {"count": {"type": "integer"}, "p50_seconds": SECONDS, "p90_seconds": SECONDS,
         "p95_seconds": SECONDS, "within_sla_ratio": RATIO,
         "backlog": _object(["count", "hours", "oldest_approved_at", "currencies"],
                            {"oldest_approved_at": DATETIME}),
         "expenses": _object(
             ["count", "p50_seconds", "p90_seconds", "p95_seconds", "within_sla_ratio",
              "backlog"],
             {"count": {"type": "integer"}, "p50_seconds": SECONDS, "p90_seconds": SECONDS,
              "p95_seconds": SECONDS, "within_sla_ratio": RATIO,
              "backlog": _object(["count", "oldest_approved_at", "currencies"],
                                 {"oldest_approved_at": DATETIME})})}),
    "UtilizationKpi": _object(
        ["start", "end", "billable_hours", "total_hours", "capacity_hours", "utilization_ratio",
         "freshness_seconds", "by_practice", "by_person"],
        {"billable_hours": DECIMAL, "total_hours": DECIMAL, "capacity_hours": DECIMAL,
         "utilization_ratio": RATIO, "freshness_seconds": SECONDS,
         "by_practice": {"type": "array", "items": _object(
             ["practice", "billable_hours", "capacity_hours", "utilization_ratio"])},
         "by_person": {"type": "array", "items": _object(["person_id"])}}),
    "IntegrationHealthKpi": _object(
        ["start", "end", "flows", "inbox", "duplicates", "conflicts", "reconciliation_gaps"],
        {"flows": {"type": "array", "items": _object(
            ["flow", "source_system", "target_system", "succeeded", "failed", "success_ratio",
             "p95_latency_ms", "last_event_at", "expected_silence_seconds", "stale",
             "open_failures"],
            {"success_ratio": RATIO, "stale": {"type": "boolean"},
             "expected_silence_seconds": SECONDS})},
         "inbox": _object(["pending", "oldest_pending_age_seconds", "dead"]),
         "reconciliation_gaps": {"type": "array", "items": _object(
             ["flow", "object_type", "period_start", "period_end", "source_count",
              "target_count", "gap"])}}),
    "MarginKpi": _object(["start", "end", "group_by", "rows"], {
        "group_by": {"enum": ["project", "practice", "client"]},
        "rows": {"type": "array", "items": _object(
            ["key", "currency", "earned_revenue", "labor_cost", "margin", "margin_ratio",
             "billed_revenue", "recognized_revenue"], {"margin_ratio": RATIO})}}),
    "ReceivablesKpi": _object(["as_of", "currencies"], {
        "currencies": {**BY_CURRENCY, "additionalProperties": _object(
            ["open_ar", "issued_90d", "dso_days"], {"dso_days": RATIO})}}),
    "BillingKpi": _object(["start", "end", "currencies", "touchless_ratio"], {
        "currencies": {**BY_CURRENCY, "additionalProperties": _object(
            ["count", "billed_value", "standard_value", "realization_ratio", "cycle_days",
             "billing_lag_days", "collection_days"],
            {"count": {"type": "integer"}, "billed_value": DECIMAL, "standard_value": DECIMAL,
             "realization_ratio": RATIO, "cycle_days": DAYS, "billing_lag_days": DAYS,
             "collection_days": DAYS})},
        "touchless_ratio": RATIO}),
    "ReconciliationKpi": _object(["period", "time", "expenses", "reported"], {
        "period": {"type": "string", "pattern": r"^\d{4}-\d{2}$"},
        "time": _reconciled(hours=True), "expenses": _reconciled(hours=False),
        "reported": {"type": "array", "items": _object(
            ["flow", "object_type", "period_start", "period_end", "source_count",
             "target_count", "opsview_source_count", "opsview_target_count", "agrees"],
            {"source_count": {"type": "integer"}, "target_count": {"type": "integer"},
             "opsview_source_count": {"type": ["integer", "null"]},
             "opsview_target_count": {"type": ["integer", "null"]},
             "agrees": {"type": ["boolean", "null"]}})}}),
    "PeriodCloseKpi": _object(
        ["period", "cutoff_at", "seconds_to_cutoff", "currencies", "blocking_cases"],
        {"cutoff_at": {"type": "string", "format": "date-time"},
         "seconds_to_cutoff": {"type": "integer"},
         "currencies": {**BY_CURRENCY, "additionalProperties": _object(
             ["billable_value", "billed_value", "in_billing_value", "ready_value",
              "not_ready_value", "not_ready", "slipped_value"],
             {"billable_value": DECIMAL, "billed_value": DECIMAL, "in_billing_value": DECIMAL,
              "ready_value": DECIMAL, "not_ready_value": DECIMAL,
              "not_ready": _object(["unposted", "missing_billing_setup"]),
              "slipped_value": {"anyOf": [DECIMAL, {"type": "null"}],
                                "description": "null until the cut-off has passed"}})},
         "blocking_cases": _object(["count", "at_risk", "currencies"], {
             "count": {"type": "integer"}, "at_risk": {"type": "integer"},
             "currencies": {**BY_CURRENCY, "additionalProperties": DECIMAL}})}),
    "TrendsKpi": _object(["metric", "interval", "points"], {
        "interval": {"enum": ["week", "month"]},
        "points": {"type": "array", "items": {"anyOf": [
            _object(["end", "value"], {"end": {"type": "string", "format": "date"},
                                       "value": {"type": ["number", "null"]}}),
            _object(["end", "currencies"], {
                "end": {"type": "string", "format": "date"},
                "currencies": {**BY_CURRENCY, "additionalProperties": {
                    "anyOf": [DECIMAL, {"type": ["number", "null"]}]}}})]}}}),
    "ExceptionsKpi": _object(
        ["open", "breached", "at_risk", "by_type", "by_queue", "by_severity", "by_owner",
         "aging", "mtta_seconds", "mttr_seconds"],
        {"open": {"type": "integer"}, "breached": {"type": "integer"},
         "at_risk": {"type": "integer"}, "mtta_seconds": SECONDS, "mttr_seconds": SECONDS,
         "aging": _object(list(AGE_BUCKETS))}),
}

for _name in ("WipKpi", "InvoiceReadinessKpi", "PostingLatencyKpi", "MarginKpi",
              "ReceivablesKpi", "BillingKpi", "PeriodCloseKpi"):
    KPI_SCHEMAS[_name]["properties"]["reporting"] = REPORTING

SCHEMAS = {
    "Problem": {
        "type": "object", "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "detail", "errors"],
        "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                       "status": {"type": "integer"}, "detail": {"type": "string"},
                       "errors": {"type": "array", "items": {"type": "string"}}},
    },
    "CloudEvent": {
        "type": "object",
        "description": "A CloudEvents 1.0 event. `data` follows the JSON Schema of its type "
                       "at /ingest/schemas/<type>.json. An event whose envelope is invalid is "
                       "still accepted with 202, listed in `rejected` and kept as a dead "
                       "letter.",
        "required": ["specversion", "id", "source", "type", "time"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "minLength": 1, "maxLength": 255},
            "source": {"type": "string", "minLength": 1, "maxLength": 500},
            "type": {"type": "string", "enum": sorted(catalog.CONTRACTS)},
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": "string", "maxLength": 500},
            "correlationid": {"type": "string", "minLength": 1, "maxLength": 255},
            "datacontenttype": {"type": "string"},
            "data": {"type": "object"},
        },
    },
    "IngestResult": {
        "type": "object", "required": ["accepted", "duplicates", "rejected"],
        "properties": {
            "accepted": {"type": "integer", "minimum": 0},
            "duplicates": {"type": "integer", "minimum": 0},
            "rejected": {"type": "array", "items": {
                "type": "object", "required": ["index", "id", "errors"],
                "properties": {"index": {"type": "integer"}, "id": {"type": ["string", "null"]},
                               "errors": {"type": "array", "items": {"type": "string"}}}}},
        },
    },
    "SchemaCatalog": _object(["specversion", "types"], {"types": {"type": "array", "items": {
        "type": "object", "required": ["type", "schema"]}}}),
    "Case": _object(
        ["id", "type", "fingerprint", "title", "status", "severity", "queue", "owner",
         "money_at_stake", "currency", "object", "began_at", "opened_at", "first_seen_at",
         "last_seen_at", "times_seen", "sla", "resolved_at", "resolution_code"],
        {"id": {"type": "integer"}, "type": {"enum": CaseType.values},
         "status": {"enum": Case.Status.values}, "severity": {"enum": Severity.values},
         "owner": {"type": ["string", "null"]},
         "began_at": DATETIME, "opened_at": DATETIME,
         "money_at_stake": {"anyOf": [DECIMAL, {"type": "null"}]},
         "sla": _object(["state", "breached", "response_due_at", "resolution_due_at",
                         "acknowledged_at"])}),
    "CaseAction": _object(["case", "entries"], {
        "case": ref("Case"),
        "entries": {"type": "array", "items": _object(
            ["at", "actor", "action", "field", "from", "to", "comment"],
            {"at": {"type": "string", "format": "date-time"}, "actor": {"type": "string"},
             "action": {"type": "string"}})}}),
    "CaseList": _object(["count", "page", "page_size", "pages", "results"], {
        "count": {"type": "integer"}, "page": {"type": "integer"},
        "page_size": {"type": "integer"}, "pages": {"type": "integer"},
        "results": {"type": "array", "items": ref("Case")}}),
    **KPI_SCHEMAS,
}


# --- Parameters ----------------------------------------------------------------------------
def query(name, description, schema=None, required=False, **extra):
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema or {"type": "string"}, **extra}


DATE = {"type": "string", "format": "date"}
FILTERS = [query(name, f"Only records of this {name.replace('_', ' ')} (its id).",
                 {"type": "string", "maxLength": 255})
           for name in ("legal_entity", "practice", "client")]
WINDOW = [query("start", "First day, inclusive (default: 29 days before end).", DATE),
          query("end", "Last day, inclusive (default: today).", DATE)]
AS_OF = [query("as_of", "The day the figures are for (default: today).", DATE)]
CURRENCY = [query("currency", "A reporting currency (ISO 4217): adds `reporting`, the headline "
                              "amounts converted with published rates; a currency without a "
                              "rate is named in `unconverted`, never guessed.",
                  {"type": "string", "pattern": "^[A-Za-z]{3}$"})]
PERIOD_PATTERN = {"type": "string", "pattern": r"^\d{4}-(0[1-9]|1[0-2])$"}


def read_operation(summary, schema_name, parameters, operation_id, description=""):
    return {"get": {
        "operationId": operation_id, "summary": summary, "description": description,
        "tags": ["read"], "parameters": parameters,
        "security": [{"bearer": []}, {"session": []}],
        "responses": {
            "200": {"description": "The figures and the inputs they used.",
                    "content": {"application/json": {"schema": ref(schema_name)}}},
            "400": problem("A parameter is invalid; the problem names it."),
            "401": problem("No session and no valid bearer token."),
            "503": UNAVAILABLE,
        },
    }}


def _read_paths():
    kpi = "/api/v1/kpis/"
    return {
        kpi + "wip": read_operation("Unbilled work in progress and its aging", "WipKpi",
                                    AS_OF + FILTERS + CURRENCY, "kpiWip"),
        kpi + "invoice-readiness": read_operation(
            "Invoice readiness of a billing period", "InvoiceReadinessKpi",
            [query("period", "Billing period YYYY-MM (default: this month).", PERIOD_PATTERN)]
            + FILTERS + CURRENCY, "kpiInvoiceReadiness"),
        kpi + "posting-latency": read_operation(
            "Approval-to-posting latency and the unposted backlog", "PostingLatencyKpi",
            WINDOW + FILTERS + CURRENCY, "kpiPostingLatency"),
        kpi + "utilization": read_operation("Utilization", "UtilizationKpi", WINDOW + FILTERS,
                                            "kpiUtilization"),
        kpi + "integration-health": read_operation(
            "Integration health per flow, inbox and reconciliation gaps",
            "IntegrationHealthKpi",
            [query("window", "A window ending now: 90m, 24h, 7d (default 24h). Not with "
                             "start/end.", {"type": "string", "pattern": r"^\d{1,5}[mhd]$"})]
            + WINDOW, "kpiIntegrationHealth"),
        kpi + "margin": read_operation(
            "Margin by project, practice or client", "MarginKpi",
            WINDOW + [query("group_by", "Grouping (default project).",
                            {"enum": ["project", "practice", "client"]})] + FILTERS + CURRENCY,
            "kpiMargin"),
        kpi + "receivables": read_operation("Open receivables and DSO", "ReceivablesKpi",
                                            AS_OF + FILTERS + CURRENCY, "kpiReceivables"),
        kpi + "billing": read_operation(
            "Billing: realization, cycle time, billing lag, collection, touchless posting",
            "BillingKpi", [query("start", "First issue date, inclusive (default: 89 days "
                                          "before end).", DATE), WINDOW[1]]
            + FILTERS + CURRENCY, "kpiBilling"),
        kpi + "reconciliation": read_operation(
            "Approved, posted and billed time and expenses of a period, the gaps between "
            "them and the middleware's own reports", "ReconciliationKpi",
            [query("period", "Billing period YYYY-MM (default: last month).", PERIOD_PATTERN)]
            + FILTERS, "kpiReconciliation"),
        kpi + "period-close": read_operation(
            "A period against its billing cut-off: readiness, slipped value, blocking cases",
            "PeriodCloseKpi",
            [query("period", "Billing period YYYY-MM (default: last month).", PERIOD_PATTERN)]
            + FILTERS + CURRENCY, "kpiPeriodClose"),
        kpi + "trends": read_operation(
            "A KPI per ISO week or calendar month", "TrendsKpi",
            [query("metric", "The figure.", {"enum": list(TREND_METRICS)}, required=True),
             query("interval", "week or month (default month); readiness_ratio: month only.",
                   {"enum": ["week", "month"]}),
             query("start", "First day (default: the start of the 12th interval back).", DATE),
             query("end", "Last day, inclusive (default: today).", DATE)] + FILTERS,
            "kpiTrends"),
        kpi + "exceptions": read_operation("Exception cases: open, breached, aging, MTTA/MTTR",
                                           "ExceptionsKpi", FILTERS, "kpiExceptions"),
        "/api/v1/exceptions": read_operation(
            "Exception cases, filtered and paginated", "CaseList",
            CASE_FILTERS + [
                query("page", "Page number, from 1.",
                      {"type": "integer", "minimum": 1, "maximum": 10**6}),
                query("page_size", "Cases per page (default 50).",
                      {"type": "integer", "minimum": 1, "maximum": 500})],
            "listExceptions"),
        "/api/v1/exceptions.csv": _csv_operation(),
        "/api/v1/exceptions/{id}/actions": _action_operation(),
    }


def _action_operation():
    text = {name: {"type": ["string", "null"], "maxLength": limit}
            for name, limit in TEXT_LIMITS.items()}
    text["code"] = {"enum": [*RESOLUTION_CODES, None],
                    "description": "resolve: the resolution code (default fixed)"}
    text["owner"]["description"] = "assign: a username, or null/empty for nobody"
    text["comment"]["description"] = ("comment: the text; wait, resolve, ignore, reopen: an "
                                      "optional note")
    return {
        "parameters": [{"name": "id", "in": "path", "required": True,
                        "schema": {"type": "integer", "minimum": 1}}],
        "post": {
            "operationId": "actOnException", "tags": ["write"],
            "summary": "A triage action on a case: claim, assign, acknowledge, wait, resolve, "
                       "ignore, reopen, comment",
            "description": "The case page's actions: the same permission (the user's "
                           "exceptions.triage_case, and the token's `triage` scope), "
                           "validation and audit entries. A session also needs its CSRF "
                           "token.",
            "security": [{"bearer": []}, {"session": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["action"],
                "properties": {"action": {"enum": sorted(ACTIONS)}, **text}}}}},
            "responses": {
                "200": {"description": "Done: the case as it is now, and the audit entries "
                                       "the action wrote.",
                        "content": {"application/json": {"schema": ref("CaseAction")}}},
                "400": problem("The body is not a JSON object, or a field is invalid; the "
                               "problem names it."),
                "401": problem("No session and no valid bearer token."),
                "403": problem("The token lacks the `triage` scope, the user may not triage, "
                               "or a session sent no CSRF token."),
                "404": problem("No such case."),
                "405": problem("Another method than POST."),
                "409": problem("The case's status does not allow the action (reopen a "
                               "closed case first), or the owner cannot triage."),
                "503": UNAVAILABLE,
            },
        },
    }


CASE_FILTERS = [
    query("status", "Case status; `active` (default) is every open state.",
          {"enum": ["active", *Case.Status.values]}),
    query("type", "Case type.", {"enum": CaseType.values}),
    query("queue", "Queue slug.", {"type": "string", "maxLength": 50}),
    query("owner", "A username, or me, unassigned, someone.", {"type": "string"}),
    query("breached", "Only cases whose SLA is (true) or is not (false) breached.",
          {"type": "boolean"}),
    query("severity", "Severity.", {"enum": Severity.values}),
    query("sla", "SLA state.", {"enum": ["on_track", "at_risk", "breached"]}),
    query("age", "Age bucket.", {"enum": list(AGE_BUCKETS)}),
    query("client", "Client id.", {"type": "string"}),
    query("project", "Project id.", {"type": "string"}),
    query("q", "Search in title, object id and fingerprint.", {"type": "string"}),
    query("sort", "Order (default: resolution due first).", {"enum": list(SORTS)}),
]


def _csv_operation():
    operation = read_operation("Exception cases as CSV", "CaseList", CASE_FILTERS,
                               "exportExceptionsCsv")
    operation["get"]["responses"]["200"] = {
        "description": "One row per case, same filters as /api/v1/exceptions.",
        "content": {"text/csv": {"schema": {"type": "string"}}}}
    return operation


def _ingestion_paths():
    signature_headers = [
        {"name": "webhook-id", "in": "header", "required": True,
         "description": "Standard Webhooks message id.", "schema": {"type": "string"}},
        {"name": "webhook-timestamp", "in": "header", "required": True,
         "description": "Unix seconds; more than 5 minutes from now is rejected.",
         "schema": {"type": "string", "pattern": r"^\d+$"}},
        {"name": "webhook-signature", "in": "header", "required": True,
         "description": 'Space-separated "v1,<base64 HMAC-SHA256 of {id}.{timestamp}.{body}>"'
                        " keyed by the Source's secret.",
         "schema": {"type": "string"}},
    ]
    source = {"name": "source", "in": "path", "required": True,
              "description": "The Source's slug.",
              "schema": {"type": "string", "pattern": r"^[-a-zA-Z0-9_]{1,64}$"}}
    event_or_object = {"anyOf": [ref("CloudEvent"), {"type": "object"}]}
    return {
        "/ingest/{source}/events": {
            "parameters": [source],
            "post": {
                "operationId": "ingestEvents", "tags": ["ingestion"],
                "summary": "Deliver CloudEvents (structured, batched or binary mode)",
                "description": "Verified (Standard Webhooks) before anything is parsed; 202 "
                               "only once every event is committed to the durable inbox. "
                               "Idempotent on (source, CloudEvents source, event id).",
                "parameters": signature_headers,
                "security": [{"webhookSignature": []}],
                "requestBody": {"required": True, "content": {
                    "application/cloudevents+json": {"schema": event_or_object},
                    "application/cloudevents-batch+json": {"schema": {
                        "type": "array", "maxItems": settings.INGEST_MAX_BATCH, "items": event_or_object}},
                    "application/json": {"schema": {"type": "object"}},
                }, "description": "Structured: one event. Batched: an array of events. "
                                  "Binary (application/json): the body is `data`, the "
                                  "attributes are ce-id, ce-type, ce-source, ce-specversion, "
                                  "ce-time (and optional ce-subject, ce-correlationid) "
                                  "headers, percent-encoded as the CloudEvents HTTP binding "
                                  "says."},
                "responses": {
                    "202": {"description": "Committed to the inbox.",
                            "content": {"application/json": {"schema": ref("IngestResult")}}},
                    "400": problem("The body is not JSON, not the shape the content type "
                                   "says, or a batch is over the limit."),
                    "401": problem("Unknown or disabled source, missing headers, bad "
                                   "signature or stale timestamp (one body for each)."),
                    "411": problem("A chunked body the server cannot read to its end: send "
                                   "a Content-Length."),
                    "413": problem("The body is over the limit (5 MiB by default)."),
                    "415": problem("Another content type."),
                    "429": problem("Over the Source's rate limit.", RETRY_AFTER),
                    "503": UNAVAILABLE,
                },
            },
            "options": {
                "operationId": "webhookHandshake", "tags": ["ingestion"],
                "summary": "CloudEvents webhook validation handshake",
                "parameters": [{"name": "WebHook-Request-Origin", "in": "header",
                                "required": False, "schema": {"type": "string"}}],
                "security": [],
                "responses": {"200": {"description": "Allowed; `Allow: POST`."}},
            },
        },
        "/ingest/schemas/": {"get": {
            "operationId": "eventSchemaCatalog", "tags": ["ingestion"], "security": [],
            "summary": "The catalog of event types and their JSON Schemas",
            "responses": {"200": {"description": "Every event type and its schema's URL.",
                                  "content": {"application/json": {
                                      "schema": ref("SchemaCatalog")}}}}}},
        "/ingest/schemas/{event_type}.json": {"get": {
            "operationId": "eventSchema", "tags": ["ingestion"], "security": [],
            "summary": "The JSON Schema of one event type's data",
            "parameters": [{"name": "event_type", "in": "path", "required": True,
                            "schema": {"enum": sorted(catalog.CONTRACTS)}}],
            "responses": {
                "200": {"description": "A JSON Schema (2020-12).",
                        "content": {"application/schema+json": {"schema": {
                            "type": "object"}}}},
                "404": problem("No such event type."),
            }}},
    }


@functools.cache
def document():
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "OpsView API", "version": "1",
            "description": "Ingestion of signed CloudEvents webhooks, the read API of KPIs "
                           "and exception cases, and the triage actions on cases. Every "
                           "rejection is an RFC 9457 problem document. The contract is "
                           "docs/api.md.",
        },
        "paths": {**_ingestion_paths(), **_read_paths(), "/api/schema/": {"get": {
            "operationId": "openapiDocument", "tags": ["meta"], "security": [],
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI 3.1",
                                  "content": {"application/vnd.oai.openapi+json": {
                                      "schema": {"type": "object"}}}}}}}},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A token from `create_api_token` or the admin."},
                "session": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
                "webhookSignature": {
                    "type": "apiKey", "in": "header", "name": "webhook-signature",
                    "description": "Standard Webhooks HMAC-SHA256 with the Source's secret "
                                   "(with webhook-id and webhook-timestamp)."},
            },
        },
    }


@login_not_required
@require_GET
def schema_view(request):
    return JsonResponse(document(), content_type="application/vnd.oai.openapi+json",
                        json_dumps_params={"indent": 1})


# --- The readable reference at /api/docs/ -----------------------------------------------------
METHODS = ("get", "post", "put", "patch", "delete")


def _type(schema):
    """A schema in a few words: 'string (date)', 'array of Case', 'WipKpi'."""
    if not isinstance(schema, dict) or not schema:
        return "any"
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array":
        return f"array of {_type(schema.get('items'))}"
    detail = schema.get("format") or ("one of " + ", ".join(map(str, schema["enum"]))
                                      if "enum" in schema else "")
    return f"{kind} ({detail})" if detail else kind


def _body(content):
    """{media, type (in words), ref (the schema's name, if it is one)} of a request or
    response body, or None."""
    for media, body in (content or {}).items():
        schema = body.get("schema") or {}
        return {"media": media, "type": _type(schema),
                "ref": schema["$ref"].rsplit("/", 1)[-1] if "$ref" in schema else ""}
    return None


def reference():
    """The OpenAPI document as the API reference page reads it: operations grouped by tag,
    then the schemas with their properties."""
    spec = document()
    groups = {}
    for path, item in spec["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if not operation:
                continue
            tag = (operation.get("tags") or ["other"])[0]
            groups.setdefault(tag, []).append({
                "id": operation.get("operationId") or f"{method}-{path}",
                "method": method.upper(), "path": path,
                "summary": operation.get("summary", ""),
                "description": operation.get("description", ""),
                "auth": ", ".join(name for entry in operation.get("security", spec.get(
                    "security", [])) for name in entry) or "none",
                "parameters": [{"name": p["name"], "in": p["in"],
                                "required": p.get("required", False),
                                "type": _type(p.get("schema")),
                                "description": p.get("description", "")}
                               for p in operation.get("parameters", [])],
                "body": _body(operation.get("requestBody", {}).get("content")),
                "responses": [{"status": status, "description": answer.get("description", ""),
                               "body": _body(answer.get("content"))}
                              for status, answer in operation.get("responses", {}).items()],
            })
    schemas = [{"name": name, "description": schema.get("description", ""),
                "properties": [{"name": key, "type": _type(value),
                                "required": key in schema.get("required", []),
                                "description": value.get("description", "")
                                if isinstance(value, dict) else ""}
                               for key, value in schema.get("properties", {}).items()]}
               for name, schema in spec["components"]["schemas"].items()]
    return {"info": spec["info"], "groups": sorted(groups.items()), "schemas": schemas,
            "security": spec["components"]["securitySchemes"]}


def docs_view(request):
    """The API reference, rendered here from the OpenAPI document (no script, no CDN)."""
    return render(request, "opsview/api_docs.html", reference())
