"""Unbilled WIP as of a date: the figures, a trend's totals, the breakdown by group and
every entry behind them, fixed-fee projects' recognized revenue included."""
import bisect
import datetime as dt
import itertools
from collections import defaultdict
from collections.abc import Collection
from decimal import Decimal
from typing import Any

from django.db.models import Case, CharField, F, Model, QuerySet, Value, When
from django.db.models.expressions import Combinable
from django.db.models.functions import TruncDate

from opsview import models as state
from opsview.selectors import (
    ZERO,
    cells_as_of,
    project_filters,
    spans_as_of,
    total,
    wip_by_day,
)
from opsview.timeline import end_of, firm_zone
from reporting.kpis.formatting import AGING_BUCKETS, Filters, Json, _clean, age_bucket, money
from reporting.kpis.periods import GROUPS, _period_end

WIP_PARTS = ["time", "expenses", "milestones", "fixed_fee"]
SPAN_PART = {"time_entry": "time", "expense": "expenses", "milestone": "milestones"}


def _age(as_of: dt.date) -> Case:
    """The age bucket of a span's item as of a date (age = as-of − the item's date), as an
    expression to group by: one sum per group, not one conditional sum per bucket."""
    return Case(
        When(on_date__gte=as_of - dt.timedelta(days=30), then=Value(AGING_BUCKETS[0])),
        When(on_date__gte=as_of - dt.timedelta(days=60), then=Value(AGING_BUCKETS[1])),
        When(on_date__gte=as_of - dt.timedelta(days=90), then=Value(AGING_BUCKETS[2])),
        default=Value(AGING_BUCKETS[3]), output_field=CharField())


def _wip_rows(as_of: dt.date, filters: Filters | None, *keys: str,
              **named_keys: Combinable) -> list[dict[str, Any]]:
    """Value of the WIP cells holding value as of a date, summed per the given keys, age
    bucket and in-billing flag."""
    return [row for cells in cells_as_of(as_of, filters)
            for row in cells.values(*keys, age=_age(as_of), billing=F("in_billing"),
                                    **named_keys)
            .annotate(value=total(F("value"))).order_by()]


def _blank_wip() -> dict[str, Any]:
    return {"total": ZERO, **dict.fromkeys(WIP_PARTS, ZERO), "in_billing": ZERO,
            "aging": dict.fromkeys(AGING_BUCKETS, ZERO)}


def wip(*, as_of: dt.date, filters: Filters | None = None) -> Json:
    """Unbilled WIP as of the end of a date: approved work not billed then, per currency."""
    filters = filters or {}
    currencies: defaultdict[str, dict[str, Any]] = defaultdict(_blank_wip)
    for row in _wip_rows(as_of, filters, "kind", ccy=F("currency")):
        figures = currencies[row["ccy"]]
        figures[SPAN_PART[row["kind"]]] += row["value"]
        figures["total"] += row["value"]
        figures["aging"][row["age"]] += row["value"]
        if row["billing"]:
            figures["in_billing"] += row["value"]
    for position in fixed_fee_wip(as_of=as_of, filters=filters):
        figures = currencies[position["currency"]]
        figures["fixed_fee"] += position["value"]
        figures["total"] += position["value"]
        figures["in_billing"] += position["in_billing"]
        figures["aging"][age_bucket(position["age_days"])] += position["value"]
    return {
        "as_of": as_of.isoformat(),
        "filters": _clean(filters),
        "currencies": {
            currency: {**{k: money(figures[k]) for k in ("total", *WIP_PARTS, "in_billing")},
                       "aging": {b: money(v) for b, v in figures["aging"].items()}}
            for currency, figures in sorted(currencies.items()) if currency
        },
    }


def wip_totals(days: list[dt.date], filters: Filters | None = None,
               ) -> dict[dt.date, dict[str, str]]:
    """{day: {currency: total}}: the WIP total wip(as_of=day) gives, for several days at
    once (a trend), the fixed-fee books read once for all of them."""
    filters = filters or {}
    books = FixedFeeBooks(filters, up_to=max(days))
    # The whole firm's WIP reads the day changes; a filter names projects, so the cells.
    whole = None if project_filters(filters) else wip_by_day(days)
    fixed_fee = books.totals(days)
    result = {}
    for day in days:
        totals: defaultdict[str, Decimal] = defaultdict(lambda: ZERO)
        if whole is not None:
            totals.update(whole[day])
        else:
            for cells in cells_as_of(day, filters):
                for currency, value in (cells.values(ccy=F("currency"))
                                        .annotate(value=total(F("value")))
                                        .values_list("ccy", "value").order_by()):
                    totals[currency] += value
        for currency, value in fixed_fee[day].items():
            totals[currency] += value
        result[day] = {currency: money(value) for currency, value in sorted(totals.items())
                       if currency}
    return result


def fixed_fee_wip(*, as_of: dt.date, filters: Filters | None = None) -> list[dict[str, Any]]:
    """Per fixed-fee project with unbilled revenue as of a date: recognized revenue up to
    that month less the invoices on the project issued and not voided by then (less the
    expenses they bill), floored at 0; `in_billing` the part its drafted or blocked
    invoices cover; aged from the last day of the oldest period the billing has not yet
    covered (billing covers periods oldest first)."""
    return FixedFeeBooks(filters, up_to=as_of).positions(as_of)


class FixedFeeBooks:
    """The fixed-fee projects' recognized revenue, invoices and invoiced expenses up to a
    day, read once (a handful of queries), so that their WIP can be told as of that day or
    any day before it — one day for the WIP figures, a dozen for a trend."""

    def __init__(self, filters: Filters | None, up_to: dt.date) -> None:
        fixed_fee = state.Project.objects.filter(
            project_filters(filters, prefix=""), is_placeholder=False,
            billing_method=state.Project.BillingMethod.FIXED_FEE)
        self.projects = {p["pk"]: p for p in fixed_fee.values(
            "pk", "project_id", "name", "currency", "practice", "legal_entity",
            client_key=F("client__client_id"), client_name=F("client__name"))}
        # project pk -> [(period, amount)], oldest first
        self.revenue: defaultdict[int, list[tuple[str, Decimal]]] = defaultdict(list)
        self.invoices: dict[int, list[Any]] = {}
        self.owners: set[tuple[int, int]] = set()
        self.expense_events: defaultdict[int, list[tuple[dt.datetime, str]]] = defaultdict(list)
        self.expense_amounts: dict[int, Decimal] = {}
        self.running: dict[int, tuple[list[str], list[Decimal]]] = {}
        if not self.projects:
            return
        for project_id, period, amount in (state.RevenueRecognition.objects
                                           .filter(project__in=fixed_fee,
                                                   period__lte=up_to.strftime("%Y-%m"))
                                           .order_by("period")
                                           .values_list("project_id", "period", "amount")):
            self.revenue[project_id].append((period, amount))
        for pk, periods in self.revenue.items():  # the running totals `totals` bisects
            self.running[pk] = ([period for period, _ in periods],
                                list(itertools.accumulate(amount for _, amount in periods)))
        if self.revenue:
            self._read_billing(fixed_fee.values("pk"), end_of(up_to))

    def _read_billing(self, projects: QuerySet, moment: dt.datetime) -> None:
        """Each project's invoices — its own, and those its milestones name though they are
        filed under no or another project — and the invoiced events of its billable expenses
        (only expenses ever invoiced can be on an invoice). The projects go to the database
        as a subquery, not as a list of thousands of ids."""
        # Announced before the end of a day is announced on a local date up to it: dates
        # read faster than instants, and a trend asks by day.
        fields = ("pk", "amount", "issued_date", "voided_date", "announced_on")
        invoices = state.Invoice.objects.filter(is_placeholder=False).annotate(
            announced_on=TruncDate("announced_at", tzinfo=firm_zone()))
        own = invoices.filter(project_id__in=projects).values_list("project_id", *fields)
        named = invoices.filter(milestones__project_id__in=projects).exclude(
            project_id=F("milestones__project_id")).values_list(
            "milestones__project_id", *fields).distinct()  # once, however many milestones
        for rows in (own, named):
            for project_pk, pk, *dates in rows:
                self.owners.add((project_pk, pk))
                self.invoices[pk] = dates
        self.expense_amounts = dict(state.Expense.objects.filter(
            project_id__in=projects, billable=True, invoice__isnull=False).values_list(
            "pk", "amount"))
        if self.expense_amounts:
            for record_id, at, _event_id, ref in state.StageEvent.objects.filter(
                    kind="expense", stage="invoiced", record_id__in=list(self.expense_amounts),
                    at__lt=moment).order_by("at", "event_id").values_list(
                    "record_id", "at", "event_id", "invoice_ref"):
                self.expense_events[record_id].append((at, ref))

    def _invoice_states(self, as_of: dt.date) -> dict[int, tuple[Decimal, str | None]]:
        """{invoice pk: (amount, "billed" | "in_billing" | None)} at the end of `as_of`."""
        states = {}
        for pk, (amount, issued, voided, announced_on) in self.invoices.items():
            state_then = None
            if voided is None or voided > as_of:
                if issued is not None and issued <= as_of:
                    state_then = "billed"
                elif announced_on is not None and announced_on <= as_of:
                    state_then = "in_billing"
            states[pk] = (amount or ZERO, state_then)
        return states

    def _expenses_on(self, as_of: dt.date) -> dict[Any, Decimal]:
        """{invoice pk: value of the billable expenses on it at the end of `as_of`}: the
        invoice each expense's latest `invoiced` event by then names."""
        moment = end_of(as_of)
        result: defaultdict[Any, Decimal] = defaultdict(lambda: ZERO)
        for record_id, events in self.expense_events.items():
            latest = None
            for at, ref in events:  # oldest first
                if at >= moment:
                    break
                latest = ref
            if latest is not None:
                result[latest] += self.expense_amounts[record_id]
        return result

    def _billing_at(self, as_of: dt.date) -> tuple[dict[int, Decimal], dict[int, Decimal]]:
        """({project pk: billed}, {project pk: in billing}) at the end of `as_of`, each
        invoice net of the expenses it bills."""
        states, expenses = self._invoice_states(as_of), self._expenses_on(as_of)
        billed: defaultdict[int, Decimal] = defaultdict(lambda: ZERO)
        in_billing: defaultdict[int, Decimal] = defaultdict(lambda: ZERO)
        for project_pk, pk in self.owners:
            amount, state_then = states[pk]
            net = amount - expenses.get(pk, ZERO)
            if state_then == "billed":
                billed[project_pk] += net
            elif state_then == "in_billing":
                in_billing[project_pk] += net
        return billed, in_billing

    def totals(self, days: Collection[dt.date]) -> dict[dt.date, dict[str, Decimal]]:
        """{day: {currency: value}}: what `positions(day)` sums to per currency, for many
        days at once (a trend) without telling each project's position. One pass over the
        invoices in date order keeps each project's billed amount; its recognized revenue up
        to a month is a running total found by bisection."""
        changes = sorted(
            (day, project_pk, sign * (amount or ZERO))
            for project_pk, pk in self.owners
            for amount, issued, voided, _ in [self.invoices[pk]]
            if issued is not None and (voided is None or voided > issued)
            for day, sign in ((issued, 1), (voided, -1)) if day is not None)
        projects_of: defaultdict[int, list[int]] = defaultdict(list)
        for project_pk, pk in self.owners:
            projects_of[pk].append(project_pk)
        billed: defaultdict[int, Decimal] = defaultdict(lambda: ZERO)
        result, applied = {}, 0
        for day in sorted(days):
            while applied < len(changes) and changes[applied][0] <= day:
                _, project_pk, amount = changes[applied]
                billed[project_pk] += amount
                applied += 1
            net = dict(billed)
            if self.expense_events:  # an invoice bills its expenses too: net of them
                states = self._invoice_states(day)
                for pk, value in self._expenses_on(day).items():
                    if pk in states and states[pk][1] == "billed":
                        for project_pk in projects_of[pk]:
                            net[project_pk] = net.get(project_pk, ZERO) - value
            month = day.strftime("%Y-%m")
            totals: defaultdict[str, Decimal] = defaultdict(lambda: ZERO)
            for pk, (periods, running) in self.running.items():
                upto = bisect.bisect_right(periods, month)
                if upto:
                    value = running[upto - 1] - net.get(pk, ZERO)
                    if value > 0:
                        totals[self.projects[pk]["currency"]] += value
            result[day] = dict(totals)
        return result

    def positions(self, as_of: dt.date) -> list[dict[str, Any]]:
        """Each fixed-fee project's unbilled position at the end of `as_of`."""
        if not self.revenue:
            return []
        billed, in_billing = self._billing_at(as_of)
        month, positions = as_of.strftime("%Y-%m"), []
        for pk, all_periods in self.revenue.items():
            periods = [(period, amount) for period, amount in all_periods if period <= month]
            if not periods:
                continue
            recognized = sum((amount for _, amount in periods), ZERO)
            covered = billed.get(pk, ZERO)
            value = max(ZERO, recognized - covered)
            if not value:
                continue
            cumulative, oldest = ZERO, periods[-1][0]
            for period, amount in periods:
                cumulative += amount
                if cumulative > covered:
                    oldest = period
                    break
            project = self.projects[pk]
            positions.append({
                "project_pk": pk, "project_id": project["project_id"], "name": project["name"],
                "client": project["client_key"], "client_name": project["client_name"],
                "practice": project["practice"], "legal_entity": project["legal_entity"],
                "currency": project["currency"], "value": value,
                "in_billing": min(value, max(ZERO, in_billing.get(pk, ZERO))),
                "age_days": max(0, (as_of - _period_end(oldest)).days),
                "oldest_period": oldest})
        return positions


FIXED_FEE_GROUP = {"client": ("client", "client_name"), "project": ("project_id", "name"),
                   "practice": ("practice", "practice"),
                   "legal_entity": ("legal_entity", "legal_entity")}


def wip_breakdown(*, as_of: dt.date, group_by: str = "client",
                  filters: Filters | None = None) -> list[Json]:
    """WIP rows by client, project, practice or legal entity, with aging, per currency."""
    key, label = GROUPS[group_by]
    totals: defaultdict[tuple[str, str], dict[str, Decimal]] = defaultdict(
        lambda: {"total": ZERO, "in_billing": ZERO, **dict.fromkeys(AGING_BUCKETS, ZERO)})
    names = {}
    for row in _wip_rows(as_of, filters, key=F(key), label=F(label), ccy=F("currency")):
        figures = totals[(row["key"], row["ccy"])]
        names[row["key"]] = row["label"]
        figures["total"] += row["value"]
        figures[row["age"]] += row["value"]
        if row["billing"]:
            figures["in_billing"] += row["value"]
    ff_key, ff_label = FIXED_FEE_GROUP[group_by]
    for position in fixed_fee_wip(as_of=as_of, filters=filters):
        figures = totals[(position[ff_key], position["currency"])]
        names[position[ff_key]] = position[ff_label]
        figures["total"] += position["value"]
        figures["in_billing"] += position["in_billing"]
        figures[age_bucket(position["age_days"])] += position["value"]
    result = [
        {"key": key_value, "name": names.get(key_value) or key_value, "currency": currency,
         **{name: money(value) for name, value in figures.items()}}
        for (key_value, currency), figures in totals.items()
    ]
    return sorted(result, key=lambda r: (r["currency"], -Decimal(r["total"]), str(r["key"])))


ENTRY_SOURCES: dict[str, tuple[type[Model], str]] = {
    "time_entry": (state.TimeEntry, "time_entry_id"),
    "expense": (state.Expense, "expense_id"),
    "milestone": (state.Milestone, "milestone_id"),
}


def wip_entries(*, as_of: dt.date, filters: Filters | None = None,
                limit: int | None = None) -> list[Json]:
    """Everything behind a WIP figure, oldest first: each unbilled time entry, expense and
    milestone, and each fixed-fee project's unbilled revenue. Its values add up to the WIP
    total."""
    spans = [span for part in spans_as_of(as_of, filters) for span in part.values(
        "kind", "record_id", "on_date", "hours", "in_billing", "value",
        ccy=F("value_currency"), client=F("project__client__name"),
        project_key=F("project__project_id"),
        project_name=F("project__name"), person_name=F("person__name"))
        .order_by("on_date", "kind", "record_id")[:limit]]
    external = {}
    for kind, (model, key) in ENTRY_SOURCES.items():
        pks = [s["record_id"] for s in spans if s["kind"] == kind]
        if pks:
            external[kind] = dict(model._default_manager.filter(pk__in=pks)
                                  .values_list("pk", key))
    rows = [{
        "kind": s["kind"], "id": external.get(s["kind"], {}).get(s["record_id"], ""),
        "date": s["on_date"].isoformat(), "age_days": (as_of - s["on_date"]).days,
        "client": s["client"], "project": s["project_name"] or s["project_key"],
        "person": s["person_name"] or "",
        "hours": money(s["hours"]) if s["kind"] == "time_entry" else None,
        "value": money(s["value"]), "currency": s["ccy"], "in_billing": s["in_billing"]}
        for s in spans]
    for position in fixed_fee_wip(as_of=as_of, filters=filters):
        oldest_end = _period_end(position["oldest_period"])
        rows.append({"kind": "fixed_fee", "id": position["project_id"],
                     "date": oldest_end.isoformat(), "age_days": position["age_days"],
                     "client": position["client_name"],
                     "project": position["name"] or position["project_id"], "person": "",
                     "hours": None, "value": money(position["value"]),
                     "currency": position["currency"],
                     "in_billing": position["in_billing"] > 0})
    rows.sort(key=lambda r: (r["date"], r["kind"], r["id"]))
    return rows[:limit] if limit else rows
