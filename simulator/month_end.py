"""What the simulated firm's month end looks like beyond its daily books: the treasury's
exchange rates, a timesheet approved after the cut-off that slips to the next billing, and
an expense ERP holds that the expense tool never reported.

Built with a random generator of its own and delivered after the rest of the stream, so
the firm's other events, their ids and their order stay what they are for a seed.
"""
import datetime as dt
import random
import uuid
from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ingestion.events import make_event

from .billing import Item
from .dates import Event, at, last_day, months, working_day

if TYPE_CHECKING:  # the firm imports this module
    from .firm import FirmSimulator

# Mid rates the treasury's daily publications wander around: 1 base = rate quote.
PAIRS = {("EUR", "USD"): Decimal("1.08"), ("EUR", "GBP"): Decimal("0.86"),
         ("GBP", "USD"): Decimal("1.26")}
LATE_ENTRIES = 6


class MonthEnd:
    def __init__(self, firm: "FirmSimulator", seed: int) -> None:
        self.firm = firm
        self.rng = random.Random(f"month-end-{seed}")

    def _event(self, event_type: str, data: dict[str, Any], when: dt.datetime,
               **extra: Any) -> Event:
        return make_event(event_type, data, time=when, source=self.firm.source,
                          event_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                          **extra)

    def fx_rates(self) -> list[Event]:
        """Each working day at 17:00 UTC, the day's rate of each pair (a random walk)."""
        firm, events = self.firm, []
        rates = dict(PAIRS)
        day = firm.start.date()
        while at(day, 17) <= firm.end:
            if day.weekday() < 5:
                for (base, quote), rate in rates.items():
                    rate *= Decimal(str(round(1 + self.rng.gauss(0, 0.003), 6)))
                    rates[(base, quote)] = rate
                    events.append(self._event("fx_rate.published", {
                        "base": base, "quote": quote, "rate": f"{rate.quantize(Decimal('1e-6'))}",
                        "date": day.isoformat()}, at(day, 17)))
            day += dt.timedelta(days=1)
        return events

    def _last_closed_month(self) -> dt.date | None:
        """The last month whose fourth working day after it is within the span."""
        closed = [first for first in months(self.firm.start.date(), self.firm.end.date())
                  if self._approval_day(first) < self.firm.end.date()
                  and last_day(first) < self.firm.end.date()]
        return closed[-1] if closed else None

    @staticmethod
    def _approval_day(first: dt.date) -> dt.date:
        day, counted = last_day(first), 0
        while counted < 4:
            day = working_day(day + dt.timedelta(days=1))
            counted += 1
        return day

    def late_timesheet(self) -> list[Event]:
        """A consultant's last week of a closed month on the firm's first time-and-materials
        project that plays no other part, approved on the fourth working day after the month
        — after the default cut-off — and posted just after the month's billing run: it
        slips to the next run. Counted in the month's reconciliation report like any
        entry. Call before the stream is built: the next run bills it."""
        firm, first = self.firm, self._last_closed_month()
        project = next((p for p in firm.projects if p["billing_method"] == "time_and_materials"
                        and p["_bills"] and p["_part"] is None), None)
        if first is None or project is None:
            return []
        person = next(p for p in firm.people if project in p["_projects"])
        approved = at(self._approval_day(first), 15)
        runs = [drafted for drafted, _, billed, month in firm.billing.runs
                if billed is project and month == first]
        posted = max([approved, *runs]) + dt.timedelta(hours=2)
        rate = person["_bill_rate"]
        if project["_discount"]:
            rate = (rate * project["_discount"]).quantize(Decimal(1)) + Decimal("0.00")
        events, day = [], last_day(first)
        for n in range(1, LATE_ENTRIES + 1):
            while day.weekday() >= 5:
                day -= dt.timedelta(days=1)
            entry_id = f"TE-LATE-{first:%Y%m}-{n}"
            data = {"time_entry_id": entry_id, "project_id": project["project_id"],
                    "person_id": person["person_id"], "work_date": day.isoformat(),
                    "hours": "8.00", "billable": True}
            if project["_discount"]:
                data["bill_rate"] = str(rate)
            events.append(self._event("time_entry.approved", data, approved,
                                      correlationid=entry_id))
            counted = firm.work.counts[first]
            counted[0] += 1
            if posted <= firm.end:
                events.append(self._event("time_entry.posted", data, posted,
                                          correlationid=entry_id))
                events.append(self._event("sync.succeeded", {
                    "flow": "psa-to-erp", "source_system": "psa", "target_system": "erp",
                    "object_type": "time_entry", "object_id": entry_id}, posted))
                counted[1] += 1
                firm.billing.add(project, Item("time_entry", data, first, posted,
                                               Decimal("8") * rate, True))
            firm.plant("late_timesheet", entry_id)
            day -= dt.timedelta(days=1)
        return events

    def expense_reports(self, expenses: list[Event]) -> list[Event]:
        """The expense feed's monthly reconciliation with ERP, 17 days after each month:
        expenses approved (or later) and posted, by month incurred. ERP holds one expense in
        the last reported month that the expense tool never reported: its target count is
        one above what OpsView received."""
        approved: Counter[str] = Counter()  # by month, YYYY-MM
        posted: Counter[str] = Counter()
        for event in expenses:
            month = event["data"]["incurred_on"][:7]
            if event["type"] == "expense.approved":
                approved[month] += 1
            elif event["type"] == "expense.posted":
                posted[month] += 1
        reports = [(made, first) for made, first in self.firm.reconciliation_reports()]
        events = []
        for made, first in reports:
            month = first.strftime("%Y-%m")
            target = posted[month]
            if (made, first) == reports[-1]:
                target += 1
                self.firm.plant("erp_only_expense", "expenses-to-erp", month)
            events.append(self._event("reconciliation.reported", {
                "flow": "expenses-to-erp", "object_type": "expense",
                "period_start": first.isoformat(), "period_end": last_day(first).isoformat(),
                "source_count": approved[month], "target_count": target}, made))
        return events
