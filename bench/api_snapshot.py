"""Every read-API answer for two fixed firms, recorded, and two recordings compared.

A restructuring (modules moved, the read API on another framework) must change no answer:
record before, record after, compare. The script talks to the app only through URLs
(django.test.Client, a superuser's session) and builds its data only by sending events
(ingestion.events.make_event through the signed webhook; the hand-worked firm of
tests/opsview/firm.py) and by `manage.py simulate`, so moved modules do not break it.

Each firm is built in a fresh database of its own (a temporary SQLite file, or a scratch
PostgreSQL database with --database-url) by a child process, with the clock frozen at
FROZEN_AT for the whole run and Celery eager.

    python bench/api_snapshot.py record before.json
    python bench/api_snapshot.py record after.json \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres
    python bench/api_snapshot.py compare before.json after.json
    python bench/api_snapshot.py record hand.json --firms hand   # what CI runs
"""
import argparse
import datetime as dt
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from django.http import HttpResponse
    from django.test import Client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# After every event of both firms (the hand-worked firm's last is 30 Apr 2026; the simulated
# firm ends on SIMULATED_END at 18:00), so none is refused as being from the future.
FROZEN_AT = dt.datetime(2026, 5, 1, 10, 0, tzinfo=dt.UTC)
SIMULATED_END = "2026-04-30"
FIRMS = ("hand", "simulated")
# Settings that would change answers or send work elsewhere: a recording runs without them.
CLEARED_ENV = ("CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER", "REDIS_URL",
               "DATABASE_REPLICA_URL", "DB_POOL_MAX_SIZE", "PYTEST_VERSION")

# Filter values each firm has (the simulated firm's ids come from opsview's simulator).
FIRM_VALUES = {
    "hand": {"clients": ["C1", "C2"], "practices": ["Data", "Cloud"],
             "entities": ["US", "UK"], "project": "P1"},
    "simulated": {"clients": ["CRM-1000", "CRM-1001"], "practices": ["Data & AI", "Cloud"],
                  "entities": ["US", "DE"], "project": "PRJ-2000"},
}
KPI = "/api/v1/kpis/"
AS_OF = [None, "2026-04-30", "2026-03-31", "2026-02-28", "2025-12-31"]
PERIODS = [None, "2026-04", "2026-03", "2026-02", "2026-01"]
WINDOWS = [{}, {"start": "2026-03-01", "end": "2026-03-31"},
           {"start": "2026-02-01", "end": "2026-02-28"},
           {"start": "2026-01-01", "end": "2026-04-30"}, {"end": "2026-03-31"},
           {"start": "2026-04-15"}]
TREND_METRICS = ["wip", "open_ar", "dso", "readiness_ratio", "posting_p95", "utilization",
                 "open_cases"]
CASE_FILTERS = {
    "status": ["active", "open", "acknowledged", "waiting", "resolved", "ignored"],
    "type": ["sync_failed", "dead_letter", "unknown_reference", "stale_feed",
             "reconciliation_gap", "approved_time_unposted", "invoice_blocked",
             "milestone_not_invoiced", "missing_billing_setup", "duplicate_client",
             "approved_expense_unposted"],
    "severity": ["critical", "high", "medium", "low"],
    "queue": ["integration", "finance-ops", "delivery-ops"],
    "owner": ["unassigned", "someone", "me"],
    "breached": ["true", "false"],
    "sla": ["on_track", "at_risk", "breached"],
    "age": ["<4h", "4-24h", "1-3d", "3-7d", ">7d"],
    "sort": ["due", "money", "age", "newest", "mine"],
}
# Refused parameters: their problem documents are answers too.
INVALID = [
    ("wip", {"as_of": "2026-13-01"}), ("wip", {"as_of": "1800-01-01"}),
    ("wip", {"currency": "EURO"}), ("wip", {"client": "x" * 256}),
    ("wip", {"practice": "Data\x00"}),
    ("invoice-readiness", {"period": "2026-1"}), ("invoice-readiness", {"period": "2300-01"}),
    ("posting-latency", {"start": "2026-04-01", "end": "2026-03-01"}),
    ("utilization", {"start": "2010-01-01", "end": "2026-03-31"}),
    ("integration-health", {"window": "0h"}), ("integration-health", {"window": "abc"}),
    ("integration-health", {"window": "400d"}),
    ("integration-health", {"window": "24h", "start": "2026-03-01"}),
    ("margin", {"group_by": "person"}), ("receivables", {"as_of": "yesterday"}),
    ("billing", {"start": "2026-05-02", "end": "2026-05-01"}),
    ("reconciliation", {"period": "March"}), ("period-close", {"period": "2026-00"}),
    ("trends", {}), ("trends", {"metric": "bogus"}),
    ("trends", {"metric": "readiness_ratio", "interval": "week"}),
    ("trends", {"metric": "wip", "interval": "day"}),
    ("trends", {"metric": "wip", "interval": "week", "start": "2020-01-01"}),
    ("trends", {"metric": "wip", "start": "2026-05-01", "end": "2026-04-01"}),
]
INVALID_CASES = [{"page_size": "0"}, {"page_size": "501"}, {"page": "abc"}, {"page": "999"},
                 {"status": "bogus"}, {"type": "bogus"}, {"breached": "maybe"},
                 {"sort": "bogus"}]


def requests_for(firm: str) -> list[tuple[str, dict[str, Any]]]:
    """(path, params) pairs: each endpoint's documented parameters, and some refused ones."""
    values = FIRM_VALUES[firm]
    filters = ([{"client": c} for c in values["clients"]]
               + [{"practice": p} for p in values["practices"]]
               + [{"legal_entity": e} for e in values["entities"]]
               + [{"client": values["clients"][0], "practice": values["practices"][0]},
                  {"client": "no-such-client"}])
    plan: list[tuple[str, dict[str, Any]]] = []

    def add(path: str, params: dict[str, Any] | None = None) -> None:
        plan.append((path, {k: v for k, v in (params or {}).items() if v is not None}))

    for name, param, choices in (("wip", "as_of", AS_OF), ("receivables", "as_of", AS_OF),
                                 ("invoice-readiness", "period", PERIODS),
                                 ("reconciliation", "period", PERIODS),
                                 ("period-close", "period", PERIODS)):
        for choice in choices:
            add(KPI + name, {param: choice})
        for chosen in filters:
            add(KPI + name, {param: choices[2], **chosen})
    for name in ("posting-latency", "utilization", "billing"):
        for window in WINDOWS:
            add(KPI + name, window)
        for chosen in filters:
            add(KPI + name, {**WINDOWS[3], **chosen})
    for name, param, choice in (("wip", "as_of", AS_OF[1]), ("wip", "as_of", AS_OF[2]),
                                ("receivables", "as_of", AS_OF[2]),
                                ("invoice-readiness", "period", PERIODS[2]),
                                ("period-close", "period", PERIODS[2]),
                                ("posting-latency", "end", "2026-03-31"),
                                ("billing", "end", "2026-03-31")):
        add(KPI + name, {param: choice, "currency": "EUR"})
        add(KPI + name, {param: choice, "currency": "gbp"})
    add(KPI + "wip", {"currency": "EUR", "client": values["clients"][0]})

    for window in ("24h", "1h", "90m", "7d", "30d", "366d", None):
        add(KPI + "integration-health", {"window": window})
    for window in WINDOWS[1:]:
        add(KPI + "integration-health", window)

    for group_by in (None, "project", "practice", "client"):
        for window in (WINDOWS[0], WINDOWS[1], WINDOWS[3]):
            add(KPI + "margin", {**window, "group_by": group_by})
        add(KPI + "margin", {**WINDOWS[3], "group_by": group_by, "currency": "EUR"})
    for chosen in filters:
        add(KPI + "margin", {**WINDOWS[3], "group_by": "project", **chosen})

    for metric in TREND_METRICS:
        for interval in (None, "month", "week"):
            if metric == "readiness_ratio" and interval == "week":
                continue  # refused: among INVALID
            add(KPI + "trends", {"metric": metric, "interval": interval})
        add(KPI + "trends", {"metric": metric, "start": "2026-01-01", "end": "2026-04-30"})
        if metric != "readiness_ratio":
            add(KPI + "trends", {"metric": metric, "interval": "week",
                                 "start": "2026-03-01", "end": "2026-04-30"})
    for chosen in filters[:3]:
        add(KPI + "trends", {"metric": "wip", **chosen})

    add(KPI + "exceptions")
    for chosen in filters:
        add(KPI + "exceptions", chosen)

    add("/api/v1/exceptions")
    for page in (1, 2, 3, 4):
        add("/api/v1/exceptions", {"page_size": "10", "page": str(page)})
    add("/api/v1/exceptions", {"page_size": "500"})
    for name, choices in CASE_FILTERS.items():
        for choice in choices:
            add("/api/v1/exceptions", {name: choice, "page_size": "500"})
    add("/api/v1/exceptions", {"client": values["clients"][0], "page_size": "500"})
    add("/api/v1/exceptions", {"project": values["project"], "page_size": "500"})
    add("/api/v1/exceptions", {"q": "invoice", "page_size": "500"})
    add("/api/v1/exceptions", {"status": "resolved", "sort": "money", "page_size": "500"})
    for params in ({}, {"status": "resolved"}, {"type": "invoice_blocked"}, {"sort": "money"},
                   {"queue": "integration"}):
        add("/api/v1/exceptions.csv", params)

    for name, params in INVALID:
        add(KPI + name, params)
    for params in INVALID_CASES:
        add("/api/v1/exceptions", params)
    return plan


# --- Recording (a child process per firm) ---------------------------------------------------
def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["DEBUG"] = "1"  # the demo's settings: no TLS redirect, no secret key needed
    for name in CLEARED_ENV:
        os.environ.pop(name, None)
    try:
        has_config = importlib.util.find_spec("config.settings") is not None
    except ModuleNotFoundError:
        has_config = False
    os.environ.setdefault("DJANGO_SETTINGS_MODULE",
                          "config.settings" if has_config else "opsview.settings")
    import django

    django.setup()
    # Refusals are recorded as answers; a 400 need not be logged too (a 500 still is).
    logging.getLogger("django.request").setLevel(logging.ERROR)


def build_hand_firm(client: "Client") -> None:
    """tests/opsview/firm.py's hand-worked firm with its month end, through the webhook."""
    from django.apps import apps

    from ingestion.events import signed_request
    from tests.opsview.firm import close_calendars, firm_events, month_end_events

    source = apps.get_model("ingestion", "Source").objects.create(
        slug="mulesoft", name="MuleSoft", rate_limit_per_minute=0)
    for events in (firm_events(), month_end_events()):
        for start in range(0, len(events), 100):
            body, headers = signed_request(source.secret, events[start:start + 100])
            content_type = headers.pop("content-type")
            response = client.post(f"/ingest/{source.slug}/events", data=body,
                                   content_type=content_type, headers=headers)
            if response.status_code != 202:
                raise SystemExit(f"the webhook answered {response.status_code}: "
                                 f"{response.content[:300]!r}")
        drain()
    close_calendars()


def build_simulated_firm() -> None:
    from django.core.management import call_command

    with open(os.devnull, "w") as quiet:
        call_command("simulate", seed=42, end=SIMULATED_END, process=True, stdout=quiet)


def drain() -> None:
    """What a worker would do with what is still pending (Celery is eager, so usually
    nothing)."""
    from django.core.management import call_command

    with open(os.devnull, "w") as quiet:
        call_command("process_inbox", stdout=quiet)


def answer(response: "HttpResponse") -> dict[str, Any]:
    content_type = response.get("Content-Type", "")
    text = response.content.decode()
    body = json.loads(text) if "json" in content_type else text
    return {"status": response.status_code, "content_type": content_type, "body": body}


def key(firm: str, path: str, params: dict[str, Any]) -> str:
    query = urlencode(sorted(params.items()))
    return f"{firm} {path}" + (f"?{query}" if query else "")


def record_firm(firm: str, database_url: str, out: str) -> None:
    import time_machine

    with time_machine.travel(FROZEN_AT, tick=False):
        setup_django(database_url)
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.test import Client

        started = time.monotonic()
        call_command("migrate", verbosity=0)
        client = Client()
        if firm == "hand":
            build_hand_firm(client)
        else:
            build_simulated_firm()
        log(f"{firm}: firm built in {time.monotonic() - started:.1f} s")
        answers = {key(firm, "/api/v1/kpis/wip", {}) + " (anonymous)":
                   answer(client.get("/api/v1/kpis/wip"))}
        user = get_user_model().objects.create_superuser("snapshot", "snapshot@example.com",
                                                         None)
        client.force_login(user)
        plan = requests_for(firm)
        for done, (path, params) in enumerate(plan, 1):
            answers[key(firm, path, params)] = answer(client.get(path, params))
            if done % 50 == 0 or done == len(plan):
                log(f"{firm}: {done}/{len(plan)} requests")
        schema = answer(client.get("/api/schema/"))
    with open(out, "w") as handle:
        json.dump({"answers": answers, "schema": schema, "requests": len(answers),
                   "seconds": round(time.monotonic() - started, 1)}, handle)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ScratchDatabases:
    """A fresh database per firm: a temporary SQLite file, or a PostgreSQL database created
    beside `server_url`'s and dropped afterwards."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.folder = tempfile.TemporaryDirectory(prefix="opsview-snapshot-")
        self.created: list[str] = []

    def make(self, firm: str) -> str:
        if not self.server_url:
            return f"sqlite:///{self.folder.name}/{firm}.sqlite3"
        import psycopg

        name = f"opsview_snapshot_{os.getpid()}_{firm}"
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
        self.created.append(name)
        return f"{self.server_url.rsplit('/', 1)[0]}/{name}"

    def close(self) -> None:
        if self.created:
            import psycopg

            with psycopg.connect(self.server_url, autocommit=True) as conn:
                for name in self.created:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.folder.cleanup()


def record(args: argparse.Namespace) -> None:
    started = time.monotonic()
    databases = ScratchDatabases(args.database_url)
    recording = {"frozen_at": FROZEN_AT.isoformat(), "answers": {}, "schema": {},
                 "requests": {}}
    try:
        for firm in args.firms:
            log(f"{firm}: building the firm")
            part = os.path.join(databases.folder.name, f"{firm}.json")
            subprocess.run([sys.executable, os.path.abspath(__file__), "_firm", firm,
                            databases.make(firm), part], check=True, cwd=ROOT)
            with open(part) as handle:
                result = json.load(handle)
            recording["answers"].update(result["answers"])
            recording["schema"][firm] = result["schema"]
            recording["requests"][firm] = result["requests"]
            log(f"{firm}: {result['requests']} answers in {result['seconds']} s")
    finally:
        databases.close()
    with open(args.out, "w") as handle:
        json.dump(recording, handle, sort_keys=True, indent=1, ensure_ascii=False)
        handle.write("\n")
    log(f"recorded {sum(recording['requests'].values())} answers in "
        f"{time.monotonic() - started:.0f} s to {args.out}")


# --- Comparing -------------------------------------------------------------------------------
def differences(a: Any, b: Any, path: str = "$") -> Iterator[tuple[str, Any, Any]]:
    """The JSON paths where `a` and `b` differ, outermost first."""
    if isinstance(a, dict) and isinstance(b, dict):
        for name in sorted(set(a) | set(b)):
            if name not in a or name not in b:
                yield f"{path}.{name}", a.get(name, "<absent>"), b.get(name, "<absent>")
            else:
                yield from differences(a[name], b[name], f"{path}.{name}")
    elif isinstance(a, list) and isinstance(b, list):
        for index in range(max(len(a), len(b))):
            if index >= len(a) or index >= len(b):
                yield (f"{path}[{index}]", a[index] if index < len(a) else "<absent>",
                       b[index] if index < len(b) else "<absent>")
            else:
                yield from differences(a[index], b[index], f"{path}[{index}]")
    elif a != b or type(a) is not type(b):
        yield path, a, b


def show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "..."


def compare(args: argparse.Namespace) -> int:
    with open(args.a) as handle:
        before = json.load(handle)
    with open(args.b) as handle:
        after = json.load(handle)
    for firm in sorted(set(before["schema"]) | set(after["schema"])):
        found = list(differences(before["schema"].get(firm), after["schema"].get(firm)))
        if found:
            print(f"warning: the {firm} firm's /api/schema/ differs at {len(found)} places, "
                  f"first {found[0][0]} (the schema may change; answers may not)")
    answers_a, answers_b = before["answers"], after["answers"]
    differing = 0
    for name in sorted(set(answers_a) | set(answers_b)):
        if name not in answers_a or name not in answers_b:
            differing += 1
            print(f"{name}: only in {args.a if name in answers_a else args.b}")
            continue
        found = list(differences(answers_a[name], answers_b[name]))
        if found:
            differing += 1
            print(f"{name}: differs at {len(found)} places")
            for path, value_a, value_b in found[:args.paths]:
                print(f"  {path}: {show(value_a)} != {show(value_b)}")
    if differing:
        print(f"{differing} of {len(set(answers_a) | set(answers_b))} answers differ")
        return 1
    print(f"{len(answers_a)} answers identical")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    recorder = commands.add_parser("record", help="record every answer into OUT (JSON)")
    recorder.add_argument("out")
    recorder.add_argument("--firms", nargs="+", choices=FIRMS, default=list(FIRMS))
    recorder.add_argument("--database-url", default="",
                          help="a PostgreSQL server's database URL; scratch databases "
                               "opsview_snapshot_<pid>_<firm> are made beside it "
                               "(default: temporary SQLite files)")
    comparer = commands.add_parser("compare", help="exit 1 when any answer differs")
    comparer.add_argument("a")
    comparer.add_argument("b")
    comparer.add_argument("--paths", type=int, default=5,
                          help="differing JSON paths shown per answer")
    child = commands.add_parser("_firm")  # one firm, in its own process and database
    child.add_argument("firm", choices=FIRMS)
    child.add_argument("database_url")
    child.add_argument("out")
    args = parser.parse_args()
    if args.command == "record":
        record(args)
    elif args.command == "compare":
        sys.exit(compare(args))
    else:
        record_firm(args.firm, args.database_url, args.out)


if __name__ == "__main__":
    main()
