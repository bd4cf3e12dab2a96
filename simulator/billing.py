"""How the simulated firm bills: monthly billing runs, fixed fees, milestones, invoices.

A billing run a few days after each month bills, per project, the approved and posted
time-and-materials time and billable expenses of that month and earlier not billed yet, on
one invoice whose amount is their value (now and then written down a little). Fixed-fee
projects recognize revenue monthly toward their contract value and invoice instalments on a
schedule (ahead of recognition, behind it, or by milestones); milestone projects bill each
milestone once it is completed. Every invoice is drafted, sometimes blocked, issued on 30-day
terms and mostly paid.
"""
import datetime as dt
import heapq
import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .dates import Event, at, last_day, months, stamp

if TYPE_CHECKING:  # the firm imports this module
    from .firm import FirmSimulator

CENT = Decimal("0.01")
BLOCK_DETAILS = {
    "missing_po": "ERP validation: the client requires a purchase order number",
    "missing_project_metadata": "ERP validation: project has no cost centre",
    "rate_mismatch": "ERP validation: line rates differ from the rate card",
    "tax_configuration": "ERP validation: no tax code for the client's jurisdiction",
    "customer_mismatch": "ERP validation: bill-to customer differs from the project's client",
    "other": "ERP validation: rejected by the billing reviewer",
}
MILESTONE_NAMES = ["Discovery sign-off", "Design approved", "Build complete",
                   "User acceptance", "Go-live", "Hypercare exit"]


@dataclass(frozen=True)
class Item:
    """A billable item waiting for a billing run: ready once approved and posted."""
    kind: str  # time_entry | expense
    data: dict
    month: dt.date
    ready: dt.datetime
    value: Decimal
    posted: bool


class Billing:
    def __init__(self, firm: "FirmSimulator") -> None:
        self.firm = firm
        self.pending: defaultdict[str, list[Item]] = defaultdict(list)  # project_id → not billed
        # heap of (drafted, sequence, project, month)
        self.runs: list[tuple[dt.datetime, int, dict[str, Any], dt.date]] = []
        self.issued: Counter[dt.date] = Counter()  # month → invoices issued in it
        self.invoices_built = 0
        self.reasons_unused = list(BLOCK_DETAILS)  # every blocked_reason shows at least once
        self.voided = None

    # --- plans, made with the master data ----------------------------------------------------
    def plan_fixed_fee(self, project: dict[str, Any], schedule: str) -> None:
        """A contract over 4–12 months from the span's first month: fee, life and schedule."""
        rng = self.firm.rng
        life = list(itertools.islice(months(self.firm.start.date(), dt.date.max),
                                     rng.randint(4, 12)))
        project["contract_value"] = f"{rng.randint(20, 80) * 1000 * len(life)}.00"
        project["_life"], project["_schedule"] = life, schedule
        if schedule == "milestones":  # 30 %, 30 %, 40 % at a third, two thirds and the end
            value = Decimal(project["contract_value"])
            shares = [value * Decimal("0.3"), value * Decimal("0.3")]
            shares.append(value - sum(shares))
            project["_milestones"] = self._milestone_plan(project, life, shares,
                                                          ["Phase 1 acceptance",
                                                           "Phase 2 acceptance",
                                                           "Final acceptance"])

    def plan_milestones(self, project: dict[str, Any]) -> None:
        """The project's milestones: names, amounts and completion dates over its life."""
        """Three to five milestones over 3–9 months; the contract is their sum."""
        rng = self.firm.rng
        life = list(itertools.islice(months(self.firm.start.date(), dt.date.max),
                                     rng.randint(3, 9)))
        amounts = [Decimal(rng.randint(10, 80) * 1000) for _ in range(rng.randint(3, 5))]
        project["contract_value"] = f"{sum(amounts)}.00"
        project["_milestones"] = self._milestone_plan(project, life, amounts, MILESTONE_NAMES)

    def _milestone_plan(self, project: dict[str, Any], life: list[dt.date], amounts: list[Decimal],
                        names: list[str]) -> list[dict[str, Any]]:
        rng, first = self.firm.rng, life[0]
        span = (last_day(life[-1]) - first).days
        return [{"milestone_id": f"MS-{project['project_id']}-{k + 1}",
                 "project_id": project["project_id"], "name": names[k],
                 "amount": f"{amount.quantize(CENT)}",
                 "completed_on": (first + dt.timedelta(days=span * (k + 1) // len(amounts)
                                                       + rng.randint(-5, 0))).isoformat()}
                for k, amount in enumerate(amounts)]

    # --- the ledger and the monthly runs -------------------------------------------------------
    def add(self, project: dict[str, Any], item: Item) -> None:
        """An approved, billable item waiting for its project's next run."""
        self.pending[project["project_id"]].append(item)

    def schedule_runs(self) -> None:
        """A run per billing project and month, on a working day 5–7 days after the month:
        late enough that every week of the month is built when the run is."""
        firm, sequence = self.firm, itertools.count()
        for project in firm.projects:
            if not project["_bills"]:
                continue
            for first in months(firm.start.date(), firm.end.date()):
                drafted = firm.business_hour(last_day(first)
                                             + dt.timedelta(days=firm.rng.randint(5, 7)))
                if drafted + dt.timedelta(minutes=15) <= firm.end:
                    heapq.heappush(self.runs, (drafted, next(sequence), project, first))

    def runs_until(self, moment: str | None) -> list[Event]:
        """The events of every run drafted before the moment (a stamp; None: all)."""
        events = []
        while self.runs and (moment is None or stamp(self.runs[0][0]) < moment):
            drafted, _, project, first = heapq.heappop(self.runs)
            events += self._run(project, first, drafted)
        return events

    def _run(self, project: dict[str, Any], first: dt.date, drafted: dt.datetime) -> list[Event]:
        firm, rng = self.firm, self.firm.rng
        project_id = project["project_id"]
        cutoff = drafted - dt.timedelta(hours=1)
        due = [item for item in self.pending[project_id]
               if item.month <= first and item.ready <= cutoff]
        if not due:
            return []
        self.pending[project_id] = [item for item in self.pending[project_id]
                                    if not (item.month <= first and item.ready <= cutoff)]
        invoice_id = f"INV-{project_id}-{first:%Y%m}"
        events = []
        if project["_part"] == "unknown_invoice" and not firm.planted["unknown_invoice"]:
            # One entry names a supplementary invoice that the ERP never reports.
            lost = next((item for item in due if item.kind == "time_entry" and item.posted),
                        None)
            if lost:
                due.remove(lost)
                firm.plant("unknown_invoice", f"{invoice_id}-S", lost.data["time_entry_id"])
                events += self._link([lost], f"{invoice_id}-S", drafted)
        if not due:
            return events
        standard = sum((item.value for item in due), Decimal(0))
        amount = standard
        if rng.random() < 0.05:  # a write-down: realization below 1
            amount = standard * Decimal(str(round(rng.uniform(0.90, 0.97), 3)))
        for item in due:
            if not item.posted:
                firm.plant("billed_not_posted", item.data["time_entry_id"], invoice_id)
        invoice = self._invoice(invoice_id, project, amount)
        voids = project["_part"] == "voided_invoice" and not self.voided
        events += self._link(due, invoice_id, drafted)
        lifecycle, voided = self._lifecycle(invoice, drafted, voids=voids,
                                            stays_blocked=project["_part"] == "no_po")
        events += lifecycle
        if voided:
            events += self._reissue(invoice, due, voided)
        return events

    def _reissue(self, invoice: dict[str, Any], items: list[Item], voided: dt.datetime,
                 ) -> list[Event]:
        """The voided invoice's items return to WIP and are billed again days later on a
        new invoice for the same amount."""
        firm = self.firm
        self.voided = invoice["invoice_id"]
        redrafted = firm.business_hour(voided.date()
                                       + dt.timedelta(days=firm.rng.randint(1, 2)))
        reissue = {**invoice, "invoice_id": f"{invoice['invoice_id']}-R"}
        if redrafted + dt.timedelta(minutes=15) > firm.end:
            return []
        firm.plant("voided_invoice", invoice["invoice_id"], reissue["invoice_id"])
        return (self._link(items, reissue["invoice_id"], redrafted)
                + self._lifecycle(reissue, redrafted, blockable=False)[0])

    def _link(self, items: list[Item], invoice_id: str, drafted: dt.datetime) -> list[Event]:
        """The items' `invoiced` events, naming the invoice, minutes after its draft."""
        firm, events = self.firm, []
        for item in items:
            key = f"{item.kind}_id"
            source = firm.expense_source if item.kind == "expense" else None
            when = drafted + dt.timedelta(minutes=firm.rng.randint(1, 10))
            events.append(firm.event(f"{item.kind}.invoiced", {**item.data,
                                                               "invoice_id": invoice_id},
                                     when, correlation=item.data[key], source=source))
        return events

    # --- fixed fees and milestones ---------------------------------------------------------------
    def fixed_fees_and_milestones(self) -> list[Event]:
        """Recognized revenue, instalment invoices and milestones of every project that has them."""
        events = []
        for project in self.firm.projects:
            if project["billing_method"] == "fixed_fee":
                events += self._recognition(project)
                if project["_schedule"] != "milestones":
                    events += self._instalments(project)
            if "_milestones" in project:
                events += self._milestones(project)
        return events

    def _recognition(self, project: dict[str, Any]) -> list[Event]:
        """`revenue.recognized` per month of the contract's life, summing to the contract
        value at its end; now and then a period is corrected down a week or two later and
        the next period makes up the difference."""
        firm, rng, events = self.firm, self.firm.rng, []
        life, value = project["_life"], Decimal(project["contract_value"])
        weights = [Decimal(str(round(rng.uniform(0.7, 1.3), 2))) for _ in life]
        shares = [(value * w / sum(weights)).quantize(CENT) for w in weights]
        shares[-1] = value - sum(shares[:-1])
        carried = Decimal(0)
        for k, first in enumerate(life):
            amount = shares[k] + carried
            carried = Decimal(0)
            recognized = at(last_day(first) + dt.timedelta(days=rng.randint(3, 5)), 12)
            if recognized > firm.end:
                break
            data = {"project_id": project["project_id"], "period": first.strftime("%Y-%m"),
                    "amount": str(amount), "currency": project["currency"]}
            events.append(firm.event("revenue.recognized", data, recognized,
                                     correlation=project["project_id"]))
            corrected_at = recognized + dt.timedelta(days=rng.randint(5, 12))
            if k < len(life) - 1 and rng.random() < 0.15 and corrected_at <= firm.end:
                corrected = (amount * Decimal(str(round(rng.uniform(0.90, 0.98), 2)))
                             ).quantize(CENT)
                carried = amount - corrected
                events.append(firm.event("revenue.recognized", {**data, "amount": str(corrected)},
                                         corrected_at, correlation=project["project_id"]))
        return events

    def _instalments(self, project: dict[str, Any]) -> list[Event]:
        """Instalments of the contract value: monthly ahead of the month, monthly after it, or
        quarterly after the quarter; the last one takes the rounding."""
        firm, rng, events = self.firm, self.firm.rng, []
        life, value = project["_life"], Decimal(project["contract_value"])
        schedule = project["_schedule"]
        size = 3 if schedule == "quarterly_arrears" else 1
        groups = [life[k:k + size] for k in range(0, len(life), size)]
        billed = Decimal(0)
        for k, group in enumerate(groups):
            amount = (value * len(group) / len(life)).quantize(CENT)
            if k == len(groups) - 1:
                amount = value - billed
            billed += amount
            if schedule == "monthly_advance":
                day = max(group[0], firm.start.date()) + dt.timedelta(days=rng.randint(0, 2))
            else:
                day = last_day(group[-1]) + dt.timedelta(days=rng.randint(5, 7))
            drafted = firm.business_hour(day)
            if drafted > firm.end:
                break
            invoice = self._invoice(f"INV-{project['project_id']}-FF{k + 1:02d}", project, amount)
            events += self._lifecycle(invoice, drafted)[0]
        return events

    def _milestones(self, project: dict[str, Any]) -> list[Event]:
        """Each milestone completed on its date and billed on its own invoice days later; a
        few late (past the grace period), one on the late-milestone project never."""
        firm, rng, events = self.firm, self.firm.rng, []
        plan = list(project["_milestones"])
        if project["_part"] == "late_milestone":
            completed_on = max(firm.end - dt.timedelta(days=42),
                               firm.start + dt.timedelta(days=2)).date()
            plan.append({"milestone_id": f"MS-{project['project_id']}-CR1",
                         "project_id": project["project_id"], "name": "Change request 1",
                         "amount": f"{rng.randint(5, 20) * 1000}.00",
                         "completed_on": completed_on.isoformat()})
            firm.plant("late_milestone", plan[-1]["milestone_id"])
        for milestone in plan:
            completed_on = dt.date.fromisoformat(milestone["completed_on"])
            completed = firm.business_hour(completed_on)
            if completed > firm.end:
                continue
            events.append(firm.event("milestone.completed", milestone, completed,
                                     correlation=milestone["milestone_id"]))
            if milestone["milestone_id"].endswith("-CR1"):
                continue
            late = rng.random() < 0.15
            delay = rng.randint(7, 20) if late else rng.randint(1, 4)
            drafted = firm.business_hour(completed_on + dt.timedelta(days=delay))
            invoiced = drafted + dt.timedelta(minutes=rng.randint(1, 10))
            if invoiced > firm.end:
                continue
            invoice = self._invoice(f"INV-{milestone['milestone_id']}", project,
                                    Decimal(milestone["amount"]))
            events.append(firm.event("milestone.invoiced", {
                **milestone, "invoice_id": invoice["invoice_id"]}, invoiced,
                correlation=milestone["milestone_id"]))
            events += self._lifecycle(invoice, drafted)[0]
        return events

    # --- invoices ----------------------------------------------------------------------------
    def _invoice(self, invoice_id: str, project: dict[str, Any], amount: Decimal,
                 ) -> dict[str, Any]:
        return {"invoice_id": invoice_id, "client_id": project["client_id"],
                "project_id": project["project_id"], "amount": str(amount.quantize(CENT)),
                "currency": project["currency"]}

    def _lifecycle(self, invoice: dict[str, Any], drafted: dt.datetime, *, voids: bool = False,
                   stays_blocked: bool = False, blockable: bool = True,
                   ) -> tuple[list[Event], dt.datetime | None]:
        """Drafted → (blocked →) issued → paid, or voided days after issue; each event only
        if it happens by the end. Returns (events, when it was voided or None)."""
        firm, rng = self.firm, self.firm.rng
        invoice_id = invoice["invoice_id"]
        steps: list[tuple[str, dt.datetime, dict[str, Any]]] = [("drafted", drafted, {})]
        issued = firm.business_hour(drafted.date() + dt.timedelta(days=rng.randint(1, 4)))
        reason = self._block_reason(stays_blocked, blockable and not voids)
        if reason:
            blocked = drafted + dt.timedelta(hours=rng.randint(2, 30))
            steps.append(("blocked", blocked, {"blocked_reason": reason,
                                               "detail": BLOCK_DETAILS[reason]}))
            if stays_blocked or rng.random() < 0.2:
                if blocked <= firm.end:
                    firm.plant("invoices_still_blocked", invoice_id)
                return self._emit(invoice, steps), None
            issued = firm.business_hour(blocked.date() + dt.timedelta(days=rng.randint(2, 10)))
        terms = {"issued_on": issued.date().isoformat(),
                 "due_on": (issued.date() + dt.timedelta(days=30)).isoformat()}
        steps.append(("issued", issued, terms))
        events = self._emit(invoice, steps)
        if issued > firm.end:
            return events, None
        self.issued[issued.date().replace(day=1)] += 1
        events += self._crm_sync(invoice_id, issued)
        if voids:
            voided = issued + dt.timedelta(days=rng.randint(2, 4))
            if voided > firm.end:
                return events, None
            return events + self._emit(invoice, [("voided", voided, {
                **terms, "detail": "Voided: billed to the wrong purchase order"})]), voided
        late = rng.random() < 0.12
        days = max(7, rng.gauss(60, 15) if late else rng.gauss(31, 8))
        paid = firm.business_hour((issued + dt.timedelta(days=days)).date())
        events += self._emit(invoice, [("paid", paid, {**terms,
                                                       "paid_on": paid.date().isoformat()})])
        return events, None

    def _block_reason(self, stays_blocked: bool, blockable: bool) -> str | None:
        """missing_po on the project without its PO; else every reason once early on, then
        now and then."""
        self.invoices_built += 1
        chance = self.firm.rng.random()
        if stays_blocked:
            return "missing_po"
        if not blockable:
            return None
        if self.reasons_unused and self.invoices_built % 4 == 2:
            return self.reasons_unused.pop(0)
        if chance < 0.04:
            return self.firm.rng.choice(list(BLOCK_DETAILS))
        return None

    def _crm_sync(self, invoice_id: str, issued: dt.datetime) -> list[Event]:
        """The issued invoice reaches CRM minutes later, now and then at the second try."""
        firm, rng = self.firm, self.firm.rng
        sent = issued + dt.timedelta(minutes=rng.randint(2, 10))
        if rng.random() < 0.03:
            retried = sent + dt.timedelta(minutes=rng.randint(5, 60))
            if retried > firm.end:
                return []
            return [firm.sync("erp-to-crm", "invoice", invoice_id, sent,
                              error=("CRM-429", "CRM rate limit reached")),
                    firm.sync("erp-to-crm", "invoice", invoice_id, retried, attempt=2)]
        return [firm.sync("erp-to-crm", "invoice", invoice_id, sent)] if sent <= firm.end else []

    def _emit(self, invoice: dict[str, Any],
              steps: list[tuple[str, dt.datetime, dict[str, Any]]]) -> list[Event]:
        firm = self.firm
        return [firm.event(f"invoice.{stage}", {**invoice, **extra}, when,
                           correlation=invoice["invoice_id"])
                for stage, when, extra in steps if when <= firm.end]
