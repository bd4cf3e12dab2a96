"""State derived from the lifecycle history, refreshed for the records a batch touched.

After a batch is merged, the invoices it touched get their dates again (announced, issued,
paid, voided: `opsview.timeline.invoice_dates`), and every item it touched — or that names a
touched invoice — gets its current invoice and its WIP spans again. A fixed number of
statements per kind, whatever the batch holds.
"""
import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import tzinfo
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Model, Sum

from core.bulk import insert_rows, update_rows

from . import models as state
from .lifecycle import Kind
from .timeline import (
    InvoiceDates,
    Span,
    Stage,
    current_invoice,
    firm_zone,
    invoice_dates,
    local_date,
    wip_spans,
)

# {kind: (model, the field that dates its items)}; keyed by Kind, looked up by kind string.
ItemModel = type[state.TimeEntry] | type[state.Expense] | type[state.Milestone]
ITEMS: dict[str, tuple[ItemModel, str]] = {
    Kind.TIME_ENTRY: (state.TimeEntry, "work_date"),
    Kind.EXPENSE: (state.Expense, "incurred_on"),
    Kind.MILESTONE: (state.Milestone, "completed_on"),
}


def stages_of(kind: str, record_ids: Iterable[int]) -> dict[int, list[Stage]]:
    """{record id: [Stage]} from the history."""
    result = defaultdict(list)
    rows = (state.StageEvent.objects.filter(kind=kind, record_id__in=list(record_ids))
            .values_list("record_id", "at", "rank", "stage", "event_id", "invoice_ref"))
    for record_id, at, rank, stage, event_id, invoice_ref in rows:
        result[record_id].append(Stage(at, rank, stage, event_id, invoice_ref))
    return result


def refresh_invoices(invoice_pks: Collection[int]) -> list[str]:
    """Recompute the derived dates of these invoices from their events."""
    if not invoice_pks:
        return []
    zone = firm_zone()
    history = stages_of(Kind.INVOICE, invoice_pks)
    invoices = list(state.Invoice.objects.filter(pk__in=list(invoice_pks)).order_by("pk"))
    fields = ["announced_at", "first_drafted_at", "issued_date", "paid_date", "voided_date"]
    for invoice in invoices:
        dates = invoice_dates(history.get(invoice.pk, []), invoice.issued_on, invoice.paid_on,
                              zone)
        for name in fields:
            setattr(invoice, name, getattr(dates, name))
    update_rows(state.Invoice, invoices, fields)
    return [invoice.invoice_id for invoice in invoices]


def items_naming(invoice_ids: Collection[str]) -> dict[str, set[int]]:
    """{kind: {record id}} of the items whose events ever named one of these invoices."""
    result = defaultdict(set)
    if invoice_ids:
        for kind, record_id in (state.StageEvent.objects
                                .filter(invoice_ref__in=list(invoice_ids))
                                .exclude(kind=Kind.INVOICE).values_list("kind", "record_id")):
            result[kind].add(record_id)
    return result


def refresh_items(kind: str, record_ids: Collection[int]) -> None:
    """Recompute the current invoice and the WIP spans of these items, and move their
    contributions in the WIP cells from the old spans to the new ones."""
    if not record_ids:
        return
    model, date_field = ITEMS[kind]
    zone = firm_zone()
    # Locked while derived: two workers (one for an item's own event, one for its invoice's)
    # must not both replace the same item's spans from what they each read before.
    items = list(model.objects.select_for_update(no_key=True)
                 .filter(pk__in=list(record_ids)).order_by("pk"))
    history = stages_of(kind, record_ids)
    refs = {s.invoice_ref for stages in history.values() for s in stages if s.invoice_ref}
    invoices, invoice_pks = {}, {}
    for row in state.Invoice.objects.filter(invoice_id__in=refs).values(
            "pk", "invoice_id", "announced_at", "first_drafted_at", "issued_date", "paid_date",
            "voided_date"):
        invoice_id = row.pop("invoice_id")
        invoice_pks[invoice_id] = row.pop("pk")
        invoices[invoice_id] = InvoiceDates(**row)
    projects = {pk: (method, currency, placeholder) for pk, method, currency, placeholder in
                state.Project.objects.filter(pk__in={i.project_id for i in items})
                .values_list("pk", "billing_method", "currency", "is_placeholder")}
    people = {pk: (rate, placeholder) for pk, rate, placeholder in
              state.Person.objects.filter(pk__in={getattr(i, "person_id", None) for i in items})
              .values_list("pk", "bill_rate", "is_placeholder")}
    spans, moved = [], []
    for item in items:
        stages = history.get(item.pk, [])
        invoice_pk = invoice_pks.get(current_invoice(stages))
        if item.invoice_id != invoice_pk:
            item.invoice_id = invoice_pk
            moved.append(item)
        worth = value_of(kind, item, projects.get(item.project_id),
                         people.get(getattr(item, "person_id", None)))
        if worth is None:
            continue  # no billable value under today's master data: no WIP to keep
        spans += [_span_row(kind, item, date_field, span, *worth)
                  for span in wip_spans(kind, stages, getattr(item, date_field), invoices, zone)]
    update_rows(model, moved, ["invoice"])
    old = state.WipSpan.objects.filter(kind=kind, record_id__in=[i.pk for i in items])
    deltas = cell_deltas(old.values_list(*SPAN_CELL_FIELDS), sign=-1, zone=zone)
    old.delete()
    insert_rows(state.WipSpan, spans)
    for key, (value, count) in cell_deltas(
            ([getattr(span, name) for name in SPAN_CELL_FIELDS] for span in spans),
            sign=1, zone=zone).items():
        total, items_ = deltas.get(key, (0, 0))
        deltas[key] = (total + value, items_ + count)
    apply_cell_deltas(deltas)


def value_of(kind: str, item: Model, project: tuple | None,
             person: tuple | None) -> tuple[Decimal, str] | None:
    """(billable value, currency) of an item under today's master data, or None when it
    has none (SPEC section 2, billing methods) or names a record not known yet (counted once
    the master arrives: a change of billing method, currency or rate derives it again)."""
    if project is None or project[2] or (person is not None and person[1]):
        return None
    method, currency, _ = project
    if not carries_value(kind, item, method):
        return None
    if kind == Kind.TIME_ENTRY:
        rate = item.bill_rate if item.bill_rate is not None else (person[0] if person else None)
        return item.hours * (rate or 0), currency
    if kind == Kind.EXPENSE:
        return item.amount, item.currency
    return item.amount, currency


def carries_value(kind: str, item: Model, billing_method: str) -> bool:
    """Whether the item has billable value on a project billing this way (SPEC section 2).
    Spans are kept only for those; a project whose billing method changes has its items'
    spans refreshed (`items_of_projects`)."""
    if kind == Kind.TIME_ENTRY:
        return item.billable and billing_method == state.Project.BillingMethod.TIME_AND_MATERIALS
    if kind == Kind.EXPENSE:
        return item.billable and billing_method not in ("", state.Project.BillingMethod
                                                        .NON_BILLABLE)
    return billing_method == state.Project.BillingMethod.MILESTONE


def items_of_projects(project_pks: Collection[int]) -> dict[str, set[int]]:
    """{kind: {pk}} of every item on these projects."""
    return {kind: set(model.objects.filter(project_id__in=project_pks)
                      .values_list("pk", flat=True))
            for kind, (model, _) in ITEMS.items()} if project_pks else {}


def items_of_people(person_pks: Collection[int]) -> dict[str, set[int]]:
    """{kind: {pk}} of every time entry and expense of these people."""
    return {kind: set(model.objects.filter(person_id__in=person_pks)
                      .values_list("pk", flat=True))
            for kind, (model, _) in ITEMS.items() if kind != Kind.MILESTONE} if person_pks else {}


def _span_row(kind: str, item: Model, date_field: str, span: Span, value: Decimal,
              currency: str) -> state.WipSpan:
    return state.WipSpan(
        kind=kind, record_id=item.pk, start=span.start, end=span.end,
        in_billing=span.in_billing, project_id=item.project_id,
        person_id=getattr(item, "person_id", None), on_date=getattr(item, date_field),
        hours=getattr(item, "hours", 0), bill_rate=getattr(item, "bill_rate", None),
        amount=getattr(item, "amount", 0), currency=getattr(item, "currency", ""),
        billable=getattr(item, "billable", True), value=value, value_currency=currency)


# --- WIP cells --------------------------------------------------------------------------------
SPAN_CELL_FIELDS = ("project_id", "kind", "value_currency", "in_billing", "on_date", "start",
                    "end", "value")
CELL_KEY = ("project_id", "kind", "currency", "in_billing", "on_date", "start_day", "end_day")


def cell_deltas(spans: Iterable[Sequence], sign: int,
                zone: tzinfo | None) -> dict[tuple, tuple[Decimal, int]]:
    """{cell key: (value, items)} of spans given as SPAN_CELL_FIELDS tuples, each counted
    `sign` times. A span that begins and ends within one day holds its item at no day's end:
    it belongs to no cell."""
    deltas = {}
    for project_id, kind, currency, in_billing, on_date, start, end, value in spans:
        start_day = local_date(start, zone)
        end_day = local_date(end, zone) if end is not None else state.OPEN_END
        if start_day >= end_day:
            continue
        key = (project_id, kind, currency, in_billing, on_date, start_day, end_day)
        total, count = deltas.get(key, (0, 0))
        deltas[key] = (total + sign * value, count + sign)
    return deltas


def apply_cell_deltas(deltas: Mapping[tuple, tuple[Decimal, int]]) -> None:
    """Add the deltas to their cells in one statement (sorted, so concurrent workers take
    the cells' locks in one order), then drop the cells left empty."""
    rows = sorted((key, value, count) for key, (value, count) in deltas.items() if count or value)
    if not rows:
        return
    table = state.WipCell._meta.db_table
    columns = ", ".join(CELL_KEY)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 2000):
            chunk = rows[start:start + 2000]
            values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
            params = [v for key, value, count in chunk for v in (*key, value, count)]
            cursor.execute(
                f"INSERT INTO {table} ({columns}, value, items) VALUES {values} "
                f"ON CONFLICT ({columns}) DO UPDATE SET value = {table}.value + "
                "excluded.value, items = " + f"{table}.items + excluded.items", params)
        cursor.execute(f"DELETE FROM {table} WHERE items <= 0")  # a partial index finds them
    add_day_changes(rows)


def add_day_changes(rows: Iterable[tuple[tuple, Decimal, int]]) -> None:
    """The cells' changes as the whole WIP's change per currency and day: a cell's value
    and items count from its start day and stop at its end day. Appended, never updated."""
    changes: defaultdict[tuple[str, dt.date], tuple[Decimal, int]] = defaultdict(
        lambda: (Decimal(0), 0))
    for key, value, count in rows:
        currency, start_day, end_day = key[2], key[5], key[6]
        total, items = changes[(currency, start_day)]
        changes[(currency, start_day)] = (total + value, items + count)
        if end_day != state.OPEN_END:
            total, items = changes[(currency, end_day)]
            changes[(currency, end_day)] = (total - value, items - count)
    state.WipDayChange.objects.bulk_create(
        [state.WipDayChange(currency=currency, day=day, value=value, items=items)
         for (currency, day), (value, items) in sorted(changes.items()) if value or items],
        batch_size=2000)


def compact_day_changes() -> int:
    """Fold the WIP day changes into one row per currency and day (dropping those that sum
    to nothing); returns the rows removed. On PostgreSQL one statement, so a change a worker
    appends meanwhile is either folded or left as it is, never lost."""
    table = state.WipDayChange._meta.db_table
    with transaction.atomic():
        before = state.WipDayChange.objects.count()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"""
                    WITH gone AS (DELETE FROM {table} RETURNING currency, day, value, items)
                    INSERT INTO {table} (currency, day, value, items)
                    SELECT currency, day, SUM(value), SUM(items) FROM gone
                    GROUP BY currency, day HAVING SUM(value) <> 0 OR SUM(items) <> 0""")
        else:  # one writer at a time: read, empty, write back
            folded = list(state.WipDayChange.objects.values_list("currency", "day").annotate(
                total=Sum("value"), count=Sum("items")).order_by())
            state.WipDayChange.objects.all().delete()
            state.WipDayChange.objects.bulk_create(
                [state.WipDayChange(currency=currency, day=day, value=value, items=items)
                 for currency, day, value, items in folded if value or items],
                batch_size=2000)
        return before - state.WipDayChange.objects.count()


def refresh(touched_items: Mapping[str, Iterable[int]], touched_invoices: Collection[int]) -> None:
    """touched_items: {kind: {pk}}; touched_invoices: {invoice pk}. Invoices first: the
    items' spans read their dates."""
    invoice_ids = refresh_invoices(touched_invoices)
    items = defaultdict(set, {kind: set(pks) for kind, pks in touched_items.items()})
    for kind, pks in items_naming(invoice_ids).items():
        items[kind] |= pks
    for kind, pks in items.items():
        refresh_items(kind, pks)
