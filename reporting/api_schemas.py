"""The vocabulary of the API's answers (money, ratios, a mapping by currency), the problem
document and the case resources' answers, as ninja Schemas; the KPIs' answers are declared
beside the KPIs (reporting.catalog). The generated OpenAPI document describes each answer
from these, and the contract tests (tests/test_openapi.py) hold every answer to them.

They describe, they do not shape: an endpoint answers its KPI function's dict as it is,
so every model allows more keys than it names (the contract says a client must accept
them), and a key is named where a client relies on its type.
"""
import datetime as dt
from typing import Annotated, Any, TypeVar

from ninja import Field, Schema
from pydantic import ConfigDict

from exceptions import models as cases

Money = Annotated[str, Field(pattern=r"^-?\d+\.\d{2}$", description="Decimal, two places")]
Ratio = Annotated[float | None, Field(description="null where the denominator is 0")]
Seconds = Annotated[float | None, Field(description="Seconds")]
Instant = dt.datetime | None
Month = Annotated[str, Field(pattern=r"^\d{4}-\d{2}$")]


class Answer(Schema):
    """An object with these keys at least."""

    model_config = ConfigDict(extra="allow")


_Value = TypeVar("_Value")
# A mapping keyed by ISO 4217 currency code: ByCurrency[WipCurrency].
ByCurrency = Annotated[dict[str, _Value], Field(description="Keyed by ISO 4217 currency code")]


class Problem(Schema):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[str]


class CaseObject(Answer):
    kind: Any
    id: Any


class CaseSla(Answer):
    state: Any
    breached: Any
    response_due_at: Any
    resolution_due_at: Any
    acknowledged_at: Any


class Case(Answer):
    """A case as the API shows it."""

    id: int
    type: cases.CaseType
    fingerprint: Any
    title: Any
    status: cases.Case.Status
    severity: cases.Severity
    queue: Any
    owner: str | None
    money_at_stake: Money | None
    currency: Any
    object: Any
    began_at: Instant
    opened_at: Instant
    first_seen_at: Any
    last_seen_at: Any
    times_seen: Any
    sla: CaseSla
    resolved_at: Any
    resolution_code: Any


class CaseList(Answer):
    count: int
    page: int
    page_size: int
    pages: int
    results: list[Case]


class CaseEntry(Answer):
    at: dt.datetime
    actor: str
    action: str
    field: Any
    from_: Any = Field(alias="from")
    to: Any
    comment: Any


class CaseAction(Answer):
    case: Case
    entries: list[CaseEntry]
