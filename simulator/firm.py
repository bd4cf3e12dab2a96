"""A simulated professional-services firm, as its middleware would report it (SPEC v2).

`FirmSimulator(size, seed, end).events()` yields CloudEvents (dicts) in delivery order. The
firm keeps its books the way a real one does: weekly timesheets approved and posted to ERP;
time-and-materials work and billable expenses billed each month on one invoice per project
for what was approved and posted by the billing run; fixed-fee projects recognizing revenue
monthly and invoicing on schedule; milestone projects billing their milestones; invoices
drafted, issued and paid on terms; sync failures that recover; monthly reconciliation
reports that agree with what was sent. Beside that it carries the problems of a real firm,
some of them old (an invoice blocked for weeks, a project whose time stopped reaching ERP
two months ago, a milestone done and never billed, a sync that never recovered, billing
set-up left incomplete), and the faults of a real feed, each named in `planted` and in
docs/simulator.md. The same size, seed and end date always give the same events, ids
included.

`events()` is a generator: timesheets, the bulk of the traffic, are built one week at a time;
each month's billing runs and reconciliation reports are built once the weeks they bill or
count exist; everything is released in time order through a heap, so a large firm's year
streams in bounded memory.
"""
import datetime as dt
import heapq
import itertools
import math
import random
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ingestion.events import make_event

from .billing import Billing
from .dates import UTC, Event, at, last_day, months, stamp, working_day
from .faults import Faults
from .month_end import MonthEnd
from .work import Work

ENTITIES = {"US": "USD", "UK": "GBP", "DE": "EUR"}
PRACTICES = ["Data & AI", "Cloud", "Strategy", "Security"]
GRADES = [("Analyst", 45, 120), ("Consultant", 65, 160), ("Manager", 85, 210),
          ("Director", 110, 280)]
CLIENT_NAMES = ["Acme Corp", "Globex", "Initech", "Umbrella Health", "Stark Industrial",
                "Wayne Logistics", "Hooli", "Vandelay Imports", "Soylent Foods", "Tyrell Energy",
                "Cyberdyne", "Wonka Retail", "Oscorp", "Massive Dynamic", "Aperture Labs",
                "Gringotts Bank", "Nakatomi Trading", "Pied Piper", "Dunder Mifflin", "Monarch"]
TOPICS = ["Data platform", "Cloud migration", "Operating model", "Zero trust", "ERP rollout",
          "Analytics"]
METHODS = ["time_and_materials", "fixed_fee", "milestone", "non_billable"]
# The first projects play fixed parts, so every size and seed has each planted problem.
PARTS = [("time_and_materials", "voided_invoice"), ("time_and_materials", "no_rate_card"),
         ("time_and_materials", "no_po"), ("fixed_fee", None), ("milestone", "late_milestone"),
         ("time_and_materials", "unposted_project"), ("non_billable", None),
         ("fixed_fee", None), ("time_and_materials", "unknown_invoice"), ("fixed_fee", None)]
# Fixed-fee billing: ahead of recognition, behind it, or by milestones.
SCHEDULES = ["quarterly_arrears", "milestones", "monthly_advance", "monthly_arrears"]
SYSTEMS = {"psa-to-erp": ("psa", "erp"), "erp-to-crm": ("erp", "crm"),
           "crm-to-psa": ("crm", "psa"), "expenses-to-erp": ("expenses", "erp")}


@dataclass(frozen=True)
class Size:
    clients: int
    people: int
    months: int


SIZES = {
    "small": Size(clients=8, people=24, months=3),
    "medium": Size(clients=40, people=250, months=6),
    "large": Size(clients=300, people=2000, months=12),
}


class FirmSimulator:
    def __init__(self, size: str | Size = "small", seed: int = 42, end: dt.datetime | None = None,
                 source: str = "urn:opsview:simulator", start: dt.date | None = None,
                 months: int | None = None) -> None:
        self.size = SIZES[size] if isinstance(size, str) else size
        if months:
            self.size = Size(clients=self.size.clients, people=self.size.people, months=months)
        self.rng = random.Random(seed)
        self.seed = seed
        self.end = end or dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        if start:
            self.start = dt.datetime.combine(start, dt.time(0), UTC)
            self.size = Size(clients=self.size.clients, people=self.size.people,
                             months=max(1, round((self.end - self.start).days / 30)))
        else:
            self.start = (self.end - dt.timedelta(days=30 * self.size.months)).replace(hour=0)
        self.source = source
        # The expense tool reaches the middleware through its own relay: its own source.
        self.expense_source = f"{source}/expenses"
        # The expense feed to ERP goes silent three days before the end (a stale feed).
        self.expense_feed_stops = self.end - dt.timedelta(days=3)
        self.clients: list[dict[str, Any]] = []
        self.projects: list[dict[str, Any]] = []
        self.people: list[dict[str, Any]] = []
        self.planted: defaultdict[str, list[str]] = defaultdict(list)  # problem → its ids
        self.work, self.billing, self.faults = Work(self), Billing(self), Faults(self)

    # --- building blocks -------------------------------------------------------------------
    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def event(self, event_type: str, data: dict[str, Any], when: dt.datetime,
              correlation: str | None = None, subject: str | None = None,
              source: str | None = None) -> Event:
        """An event of the firm, with a seeded id."""
        return make_event(event_type, data, event_id=self._id(), time=when,
                          source=source or self.source, correlationid=correlation,
                          subject=subject)

    def business_hour(self, day: dt.date, earliest: int = 8, latest: int = 18) -> dt.datetime:
        """A random minute of the working day on or after `day`."""
        return at(working_day(day), self.rng.randint(earliest, latest - 1), self.rng.randint(0, 59))

    def lognormal_hours(self, median: float, sigma: float) -> float:
        """A duration in hours, log-normally spread around the median."""
        return median * math.exp(self.rng.gauss(0, sigma))

    def sync(self, flow: str, object_type: str, object_id: str, when: dt.datetime, *,
             attempt: int = 1, error: tuple[str, str] | None = None) -> Event:
        """One `sync.succeeded`, or `sync.failed` with `error` = (code, message)."""
        source_system, target_system = SYSTEMS[flow]
        data = {"flow": flow, "source_system": source_system, "target_system": target_system,
                "object_type": object_type, "object_id": object_id,
                "latency_ms": int(self.lognormal_hours(900, 0.6)), "attempt": attempt}
        if error:
            data.update(error_code=error[0], error_message=error[1], retryable=True)
        return self.event("sync.failed" if error else "sync.succeeded", data, when,
                          correlation=object_id)

    def plant(self, name: str, *ids: str) -> None:
        """Records where a planted problem or fault shows, for the docs and the tests."""
        self.planted[name].extend(ids)

    # --- master data -----------------------------------------------------------------------
    def master_data(self) -> list[Event]:
        """The clients, projects and people, upserted a month before the span."""
        when = self.start - dt.timedelta(days=30)
        return self._clients(when) + self._projects(when) + self._people(when)

    def _clients(self, when: dt.datetime) -> list[Event]:
        rng, events = self.rng, []
        tax_numbers = rng.sample(range(10**7, 10**8), self.size.clients + 1)
        for i in range(self.size.clients):
            name = CLIENT_NAMES[i % len(CLIENT_NAMES)] + ("" if i < len(CLIENT_NAMES)
                                                          else f" {i // len(CLIENT_NAMES) + 1}")
            client = {"client_id": f"CRM-{1000 + i}", "name": name,
                      "tax_id": f"TX{tax_numbers[i]}"}
            self.clients.append(client)
            events.append(self.event("client.upserted", client, when))
        self.spare_tax_id = f"TX{tax_numbers[-1]}"  # a second CRM record's own tax id
        return events

    def _projects(self, when: dt.datetime) -> list[Event]:
        rng, events, fixed_fees = self.rng, [], 0
        for n in range(max(len(PARTS), self.size.people // 2)):
            client = self.clients[n % len(self.clients)]
            entity = rng.choice(list(ENTITIES))
            method, part = (PARTS[n] if n < len(PARTS)
                            else (rng.choices(METHODS, weights=[60, 15, 20, 5])[0], None))
            project = {
                "project_id": f"PRJ-{2000 + n}", "client_id": client["client_id"],
                "name": f"{client['name']} — {rng.choice(TOPICS)}",
                "practice": PRACTICES[n % len(PRACTICES)], "legal_entity": entity,
                "currency": ENTITIES[entity], "billing_method": method, "status": "active",
                "po_required": part == "no_po" or rng.random() < 0.3,
                "budget_hours": f"{rng.randint(200, 4000)}.00",
                "_part": part, "_discount": None, "_bills": False,
            }
            if part in ("no_rate_card", "no_po"):
                self.plant("missing_billing_setup", project["project_id"])
            # Rate cards price time and materials; other methods may have one.
            if ((method == "time_and_materials" and part != "no_rate_card")
                    or (method in ("fixed_fee", "milestone") and rng.random() < 0.5)):
                project["rate_card_id"] = f"RC-{entity}-{rng.randint(1, 9)}"
            if project["po_required"] and part != "no_po":
                project["po_number"] = f"PO-{rng.randint(10000, 99999)}"
            if method == "time_and_materials":
                project["contract_value"] = f"{rng.randint(50, 900) * 1000}.00"  # not to exceed
                if rng.random() < 0.3:  # negotiated rates: the entries carry their bill rate
                    project["_discount"] = Decimal(rng.choice(["0.85", "0.90", "0.95"]))
            elif method == "fixed_fee":
                schedule = SCHEDULES[fixed_fees % len(SCHEDULES)]
                fixed_fees += 1
                self.billing.plan_fixed_fee(project, schedule)
            elif method == "milestone":
                self.billing.plan_milestones(project)
            # A project bills monthly unless nothing on it is billable or it cannot be priced.
            project["_bills"] = method != "non_billable" and part != "no_rate_card"
            self.projects.append(project)
            events.append(self.event("project.upserted", _public(project), when,
                                     correlation=project["project_id"]))
            events.append(self.sync("crm-to-psa", "project", project["project_id"],
                                    when + dt.timedelta(seconds=rng.randint(5, 90))))
        return events

    def _people(self, when: dt.datetime) -> list[Event]:
        rng, events = self.rng, []
        for n in range(self.size.people):
            grade, cost, bill = rng.choices(GRADES, weights=[35, 35, 20, 10])[0]
            person: dict[str, Any] = {"person_id": f"EMP-{3000 + n}", "name": f"{grade} {n + 1}",
                      "practice": PRACTICES[n % len(PRACTICES)],
                      "cost_rate": f"{cost + rng.randint(-5, 5)}.00",
                      "bill_rate": f"{bill + rng.randint(-10, 10)}.00",
                      "capacity_hours_per_week": "32" if rng.random() < 0.1 else "40",
                      "active": True}
            candidates = ([p for p in self.projects if p["practice"] == person["practice"]]
                          or self.projects)
            # Round-robin first projects staff every project; the second is anyone's guess.
            first = candidates[(n // len(PRACTICES)) % len(candidates)]
            others = [p for p in candidates if p is not first]
            person["_projects"] = [first] + ([rng.choice(others)] if others else [])
            person["_bill_rate"] = Decimal(person["bill_rate"])
            self.people.append(person)
            events.append(self.event("person.upserted", _public(person), when))
            for project in person["_projects"]:
                events.append(self.event("assignment.upserted", {
                    "assignment_id": f"ASG-{person['person_id']}-{project['project_id']}",
                    "project_id": project["project_id"], "person_id": person["person_id"],
                    "start_date": self.start.date().isoformat(), "end_date": None,
                    "hours_per_week": "20"}, when))
        return events

    # --- telemetry ---------------------------------------------------------------------------
    def expense_batches(self) -> list[Event]:
        """The expense feed posts to ERP in two batch runs a day, until it goes silent."""
        events, run = [], at(self.start.date(), 8)
        while run < min(self.expense_feed_stops, self.end):
            events.append(self.sync("expenses-to-erp", "expense_batch",
                                    f"EXP-BATCH-{run:%Y%m%d-%H}", run))
            run += dt.timedelta(hours=12)
        return events

    def reconciliation_reports(self) -> list[tuple[dt.datetime, dt.date]]:
        """(when, month) of each monthly report: 17 days after the month, once every entry of
        the month has settled (approved, posted or reversed), if that is within the span."""
        reports = [(at(last_day(first) + dt.timedelta(days=17), 6), first)
                   for first in months(self.start.date(), self.end.date())]
        return [(made, first) for made, first in reports if made <= self.end]

    def _reports_until(self, schedule: list[tuple[dt.datetime, dt.date]], moment: str | None,
                       ) -> list[Event]:
        events = []
        while schedule and (moment is None or stamp(schedule[0][0]) < moment):
            made, first = schedule.pop(0)
            period = {"period_start": first.isoformat(),
                      "period_end": last_day(first).isoformat()}
            approved, posted = self.work.counts[first]
            if not schedule:  # the last report: ERP lists seven postings fewer than were sent
                posted = max(0, posted - 7)
                self.plant("reconciliation_gap", "psa-to-erp", first.strftime("%Y-%m"))
            issued = self.billing.issued[first]
            events.append(self.event("reconciliation.reported", {
                "flow": "psa-to-erp", "object_type": "time_entry", **period,
                "source_count": approved, "target_count": posted}, made))
            events.append(self.event("reconciliation.reported", {
                "flow": "erp-to-crm", "object_type": "invoice", **period,
                "source_count": issued, "target_count": issued}, made))
        return events

    # --- delivery ----------------------------------------------------------------------------
    def events(self) -> Iterator[Event]:
        """Every event, lazily, in a realistic delivery order: by time, shuffled within
        windows of 40 (out-of-order delivery), about 2 % delivered twice."""
        pending: list[tuple[str, int, Event]] = []
        sequence = itertools.count()

        def hold(events: Iterable[Event], late_by: dt.datetime | None = None) -> None:
            for event in events:
                key = event["time"] if late_by is None else stamp(late_by)
                heapq.heappush(pending, (key, next(sequence), event))

        def release(before: str | None = None) -> Iterator[Event]:
            while pending and (before is None or pending[0][0] < before):
                yield heapq.heappop(pending)[2]

        master = self.master_data()
        self.billing.schedule_runs()
        month_end = MonthEnd(self, self.seed)
        # Before the stream: the late timesheet is in its month's counts and the next run.
        late = month_end.late_timesheet()
        expenses = self.work.expenses()
        self.faults.share_an_id(master, expenses)
        hold(master)
        hold(expenses)
        hold(self.expense_batches())
        hold(self.billing.fixed_fees_and_milestones())
        hold(self.faults.events())
        repeat_at, repeat = self.faults.conflicting_repeat(expenses)
        if repeat:
            hold([repeat], late_by=repeat_at)
        reports = self.reconciliation_reports()

        def in_time_order() -> Iterator[Event]:
            for week_starts, week_events in self.work.weeks():
                # Runs and reports due before this week's first event bill and count weeks
                # that are all built by now.
                hold(self.billing.runs_until(week_starts))
                hold(self._reports_until(reports, week_starts))
                yield from release(week_starts)
                hold(week_events)
            hold(self.billing.runs_until(None))
            hold(self._reports_until(reports, None))
            yield from release()

        yield from self._delivered(in_time_order())
        # The month-end events come last, in time order: the stream above stays what it is
        # for a seed, and OpsView does not depend on the order anyway.
        yield from sorted(late + month_end.expense_reports(expenses) + month_end.fx_rates(),
                          key=lambda event: (event["time"], event["id"]))

    def _delivered(self, ordered: Iterable[Event], window_size: int = 40) -> Iterator[Event]:
        rng, window = self.rng, []
        for event in itertools.chain(ordered, [None]):
            if event is not None:
                window.append(event)
                if len(window) < window_size:
                    continue
            rng.shuffle(window)
            for delivered in window:
                yield delivered
                if rng.random() < 0.02:
                    yield delivered  # a duplicate delivery
            window = []

    def estimated_deliveries(self) -> int:
        """Roughly how many events `events()` yields, for a progress bar."""
        weekdays = sum(1 for d in range((self.end - self.start).days + 1)
                       if (self.start + dt.timedelta(days=d)).weekday() < 5)
        return int(self.size.people * 2 * weekdays * 4.7) + self.size.people * 6

    def live_events(self, now: dt.datetime, count: int = 20) -> list[Event]:
        """Current events for a live feed: `count` time entries approved in the last hour and
        a half and posted now, each with its sync telemetry (1 % after a failed attempt)."""
        rng, events = self.rng, []
        for _ in range(count):
            person = rng.choice(self.people)
            project = rng.choice(person["_projects"])
            entry_id = f"TE-LIVE-{self._id()[:8]}"
            approved = now - dt.timedelta(minutes=rng.randint(5, 90))
            data = {"time_entry_id": entry_id, "project_id": project["project_id"],
                    "person_id": person["person_id"], "work_date": now.date().isoformat(),
                    "hours": "2.0", "billable": project["billing_method"] != "non_billable"}
            syncs = [self.sync("psa-to-erp", "time_entry", entry_id, now)]
            if rng.random() < 0.01:
                syncs = [self.sync("psa-to-erp", "time_entry", entry_id,
                                   approved + (now - approved) / 2,
                                   error=("TIMEOUT", "ERP did not answer in 30 s")),
                         self.sync("psa-to-erp", "time_entry", entry_id, now, attempt=2)]
            # Each entry's group leads with its posting, stamped now: bench/load.py re-stamps
            # a batch by replacing the first event's time with the time of sending.
            events += [self.event("time_entry.posted", {
                          **data, "erp_document_id": f"ERP-{rng.randint(10**6, 10**7 - 1)}"},
                          now, correlation=entry_id, subject=f"time_entry/{entry_id}"),
                       *syncs,
                       self.event("time_entry.approved", data, approved, correlation=entry_id,
                                  subject=f"time_entry/{entry_id}")]
        return events


def _public(record: dict[str, Any]) -> dict[str, Any]:
    """A record as its upsert event carries it, without the simulator's own planning."""
    return {key: value for key, value in record.items() if not key.startswith("_")}
