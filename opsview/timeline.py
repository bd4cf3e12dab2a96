"""Point in time (SPEC section 2): an item's status and billing state at any moment, rebuilt
from its lifecycle events and the states of the invoices it was on.

Everything is placed on one axis of instants. A business date D counts "by T" when D ≤ T,
an event time t when t is before the end of T. Taking a date as the instant its day starts
in the firm's time zone makes both the same test, instant < end of T; so a span
[start, end) holds an item as of T exactly when start < end(T) ≤ end.

The functions here are pure: lists of events in, spans out. `opsview.derived` feeds them
from the database and stores what they return.
"""
import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import tzinfo
from zoneinfo import ZoneInfo

from django.conf import settings

from .lifecycle import COUNTED_STAGES, INVOICED, InvoiceStage, InvoiceState, Kind

BILLED, IN_BILLING = InvoiceState.BILLED, InvoiceState.IN_BILLING
VOIDED, UNANNOUNCED = InvoiceState.VOIDED, InvoiceState.UNANNOUNCED


def firm_zone() -> ZoneInfo:
    """The firm's time zone (OPSVIEW_TIME_ZONE)."""
    return ZoneInfo(settings.OPSVIEW_TIME_ZONE)


def day_start(day: dt.date, zone: tzinfo | None = None) -> dt.datetime:
    """The instant a date begins in the firm's time zone."""
    return dt.datetime.combine(day, dt.time.min, zone or firm_zone())


def end_of(day: dt.date, zone: tzinfo | None = None) -> dt.datetime:
    """The end of a date in the firm's time zone: the first instant of the next day."""
    return day_start(day + dt.timedelta(days=1), zone)


def local_date(moment: dt.datetime, zone: tzinfo | None = None) -> dt.date:
    """The firm's local date of an instant."""
    return moment.astimezone(zone or firm_zone()).date()


@dataclass(frozen=True)
class Stage:
    """One lifecycle event of one record."""

    at: dt.datetime
    rank: int
    stage: str
    event_id: str
    invoice_ref: str = ""

    @property
    def order(self) -> tuple[int, dt.datetime, str]:
        """What decides the status: (rank, event time, event id)."""
        return (self.rank, self.at, self.event_id)


def status_at(stages: Iterable[Stage], moment: dt.datetime) -> str | None:
    """The stage of the greatest (rank, time, id) among events at or before `moment`, or
    None. A rejection and an approval share a rank: the later by event time wins."""
    best = None
    for stage in stages:
        if stage.at <= moment and (best is None or stage.order > best.order):
            best = stage
    return best.stage if best else None


def invoice_at(stages: Iterable[Stage], moment: dt.datetime) -> str | None:
    """The invoice the latest `invoiced` event at or before `moment` names, or None."""
    best = None
    for stage in stages:
        if stage.stage == INVOICED and stage.at <= moment and (
                best is None or (stage.at, stage.event_id) > (best.at, best.event_id)):
            best = stage
    return best.invoice_ref if best else None


def current_invoice(stages: Iterable[Stage]) -> str | None:
    """The invoice the latest `invoiced` event names, whenever it happened."""
    invoiced = [s for s in stages if s.stage == INVOICED]
    if not invoiced:
        return None
    return max(invoiced, key=lambda s: (s.at, s.event_id)).invoice_ref


# --- Invoices ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class InvoiceDates:
    """What an invoice's events say about its state over time."""

    announced_at: dt.datetime | None = None  # its first event: None for a placeholder
    first_drafted_at: dt.datetime | None = None
    issued_date: dt.date | None = None
    paid_date: dt.date | None = None
    voided_date: dt.date | None = None

    def state_at(self, moment: dt.datetime, zone: tzinfo | None = None) -> InvoiceState:
        """billed (issued, not voided), in_billing (drafted or blocked), voided, or
        unannounced (no invoice event yet) at an instant."""
        if self.voided_date and day_start(self.voided_date, zone) <= moment:
            return VOIDED
        if self.issued_date and day_start(self.issued_date, zone) <= moment:
            return BILLED
        if self.announced_at and self.announced_at <= moment:
            return IN_BILLING
        return UNANNOUNCED

    def breakpoints(self, zone: tzinfo | None = None) -> list[dt.datetime]:
        """The instants at which the invoice's state can change."""
        points = [self.announced_at] if self.announced_at else []
        points += [day_start(d, zone) for d in (self.issued_date, self.voided_date) if d]
        return points


def invoice_dates(stages: list[Stage], issued_on: dt.date | None = None,
                  paid_on: dt.date | None = None, zone: tzinfo | None = None) -> "InvoiceDates":
    """An invoice is issued on `issued_on` (else its first issued or paid event's date), paid
    on `paid_on` (else its first paid event's date), voided on its first voided event's
    date. It counts as issued only once an issued or paid event exists."""
    if not stages:
        return InvoiceDates()

    def first(*names: str) -> dt.datetime | None:
        times = [s.at for s in stages if s.stage in names]
        return min(times) if times else None

    issued, paid, voided = (first(InvoiceStage.ISSUED, InvoiceStage.PAID),
                            first(InvoiceStage.PAID), first(InvoiceStage.VOIDED))
    return InvoiceDates(
        announced_at=min(s.at for s in stages),
        first_drafted_at=first(InvoiceStage.DRAFTED),
        issued_date=(issued_on or local_date(issued, zone)) if issued else None,
        paid_date=(paid_on or local_date(paid, zone)) if paid else None,
        voided_date=local_date(voided, zone) if voided else None,
    )


# --- Items --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Span:
    start: dt.datetime
    end: dt.datetime | None
    in_billing: bool


def wip_spans(kind: str, stages: list[Stage], on_date: dt.date | None,
              invoices: Mapping[str, "InvoiceDates"], zone: tzinfo | None = None) -> list["Span"]:
    """The stretches of time during which an item was unbilled WIP.

    kind: time_entry | expense | milestone; stages: the item's events; on_date: its
    work_date / incurred_on / completed_on; invoices: {invoice id: InvoiceDates} of every
    invoice its events name. A time entry or expense counts from its approval (by event
    time) once its date has come; a milestone from its `completed_on` ("completed by T"
    is a business date). It is WIP while it counts and the invoice it is on is not billed;
    in billing while that invoice is drafted or blocked.
    """
    if on_date is None or not stages:
        return []
    counted_stages = COUNTED_STAGES[kind]
    dated_from = day_start(on_date, zone)
    if kind == Kind.MILESTONE:
        if status_at(stages, dt.datetime.max.replace(tzinfo=dt.UTC)) is None:
            return []
        points = {dated_from} | {s.at for s in stages if s.stage == INVOICED}
    else:
        points = {dated_from} | {s.at for s in stages}
    for ref in {s.invoice_ref for s in stages if s.invoice_ref}:
        points.update(invoices.get(ref, InvoiceDates()).breakpoints(zone))

    spans, open_span = [], None
    for point in sorted(points):
        state = _wip_state(kind, stages, point, dated_from, counted_stages, invoices, zone)
        if open_span and (state is None or state != open_span[1]):
            spans.append(Span(open_span[0], point, open_span[1]))
            open_span = None
        if state is not None and open_span is None:
            open_span = (point, state)
    if open_span:
        spans.append(Span(open_span[0], None, open_span[1]))
    return spans


def _wip_state(kind: str, stages: list[Stage], moment: dt.datetime, dated_from: dt.datetime,
               counted_stages: Collection[str], invoices: Mapping[str, "InvoiceDates"],
               zone: tzinfo | None) -> bool | None:
    """None when the item is not WIP at `moment`, else whether it is in billing."""
    if moment < dated_from:
        return None
    if kind != Kind.MILESTONE and status_at(stages, moment) not in counted_stages:
        return None
    ref = invoice_at(stages, moment)
    state = invoices.get(ref, InvoiceDates()).state_at(moment, zone) if ref else UNANNOUNCED
    if state == BILLED:
        return None
    return state == IN_BILLING
