"""A simulated professional-services firm, as the middleware would report it.

`FirmSimulator(size, seed, end).events()` yields CloudEvents (dicts) in delivery order:
master data, weekly timesheets with approval delays, posting to ERP with a log-normal
latency, expenses, milestones, invoices issued and paid on terms, revenue recognition and
middleware telemetry — plus the faults the field knows: sync failures and retries,
duplicate deliveries, out-of-order delivery, events for projects not yet created, invoices
blocked for every reason, missing rate cards and POs, a stale feed, a reconciliation gap,
events of unknown types and schema-invalid events. The same size, seed and end date always
give the same events, ids included.

`events()` is a generator: timesheets, the bulk of the traffic, are built one week at a time
and released in time order through a small heap, so a large firm's year streams in bounded
memory.
"""
import datetime as dt
import heapq
import itertools
import math
import random
import uuid
from dataclasses import dataclass
from decimal import Decimal

from ingestion.events import make_event

UTC = dt.timezone.utc
ENTITIES = {"US": "USD", "UK": "GBP", "DE": "EUR"}
PRACTICES = ["Data & AI", "Cloud", "Strategy", "Security"]
GRADES = [("Analyst", 45, 120), ("Consultant", 65, 160), ("Manager", 85, 210),
          ("Director", 110, 280)]
CLIENT_NAMES = ["Acme Corp", "Globex", "Initech", "Umbrella Health", "Stark Industrial",
                "Wayne Logistics", "Hooli", "Vandelay Imports", "Soylent Foods", "Tyrell Energy",
                "Cyberdyne", "Wonka Retail", "Oscorp", "Massive Dynamic", "Aperture Labs",
                "Gringotts Bank", "Nakatomi Trading", "Pied Piper", "Dunder Mifflin", "Monarch"]
BLOCK_REASONS = ["missing_po", "missing_project_metadata", "rate_mismatch",
                 "tax_configuration", "customer_mismatch", "other"]


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
    def __init__(self, size="small", seed=42, end=None, source="urn:opsview:simulator",
                 start=None, months=None):
        self.size = SIZES[size] if isinstance(size, str) else size
        if months:
            self.size = Size(clients=self.size.clients, people=self.size.people, months=months)
        self.rng = random.Random(seed)
        self.end = end or dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        if start:
            self.start = dt.datetime.combine(start, dt.time(0), UTC)
            self.size = Size(clients=self.size.clients, people=self.size.people,
                             months=max(1, round((self.end - self.start).days / 30)))
        else:
            self.start = (self.end - dt.timedelta(days=30 * self.size.months)).replace(hour=0)
        self.source = source
        self.clients, self.projects, self.people = [], [], []

    # --- building blocks -------------------------------------------------------------------
    def _id(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def event(self, event_type, data, when, correlation=None, subject=None):
        return make_event(event_type, data, event_id=self._id(), time=when, source=self.source,
                          correlationid=correlation, subject=subject)

    def _business_hour(self, day, earliest=8, latest=18):
        return dt.datetime.combine(day, dt.time(self.rng.randint(earliest, latest - 1),
                                                self.rng.randint(0, 59)), UTC)

    def _lognormal_hours(self, median, sigma):
        return median * math.exp(self.rng.gauss(0, sigma))

    # --- master data -----------------------------------------------------------------------
    def master_data(self):
        rng, events, when = self.rng, [], self.start - dt.timedelta(days=30)
        for i in range(self.size.clients):
            name = CLIENT_NAMES[i % len(CLIENT_NAMES)] + ("" if i < len(CLIENT_NAMES)
                                                          else f" {i // len(CLIENT_NAMES) + 1}")
            client = {"client_id": f"CRM-{1000 + i}", "name": name,
                      "tax_id": f"TX{rng.randint(10**7, 10**8 - 1)}"}
            self.clients.append(client)
            events.append(self.event("client.upserted", client, when))
        # A near-duplicate of the first client, as a second CRM record (duplicate_client).
        twin = {**self.clients[0], "client_id": "CRM-0999", "name": "ACME Corporation"}
        events.append(self.event("client.upserted", twin, when))

        for n in range(max(4, self.size.people // 2)):
            client = self.clients[n % len(self.clients)]
            entity = rng.choice(list(ENTITIES))
            method = rng.choices(["time_and_materials", "fixed_fee", "milestone",
                                  "non_billable"], weights=[60, 15, 20, 5])[0]
            topic = rng.choice(["Data platform", "Cloud migration", "Operating model",
                                "Zero trust", "ERP rollout", "Analytics"])
            project = {
                "project_id": f"PRJ-{2000 + n}", "client_id": client["client_id"],
                "name": f"{client['name']} — {topic}",
                "practice": PRACTICES[n % len(PRACTICES)], "legal_entity": entity,
                "currency": ENTITIES[entity], "billing_method": method, "status": "active",
                "po_required": rng.random() < 0.3,
                "contract_value": f"{rng.randint(50, 900) * 1000}.00",
                "budget_hours": f"{rng.randint(200, 4000)}.00",
            }
            if n == 1:  # set-up faults every firm has: a project without a rate card …
                project["billing_method"] = method = "time_and_materials"
            elif method != "non_billable" and rng.random() < 0.9:
                project["rate_card_id"] = f"RC-{entity}-{rng.randint(1, 9)}"
            if n == 2:  # … and one that needs a PO nobody entered
                project["po_required"] = True
            elif project["po_required"] and rng.random() < 0.75:
                project["po_number"] = f"PO-{rng.randint(10000, 99999)}"
            self.projects.append(project)
            events.append(self.event("project.upserted", project, when,
                                     correlation=project["project_id"]))

        for n in range(self.size.people):
            grade, cost, bill = rng.choices(GRADES, weights=[35, 35, 20, 10])[0]
            person = {"person_id": f"EMP-{3000 + n}", "name": f"{grade} {n + 1}",
                      "practice": PRACTICES[n % len(PRACTICES)],
                      "cost_rate": f"{cost + rng.randint(-5, 5)}.00",
                      "bill_rate": f"{bill + rng.randint(-10, 10)}.00",
                      "capacity_hours_per_week": "32" if rng.random() < 0.1 else "40",
                      "active": True}
            candidates = ([p for p in self.projects if p["practice"] == person["practice"]]
                          or self.projects)
            person["projects"] = rng.sample(candidates, k=min(2, len(candidates)))
            self.people.append(person)
            public = {k: v for k, v in person.items() if k != "projects"}
            events.append(self.event("person.upserted", public, when))
            for project in person["projects"]:
                events.append(self.event("assignment.upserted", {
                    "assignment_id": f"ASG-{person['person_id']}-{project['project_id']}",
                    "project_id": project["project_id"], "person_id": person["person_id"],
                    "start_date": self.start.date().isoformat(), "end_date": None,
                    "hours_per_week": "20"}, when))
        return events

    # --- time ------------------------------------------------------------------------------
    def timesheet_weeks(self):
        """Yields (week's first event time, the week's events), one week at a time: every
        event of a week's timesheets happens at or after Friday 17:00 of that week."""
        rng = self.rng
        monday = self.start.date() - dt.timedelta(days=self.start.weekday())
        entry_no = 0
        while monday <= self.end.date():
            friday = monday + dt.timedelta(days=4)
            events = []
            for person in self.people:
                for offset in range(5):
                    day = monday + dt.timedelta(days=offset)
                    if day > self.end.date():
                        break
                    for project in person["projects"]:
                        hours = Decimal(rng.choice([2, 3, 3.5, 4, 4, 4.5, 5])).quantize(
                            Decimal("0.5"))
                        entry_no += 1
                        events += self._entry_lifecycle(f"TE-{entry_no:07d}", person, project,
                                                        day, hours, friday)
            yield _stamp(dt.datetime.combine(friday, dt.time(17), UTC)), events
            monday += dt.timedelta(days=7)

    def estimated_deliveries(self):
        """Roughly how many events `events()` yields, for a progress bar."""
        weekdays = sum(1 for d in range((self.end - self.start).days + 1)
                       if (self.start + dt.timedelta(days=d)).weekday() < 5)
        return int(self.size.people * 2 * weekdays * 4.6) + self.size.people * 4

    def _entry_lifecycle(self, entry_id, person, project, day, hours, friday):
        rng = self.rng
        data = {"time_entry_id": entry_id, "project_id": project["project_id"],
                "person_id": person["person_id"], "work_date": day.isoformat(),
                "hours": str(hours), "billable": project["billing_method"] != "non_billable"}
        events = []

        def emit(stage, when, **extra):
            if when <= self.end:
                events.append(self.event(f"time_entry.{stage}", {**data, **extra}, when,
                                         correlation=entry_id, subject=f"time_entry/{entry_id}"))
            return when

        submitted = emit("submitted", dt.datetime.combine(friday, dt.time(17, 0), UTC)
                         + dt.timedelta(minutes=rng.randint(0, 180)))
        approved = submitted + dt.timedelta(hours=min(rng.expovariate(1 / 30), 160))
        if rng.random() < 0.03:
            rejected = emit("rejected", approved)
            approved = rejected + dt.timedelta(hours=rng.randint(4, 48))
        emit("approved", approved)
        if rng.random() < 0.04:
            return events  # never posted: approved time stuck before ERP
        posted = approved + dt.timedelta(hours=self._lognormal_hours(5, 1.3))
        document = f"ERP-{rng.randint(10**6, 10**7 - 1)}"
        if emit("posted", posted, erp_document_id=document) <= self.end:
            events.append(self._sync("psa-to-erp", "psa", "erp", "time_entry", entry_id, posted,
                                     correlation=entry_id))
        if rng.random() < 0.01:
            emit("reversed", posted + dt.timedelta(days=rng.randint(1, 10)))
            return events
        if data["billable"] and project["billing_method"] == "time_and_materials":
            month_end = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
            invoiced = dt.datetime.combine(month_end + dt.timedelta(days=6), dt.time(10), UTC)
            if invoiced > posted:
                emit("invoiced", invoiced, invoice_id=f"INV-{project['project_id']}-"
                                                      f"{day.strftime('%Y%m')}")
        return events

    def _sync(self, flow, source_system, target_system, object_type, object_id, when,
              correlation=None):
        rng = self.rng
        data = {"flow": flow, "source_system": source_system, "target_system": target_system,
                "object_type": object_type, "object_id": object_id,
                "latency_ms": int(self._lognormal_hours(900, 0.6)), "attempt": 1}
        if rng.random() < 0.01:
            failure = {**data, "error_code": rng.choice(["ERP-409", "ERP-500", "TIMEOUT"]),
                       "error_message": "ERP rejected the document: accounting period closed",
                       "retryable": True}
            return self.event("sync.failed", failure, when, correlation=correlation)
        return self.event("sync.succeeded", data, when, correlation=correlation)

    # --- expenses, milestones, invoices, revenue ---------------------------------------------
    def expenses(self):
        rng, events, n = self.rng, [], 0
        for month in range(self.size.months):
            for person in self.people[: max(4, len(self.people) // 3)]:
                project = person["projects"][0]
                incurred = self.start.date() + dt.timedelta(days=30 * month + rng.randint(0, 29))
                if incurred > self.end.date():
                    continue
                n += 1
                data = {"expense_id": f"EXP-{n:06d}", "project_id": project["project_id"],
                        "person_id": person["person_id"], "incurred_on": incurred.isoformat(),
                        "amount": f"{rng.randint(40, 900)}.{rng.randint(0, 99):02d}",
                        "currency": project["currency"], "billable": rng.random() < 0.7}
                when = self._business_hour(incurred + dt.timedelta(days=rng.randint(1, 6)))
                for stage, delay in (("approved", 0), ("posted", 2), ("invoiced", 25)):
                    stamp = when + dt.timedelta(days=delay)
                    if stamp <= self.end and (stage != "invoiced" or data["billable"]):
                        events.append(self.event(f"expense.{stage}", data, stamp))
        return events

    def milestones(self):
        rng, events = self.rng, []
        for project in self.projects:
            if project["billing_method"] not in ("milestone", "fixed_fee"):
                continue
            for k in range(3):
                completed_on = self.start.date() + dt.timedelta(
                    days=int((k + 1) * 30 * self.size.months / 3.5) + rng.randint(-5, 5))
                if completed_on > self.end.date():
                    continue
                data = {"milestone_id": f"MS-{project['project_id']}-{k + 1}",
                        "project_id": project["project_id"], "name": f"Milestone {k + 1}",
                        "amount": f"{rng.randint(10, 80) * 1000}.00",
                        "completed_on": completed_on.isoformat()}
                completed = self._business_hour(completed_on)
                events.append(self.event("milestone.completed", data, completed))
                invoiced = completed + dt.timedelta(days=rng.randint(1, 12))
                if invoiced <= self.end and rng.random() < 0.7:
                    events.append(self.event("milestone.invoiced", {
                        **data, "invoice_id": f"INV-{data['milestone_id']}"}, invoiced))
        return events

    def invoices(self):
        rng, events, blocked_reasons = self.rng, [], list(BLOCK_REASONS)
        month = self.start.date().replace(day=1)
        while month < self.end.date().replace(day=1):
            next_month = (month + dt.timedelta(days=32)).replace(day=1)
            for project in self.projects:
                if project["billing_method"] != "time_and_materials":
                    continue
                invoice_id = f"INV-{project['project_id']}-{month.strftime('%Y%m')}"
                data = {"invoice_id": invoice_id, "client_id": project["client_id"],
                        "project_id": project["project_id"], "currency": project["currency"],
                        "amount": f"{rng.randint(8, 120) * 500}.00"}
                drafted = dt.datetime.combine(next_month + dt.timedelta(days=2), dt.time(9), UTC)
                if drafted > self.end:
                    continue
                events.append(self.event("invoice.drafted", data, drafted,
                                         correlation=invoice_id))
                if blocked_reasons or rng.random() < 0.05:  # every reason appears once
                    reason = blocked_reasons.pop() if blocked_reasons else "other"
                    events.append(self.event("invoice.blocked", {
                        **data, "blocked_reason": reason,
                        "detail": f"ERP validation: {reason.replace('_', ' ')}"},
                        drafted + dt.timedelta(hours=2), correlation=invoice_id))
                    if rng.random() < 0.5:
                        continue  # still blocked
                issued = drafted + dt.timedelta(days=rng.randint(1, 4))
                if issued > self.end:
                    continue
                terms = {"issued_on": issued.date().isoformat(),
                         "due_on": (issued.date() + dt.timedelta(days=30)).isoformat()}
                if rng.random() < 0.03:
                    events.append(self.event("invoice.voided", {**data, **terms},
                                             issued + dt.timedelta(days=1)))
                    continue
                events.append(self.event("invoice.issued", {**data, **terms}, issued,
                                         correlation=invoice_id))
                events.append(self._sync("erp-to-crm", "erp", "crm", "invoice", invoice_id,
                                         issued + dt.timedelta(minutes=5), invoice_id))
                paid = issued + dt.timedelta(days=int(rng.gauss(34, 12)))
                if paid <= self.end and rng.random() < 0.85:
                    events.append(self.event("invoice.paid", {
                        **data, **terms, "paid_on": paid.date().isoformat()}, paid,
                        correlation=invoice_id))
            for project in self.projects:
                if project["billing_method"] != "non_billable":
                    events.append(self.event("revenue.recognized", {
                        "project_id": project["project_id"], "period": month.strftime("%Y-%m"),
                        "amount": f"{rng.randint(5, 60) * 1000}.00",
                        "currency": project["currency"]},
                        dt.datetime.combine(next_month + dt.timedelta(days=5), dt.time(12), UTC)))
            month = next_month
        return [e for e in events if e["time"] <= _stamp(self.end)]

    # --- telemetry and faults --------------------------------------------------------------
    def telemetry(self):
        rng, events = self.rng, []
        for project in self.projects[:10]:
            when = self.start + dt.timedelta(hours=rng.randint(1, 200))
            events.append(self._sync("crm-to-psa", "crm", "psa", "project",
                                     project["project_id"], when, project["project_id"]))
        # A feed that went silent three days ago: the expense flow.
        silent_from = self.end - dt.timedelta(days=3)
        stamp = self.start
        while stamp < silent_from:
            events.append(self._sync("expenses-to-erp", "expenses", "erp", "expense",
                                     f"EXP-BATCH-{stamp:%Y%m%d}", stamp))
            stamp += dt.timedelta(hours=12)
        # Retries: a failure that later succeeds, and one that never does.
        for k, recovers in enumerate([True, True, False, False]):
            first = self.end - dt.timedelta(hours=30 - k)
            object_id = f"TE-RETRY-{k}"
            data = {"flow": "psa-to-erp", "source_system": "psa", "target_system": "erp",
                    "object_type": "time_entry", "object_id": object_id, "attempt": 1,
                    "latency_ms": 2400, "error_code": "ERP-503",
                    "error_message": "ERP unavailable", "retryable": True}
            events.append(self.event("sync.failed", data, first, correlation=object_id))
            if recovers:
                events.append(self.event("sync.succeeded", {
                    **{k2: v for k2, v in data.items() if k2 not in ("error_code",
                                                                      "error_message",
                                                                      "retryable")},
                    "attempt": 2}, first + dt.timedelta(minutes=20), correlation=object_id))
        # Monthly reconciliation per flow; one month of time entries did not all arrive.
        month = self.start.date().replace(day=1)
        gap_month = (self.end.date().replace(day=1) - dt.timedelta(days=1)).replace(day=1)
        while month < self.end.date().replace(day=1):
            last = (month + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
            for flow, object_type in (("psa-to-erp", "time_entry"), ("erp-to-crm", "invoice")):
                count = rng.randint(800, 5000)
                missing = 7 if (flow == "psa-to-erp" and month == gap_month) else 0
                events.append(self.event("reconciliation.reported", {
                    "flow": flow, "object_type": object_type,
                    "period_start": month.isoformat(), "period_end": last.isoformat(),
                    "source_count": count, "target_count": count - missing},
                    dt.datetime.combine(last + dt.timedelta(days=2), dt.time(6), UTC)))
            month = last + dt.timedelta(days=1)
        return events

    def faults(self):
        """Events for a project not yet created, unknown types and schema-invalid events."""
        late = self.end - dt.timedelta(days=2)
        events = [
            self.event("time_entry.approved", {
                "time_entry_id": "TE-ORPHAN-1", "project_id": "PRJ-NEW-1",
                "person_id": self.people[0]["person_id"],
                "work_date": (late.date() - dt.timedelta(days=1)).isoformat(), "hours": "6.0",
                "billable": True}, late, correlation="TE-ORPHAN-1"),
            self.event("timesheet.locked", {"week": late.date().isoformat()}, late),
            self.event("time_entry.approved", {
                "time_entry_id": "TE-BAD-1", "project_id": self.projects[0]["project_id"],
                "person_id": self.people[0]["person_id"], "work_date": "2026-02-30",
                "hours": "eight", "billable": "yes"}, late),
            self.event("invoice.blocked", {
                "invoice_id": "INV-BAD-1", "client_id": self.clients[0]["client_id"],
                "amount": "1200.00", "currency": "usd", "blocked_reason": "missing_po"}, late),
        ]
        return events

    def events(self):
        """Every event, lazily, in a realistic delivery order: by time, shuffled within
        windows of 40 (out-of-order delivery), about 2 % delivered twice."""
        pending, sequence = [], itertools.count()

        def hold(events):
            for event in events:
                heapq.heappush(pending, (event["time"], next(sequence), event))

        def release(before=None):
            while pending and (before is None or pending[0][0] < before):
                yield heapq.heappop(pending)[2]

        hold(self.master_data())
        hold(self.expenses() + self.milestones() + self.invoices() + self.telemetry()
             + self.faults())

        def in_time_order():
            for week_starts, week_events in self.timesheet_weeks():
                yield from release(week_starts)
                hold(week_events)
            yield from release()

        yield from self._delivered(in_time_order())

    def _delivered(self, ordered, window_size=40):
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

    def live_events(self, now, count=20):
        """A handful of current events for a live feed: new time approved, syncs, a failure."""
        rng, events = self.rng, []
        for _ in range(count):
            person = rng.choice(self.people)
            project = rng.choice(person["projects"])
            entry_id = f"TE-LIVE-{self._id()[:8]}"
            data = {"time_entry_id": entry_id, "project_id": project["project_id"],
                    "person_id": person["person_id"], "work_date": now.date().isoformat(),
                    "hours": "2.0", "billable": project["billing_method"] != "non_billable"}
            events.append(self.event("time_entry.approved", data, now, correlation=entry_id))
            events.append(self._sync("psa-to-erp", "psa", "erp", "time_entry", entry_id,
                                     now, correlation=entry_id))
        return events


def _stamp(moment):
    """A datetime as the RFC 3339 string events carry, so heap keys compare like event times."""
    return moment.isoformat().replace("+00:00", "Z")
