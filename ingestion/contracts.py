"""Event contracts: the CloudEvents envelope and one pydantic model per event type.

Money and hours arrive as strings or JSON numbers and become Decimals; a JSON number is
read through its shortest repr, so "7.50" and 7.5 both give Decimal("7.5"), never a binary
float. Which type string each contract validates is declared in `ingestion.catalog`, and
the JSON Schemas served at /ingest/schemas/ are generated from these models there.
"""
import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Annotated, Any, Literal

from django.db import models
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from opsview.models import Invoice, Project


def _one_of(choices: type[models.TextChoices]) -> Any:
    """A Literal of a model's choices, in their order: the contract accepts what the state
    stores, written down once, on the model."""
    return Literal[tuple(choices.values)]


def _decimal_from_json(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a decimal string or number, not a boolean")
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, (int, str)):
        try:
            parsed = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
        if not parsed.is_finite():
            raise ValueError("must be a finite number")
        return parsed
    return value


def _decimal(max_digits: int, minimum: int | None = None) -> Any:
    schema: dict[str, Any] = {"anyOf": [{"type": "string", "pattern": r"^-?\d+(\.\d{1,2})?$"},
                                        {"type": "number"}]}
    if minimum is not None:
        schema["minimum"] = minimum
    return Annotated[
        Decimal,
        BeforeValidator(_decimal_from_json),
        Field(max_digits=max_digits, decimal_places=2, ge=minimum),
        WithJsonSchema(schema),
    ]


if TYPE_CHECKING:
    # Built at import time (digit limits, the models' choices), which a static checker does
    # not evaluate: it sees the Python type each one validates to.
    Money = Decimal
    SignedMoney = Decimal
    Rate = Decimal
    Hours = Decimal
    BudgetHours = Decimal
    WeeklyHours = Decimal
    BillingMethod = str
    ProjectStatus = str
    BlockedReason = str
else:
    Money = _decimal(14, minimum=0)
    SignedMoney = _decimal(14)
    Rate = _decimal(12, minimum=0)
    Hours = _decimal(8, minimum=0)
    BudgetHours = _decimal(12, minimum=0)
    WeeklyHours = _decimal(6, minimum=0)
    BillingMethod = _one_of(Project.BillingMethod)
    ProjectStatus = _one_of(Project.Status)
    BlockedReason = _one_of(Invoice.BlockedReason)
Id = Annotated[str, Field(min_length=1, max_length=255)]
Text = Annotated[str, Field(max_length=255)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]


# The seconds of a leap second (23:59:60), which RFC 3339 allows and Python refuses.
_LEAP_SECOND = re.compile(r"(T\d{2}:\d{2}:)60(?=\D|$)")


def _parse_rfc3339(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str) and "T" in value.upper():
        # RFC 3339 (section 5.6) allows "t" and "z" in lower case; Python wants "T" and "Z".
        text = value.strip().upper()
        leap = _LEAP_SECOND.search(text)
        try:
            parsed = dt.datetime.fromisoformat(_LEAP_SECOND.sub(r"\g<1>59", text))
        except ValueError:
            raise ValueError(f"{value!r} is not an RFC 3339 timestamp") from None
        if leap:  # the leap second is the instant after :59
            parsed += dt.timedelta(seconds=1)
    else:
        raise ValueError("must be an RFC 3339 timestamp string such as 2026-01-31T17:00:00Z")
    if parsed.tzinfo is None:
        raise ValueError("must include a UTC offset (Z or +hh:mm)")
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("is out of the supported range of years 1–9999") from None


Timestamp = Annotated[
    dt.datetime,
    BeforeValidator(_parse_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def _strict_date(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    raise ValueError("must be a date string YYYY-MM-DD")


Date = Annotated[dt.date, BeforeValidator(_strict_date),
                 WithJsonSchema({"type": "string", "format": "date"})]


class Contract(BaseModel):
    # Fields a sender adds beyond the contract are ignored, so senders can evolve first.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Envelope(Contract):
    """The CloudEvents 1.0 attributes OpsView requires."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: Id
    source: Annotated[str, Field(min_length=1, max_length=500)]
    type: Annotated[str, Field(min_length=1, max_length=255)]
    time: Timestamp
    subject: Annotated[str, Field(max_length=500)] | None = None
    correlationid: Id | None = None
    data: Any = None


# --- Master data ---------------------------------------------------------------------------
class ClientUpserted(Contract):
    client_id: Id
    name: Text
    tax_id: Annotated[str, Field(max_length=64)] | None = None
    currency: Currency | None = None
    merged_into: Id | None = None  # the client_id that replaces this one after a merge


class ProjectUpserted(Contract):
    project_id: Id
    client_id: Id
    name: Text
    practice: Text
    legal_entity: Text
    currency: Currency
    billing_method: BillingMethod
    status: ProjectStatus
    rate_card_id: Text | None = None
    po_required: StrictBool = False
    po_number: Text | None = None
    contract_value: Money | None = None
    budget_hours: BudgetHours | None = None


class PersonUpserted(Contract):
    person_id: Id
    name: Text
    practice: Text
    cost_rate: Rate
    bill_rate: Rate | None = None
    capacity_hours_per_week: WeeklyHours = Decimal("40")
    active: StrictBool = True


class AssignmentUpserted(Contract):
    assignment_id: Id
    project_id: Id
    person_id: Id
    start_date: Date
    end_date: Date | None = None
    hours_per_week: WeeklyHours
    bill_rate: Rate | None = None


# --- Transactions --------------------------------------------------------------------------
class TimeEntryEvent(Contract):
    time_entry_id: Id
    project_id: Id
    person_id: Id
    work_date: Date
    hours: Hours
    billable: StrictBool
    bill_rate: Rate | None = None
    cost_rate: Rate | None = None
    erp_document_id: Id | None = None
    invoice_id: Id | None = None


class TimeEntryInvoiced(TimeEntryEvent):
    invoice_id: Id  # the invoice that bills it (SPEC section 2, "What an invoice bills")


class ExpenseEvent(Contract):
    expense_id: Id
    project_id: Id
    person_id: Id
    incurred_on: Date
    amount: Money
    currency: Currency
    billable: StrictBool
    invoice_id: Id | None = None


class ExpenseInvoiced(ExpenseEvent):
    invoice_id: Id


class MilestoneEvent(Contract):
    milestone_id: Id
    project_id: Id
    name: Text
    amount: Money
    completed_on: Date | None = None
    invoice_id: Id | None = None


class MilestoneCompleted(MilestoneEvent):
    completed_on: Date


class MilestoneInvoiced(MilestoneEvent):
    invoice_id: Id


class InvoiceEvent(Contract):
    invoice_id: Id
    client_id: Id
    project_id: Id | None = None
    amount: SignedMoney
    currency: Currency
    issued_on: Date | None = None
    due_on: Date | None = None
    paid_on: Date | None = None
    blocked_reason: BlockedReason | None = None
    detail: Annotated[str, Field(max_length=5000)] | None = None


class InvoiceBlocked(InvoiceEvent):
    blocked_reason: BlockedReason


class RevenueRecognized(Contract):
    project_id: Id
    period: Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")]
    amount: SignedMoney
    currency: Currency


# --- Reference data --------------------------------------------------------------------------
class FxRatePublished(Contract):
    """1 `base` = `rate` `quote` on `date`."""

    base: Currency
    quote: Currency
    rate: Annotated[
        Decimal, BeforeValidator(_decimal_from_json),
        Field(gt=0, max_digits=24, decimal_places=10),
        WithJsonSchema({"anyOf": [{"type": "string", "pattern": r"^\d+(\.\d{1,10})?$"},
                                  {"type": "number", "exclusiveMinimum": 0}],
                        "description": "1 base = rate quote; positive, up to 10 decimals"})]
    date: Date

    @model_validator(mode="after")
    def _two_currencies(self):
        if self.base == self.quote:
            raise ValueError("base and quote must be different currencies")
        return self


# --- Integration telemetry -----------------------------------------------------------------
class SyncSucceeded(Contract):
    flow: Id
    source_system: Text
    target_system: Text
    object_type: Text
    object_id: Id
    latency_ms: Annotated[int, Field(ge=0, le=2_000_000_000)] | None = None
    attempt: Annotated[int, Field(ge=0, le=1_000_000)] | None = None


class SyncFailed(SyncSucceeded):
    error_code: Text
    error_message: Annotated[str, Field(max_length=5000)]
    retryable: StrictBool


class ReconciliationReported(Contract):
    flow: Id
    object_type: Text
    period_start: Date
    period_end: Date
    source_count: Annotated[int, Field(ge=0, le=2_147_483_647)]
    target_count: Annotated[int, Field(ge=0, le=2_147_483_647)]
    source_amount: SignedMoney | None = None
    target_amount: SignedMoney | None = None


def error_messages(exc: ValidationError, prefix: str = "") -> list[str]:
    """Readable `field: message` strings from a pydantic error."""
    messages = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"]) or "(root)"
        messages.append(f"{prefix}{location}: {error['msg']}")
    return messages
