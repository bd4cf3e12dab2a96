"""The firm's work: weekly timesheets and expenses, each through its lifecycle.

What is approved and posted goes to the billing ledger (time only on time-and-materials
projects; billable expenses on every billable project); every time entry is counted by work
month as the middleware's reconciliation counts it: approved or later, and posted.
"""
import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .billing import Item
from .dates import Event, at, last_day, months, stamp

if TYPE_CHECKING:  # the firm imports this module
    from .firm import FirmSimulator

HOURS = [Decimal(h) for h in ("2", "3", "3.5", "4", "4", "4.5", "5")]
SYNC_ERRORS = [("ERP-409", "ERP rejected the document: accounting period closed"),
               ("ERP-500", "ERP answered 500 Internal Server Error"),
               ("TIMEOUT", "ERP did not answer in 30 s")]


class Work:
    def __init__(self, firm: "FirmSimulator") -> None:
        self.firm = firm
        # work month → [approved or later, posted]
        self.counts: defaultdict[dt.date, list[int]] = defaultdict(lambda: [0, 0])
        self.entry_no = 0
        end = firm.end
        # Approved time on one project stops reaching ERP two months before the end.
        self.unposted_since = max(firm.start, end - dt.timedelta(days=60))
        # Postings that fail and never recover: the first entries approved after these.
        self.failures_from = [end - dt.timedelta(days=10), end - dt.timedelta(days=6),
                              end - dt.timedelta(days=3)]
        self.billed_unposted: str | None = None

    # --- time ------------------------------------------------------------------------------
    def weeks(self) -> Iterator[tuple[str, list[Event]]]:
        """Yields (the week's first event time, the week's events), one week at a time:
        every event of a week's timesheets happens at or after Friday 17:00 of that week."""
        firm = self.firm
        monday = firm.start.date() - dt.timedelta(days=firm.start.weekday())
        while monday <= firm.end.date():
            friday = monday + dt.timedelta(days=4)
            events = []
            for person in firm.people:
                for offset in range(5):
                    day = monday + dt.timedelta(days=offset)
                    if day > firm.end.date():
                        break
                    for project in person["_projects"]:
                        self.entry_no += 1
                        events += self._entry(f"TE-{self.entry_no:07d}", person, project, day,
                                              friday)
            yield stamp(at(friday, 17)), events
            monday += dt.timedelta(days=7)

    def _entry(self, entry_id: str, person: dict[str, Any], project: dict[str, Any],
               day: dt.date, friday: dt.date) -> list[Event]:
        firm, rng, end = self.firm, self.firm.rng, self.firm.end
        method = project["billing_method"]
        # Internal time on a client project is booked non-billable now and then.
        billable = method != "non_billable" and not (method == "time_and_materials"
                                                     and rng.random() < 0.04)
        data = {"time_entry_id": entry_id, "project_id": project["project_id"],
                "person_id": person["person_id"], "work_date": day.isoformat(),
                "hours": str(rng.choice(HOURS)), "billable": billable}
        rate = person["_bill_rate"]
        if project["_discount"]:
            rate = (rate * project["_discount"]).quantize(Decimal(1)) + Decimal("0.00")
            data["bill_rate"] = str(rate)
        events, subject = [], f"time_entry/{entry_id}"

        def emit(stage: str, when: dt.datetime, **extra: Any) -> None:
            events.append(firm.event(f"time_entry.{stage}", {**data, **extra}, when,
                                     correlation=entry_id, subject=subject))

        submitted = at(friday, 17) + dt.timedelta(minutes=rng.randint(0, 180))
        approved = submitted + dt.timedelta(hours=min(rng.expovariate(1 / 30), 96))
        if submitted > end:
            return events
        emit("submitted", submitted)
        if rng.random() < 0.03:
            if approved > end:
                return events
            emit("rejected", approved)
            approved += dt.timedelta(hours=rng.randint(4, 24))
        if approved > end:
            return events
        emit("approved", approved)
        month = day.replace(day=1)
        counts = self.counts[month]
        counts[0] += 1
        value = Decimal(data["hours"]) * rate
        tm_billable = billable and method == "time_and_materials" and project["_bills"]
        never_posted = self._never_posted(entry_id, project, approved)
        if never_posted is not None:
            return events + never_posted
        if project["_part"] == "unknown_invoice" and tm_billable and not self.billed_unposted:
            # Billed although its posting never reached anyone: billed_not_posted.
            self.billed_unposted = entry_id
            firm.billing.add(project, Item("time_entry", data, month, approved, value, False))
            return events

        posted = approved + dt.timedelta(hours=min(firm.lognormal_hours(5, 1.3), 72))
        if posted > end:
            return events
        if rng.random() < 0.015:  # the first attempt fails; the retry posts it
            recovery = min(dt.timedelta(hours=firm.lognormal_hours(0.75, 1.0)),
                           (posted - approved) * 0.9)
            events.append(firm.sync("psa-to-erp", "time_entry", entry_id, posted - recovery,
                                    error=rng.choice(SYNC_ERRORS)))
            events.append(firm.sync("psa-to-erp", "time_entry", entry_id, posted, attempt=2))
        else:
            events.append(firm.sync("psa-to-erp", "time_entry", entry_id, posted))
        emit("posted", posted, erp_document_id=f"ERP-{rng.randint(10**6, 10**7 - 1)}")
        if rng.random() < 0.01:
            reversed_at = posted + dt.timedelta(days=rng.randint(1, 3))
            if reversed_at <= end:
                emit("reversed", reversed_at)
                counts[0] -= 1  # reversed entries count nowhere
                return events
        counts[1] += 1
        if tm_billable:
            firm.billing.add(project, Item("time_entry", data, month, posted, value, True))
        return events

    def _never_posted(self, entry_id: str, project: dict[str, Any], approved: dt.datetime,
                      ) -> list[Event] | None:
        """The sync events of an entry planted to stay unposted, or None for any other."""
        firm, rng, end = self.firm, self.firm.rng, self.firm.end
        if project["_part"] == "unposted_project" and approved >= self.unposted_since:
            if not firm.planted["unposted_project"]:
                firm.plant("unposted_project", project["project_id"])
            return []  # the project's ERP mapping broke: nothing posts, nothing syncs
        if self.failures_from and self.failures_from[0] <= approved <= end - dt.timedelta(hours=4):
            self.failures_from.pop(0)
            firm.plant("open_sync_failures", entry_id)
            failed = approved + dt.timedelta(minutes=rng.randint(20, 90))
            error = rng.choice(SYNC_ERRORS)
            return [firm.sync("psa-to-erp", "time_entry", entry_id, failed, error=error),
                    firm.sync("psa-to-erp", "time_entry", entry_id,
                              failed + dt.timedelta(hours=rng.randint(1, 2)), attempt=2,
                              error=error)]
        return None

    # --- expenses ----------------------------------------------------------------------------
    def expenses(self) -> list[Event]:
        """About a third of the people claim an expense a month on their first project;
        approved within days, posted by the next batch run of the expense feed to ERP."""
        firm, rng, events, n = self.firm, self.firm.rng, [], 0
        firm.plant("stale_feed", "expenses-to-erp")
        first_day, final_day = firm.start.date(), firm.end.date()
        for first in months(first_day, final_day):
            earliest, latest = max(first, first_day), min(last_day(first), final_day)
            for person in firm.people:
                if rng.random() >= 0.35:
                    continue
                project = person["_projects"][0]
                incurred = earliest + dt.timedelta(days=rng.randint(0, (latest - earliest).days))
                n += 1
                data = {"expense_id": f"EXP-{n:06d}", "project_id": project["project_id"],
                        "person_id": person["person_id"], "incurred_on": incurred.isoformat(),
                        "amount": f"{rng.randint(40, 900)}.{rng.randint(0, 99):02d}",
                        "currency": project["currency"],
                        "billable": (project["billing_method"] != "non_billable"
                                     and rng.random() < 0.7)}
                approved = firm.business_hour(incurred + dt.timedelta(days=rng.randint(1, 6)))
                if approved > firm.end:
                    continue
                events.append(self._expense("approved", data, approved))
                posted = _next_batch_run(approved + dt.timedelta(hours=2))
                if posted >= firm.expense_feed_stops:
                    if posted <= firm.end:
                        firm.plant("stale_feed", data["expense_id"])
                    continue
                events.append(self._expense("posted", data, posted))
                if data["billable"] and project["_bills"]:
                    firm.billing.add(project, Item("expense", data, first, posted,
                                                   Decimal(data["amount"]), True))
        return events

    def _expense(self, stage: str, data: dict[str, Any], when: dt.datetime) -> Event:
        return self.firm.event(f"expense.{stage}", data, when, correlation=data["expense_id"],
                               source=self.firm.expense_source)


def _next_batch_run(moment: dt.datetime) -> dt.datetime:
    """The expense feed's next batch run (08:00 and 20:00) at or after the moment."""
    for hour in (8, 20, 32):
        run = at(moment.date(), 0) + dt.timedelta(hours=hour)
        if run >= moment:
            return run
    raise AssertionError("tomorrow's 08:00 is always at or after the moment")
