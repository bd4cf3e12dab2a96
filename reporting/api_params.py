"""The read API's query parameters, each declared once as a field of a ninja Schema.

A KPI's parameters are a Schema composed of the mixins below; the generated OpenAPI
document describes them, and their validators parse them. The validators raise the API's
own 400 problem document (reporting.api.bad_parameter) rather than a pydantic error, so
every rejection names the parameter in the words the API has always used. Pydantic checks
a model's fields in the reverse order of its bases, then its own fields: a KPI lists its
mixins from last-checked to first-checked, so that of two bad parameters the one reported
is the one the API has always reported (dates and periods, then choices, then the
reporting currency, then the filters).
"""
import datetime as dt
import enum
from typing import Any, ClassVar

from django.utils import timezone
from ninja import Field, Schema
from pydantic import PrivateAttr, ValidationInfo, field_validator, model_validator

from reporting import trends
from reporting.api import (
    FILTER_NAMES,
    bad_parameter,
    check_span,
    choice_param,
    currency_param,
    date_param,
    health_window,
    kpi_filters,
    period_param,
)


class GroupBy(enum.StrEnum):
    """How the margin KPI groups its rows."""

    project = "project"
    practice = "practice"
    client = "client"


class Interval(enum.StrEnum):
    """The length of one point of a trend."""

    week = trends.WEEK
    month = trends.MONTH


# Its members are trends.METRICS, which mypy cannot read off a comprehension.
TrendMetric = enum.Enum("TrendMetric", {name: name for name in trends.METRICS}, type=str)  # type: ignore[misc]
TrendMetric.__doc__ = "The figure a trend follows."


def optional(description: str, **schema: Any) -> Any:
    """A query parameter that may be left out: its validator supplies the default (which
    may depend on today or on another parameter, so the document states it in words)."""
    return Field(None, validate_default=True, description=description,
                 json_schema_extra=schema or None)


def left_out(**field: Any) -> Any:
    """A query parameter that reads None when left out, declared as its own type so the
    document says `string`, not `string or null` (the API never sends null)."""
    return Field(None, **field)


def _one(name: str | None, value: Any) -> dict:
    """The raw value as the API's parsers read it: a mapping of one parameter."""
    return {} if value is None else {name: value}


def end_date(value: Any) -> dt.date:
    """`end=`: the last day, inclusive; today by default."""
    return date_param(_one("end", value), "end", default=timezone.localdate())


class KpiParams(Schema):
    """The parameters of one KPI. `arguments()` is what its function is called with;
    `reported_on()` the day a reporting currency's rates are read for."""

    def arguments(self) -> dict:
        merged = {}
        for klass in reversed(type(self).__mro__):
            own = klass.__dict__.get("own_arguments")
            if own:
                merged.update(own(self))
        return merged

    def reported_on(self) -> dt.date:
        raise NotImplementedError


class Filters(KpiParams):
    """The record filters every KPI but integration health takes: checked last."""

    legal_entity: str = optional("Only records of this legal entity (its id).", maxLength=255)
    practice: str = optional("Only records of this practice (its id).", maxLength=255)
    client: str = optional("Only records of this client (its id).", maxLength=255)

    @field_validator(*FILTER_NAMES, mode="before")
    @classmethod
    def _filter(cls, value: Any, info: ValidationInfo) -> str:
        kpi_filters(_one(info.field_name, value))
        return value or ""

    def own_arguments(self) -> dict:
        return {"filters": {name: getattr(self, name) for name in FILTER_NAMES
                            if getattr(self, name)}}


class Currency(KpiParams):
    """`currency=`: a reporting currency for the KPI's headline amounts."""

    currency: str = left_out(
        description="A reporting currency (ISO 4217): adds `reporting`, the headline "
                    "amounts converted with published rates; a currency without a rate "
                    "is named in `unconverted`, never guessed.",
        json_schema_extra={"type": "string", "pattern": "^[A-Za-z]{3}$"})

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: Any) -> str | None:
        return currency_param(_one("currency", value))

    def own_arguments(self) -> dict:
        return {}


class AsOf(KpiParams):
    """`as_of=`: the day the figures are for."""

    as_of: dt.date = optional("The day the figures are for (default: today).")

    @field_validator("as_of", mode="before")
    @classmethod
    def _as_of(cls, value: Any) -> dt.date:
        return date_param(_one("as_of", value), "as_of", default=timezone.localdate())

    def own_arguments(self) -> dict:
        return {"as_of": self.as_of}

    def reported_on(self) -> dt.date:
        return self.as_of


PERIOD_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"


def _last_month() -> str:
    return (timezone.localdate().replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")


class Period(KpiParams):
    """`period=`: a billing month, this month by default."""

    period: str = optional("Billing period YYYY-MM (default: this month).",
                           pattern=PERIOD_PATTERN)

    @classmethod
    def default_period(cls) -> str:
        return timezone.localdate().strftime("%Y-%m")

    @field_validator("period", mode="before")
    @classmethod
    def _period(cls, value: Any) -> str:
        return period_param(_one("period", value), default=cls.default_period())[0]

    def own_arguments(self) -> dict:
        _, first_day, last_day = period_param({"period": self.period})
        return {"period": self.period, "first_day": first_day, "last_day": last_day}

    def reported_on(self) -> dt.date:
        return period_param({"period": self.period})[2]


class LastPeriod(Period):
    """`period=`: a billing month, last month by default (the one being closed)."""

    period: str = optional("Billing period YYYY-MM (default: last month).",
                           pattern=PERIOD_PATTERN)

    @classmethod
    def default_period(cls) -> str:
        return _last_month()


class Window(KpiParams):
    """`start=` and `end=` dates, inclusive; by default the last 30 days. `end` is read
    first: the default start counts back from it."""

    DEFAULT_DAYS: ClassVar[int] = 30
    end: dt.date = optional("Last day, inclusive (default: today).")
    start: dt.date = optional("First day, inclusive (default: 29 days before end).")

    _end = field_validator("end", mode="before")(end_date)

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: Any, info: ValidationInfo) -> dt.date:
        end = info.data["end"]
        start = date_param(_one("start", value), "start",
                           default=end - dt.timedelta(days=cls.DEFAULT_DAYS - 1))
        return check_span(start, end)

    def own_arguments(self) -> dict:
        return {"start": self.start, "end": self.end}

    def reported_on(self) -> dt.date:
        return self.end


class BillingWindow(Window):
    """A window of invoices' issue dates: the last 90 days by default."""

    DEFAULT_DAYS: ClassVar[int] = 90
    start: dt.date = optional("First issue date, inclusive (default: 89 days before end).")


class GroupByParam(KpiParams):
    """`group_by=` for the margin KPI."""

    group_by: GroupBy = optional("Grouping (default project).")

    @field_validator("group_by", mode="before")
    @classmethod
    def _group_by(cls, value: Any) -> str:
        return choice_param(_one("group_by", value), "group_by", [g.value for g in GroupBy],
                            default=GroupBy.project.value)

    def own_arguments(self) -> dict:
        return {"group_by": self.group_by.value}


class HealthWindow(KpiParams):
    """`window=24h` ending now (the default), or `start=`/`end=` dates (inclusive). The
    three are read together (reporting.api.health_window), once all are known."""

    window: str = left_out(
        description="A window ending now: 90m, 24h, 7d (default 24h). Not with "
                    "start/end.",
        json_schema_extra={"type": "string", "pattern": r"^\d{1,5}[mhd]$"})
    start: str = left_out(description="First day, inclusive (default: end).",
                          json_schema_extra={"type": "string", "format": "date"})
    end: str = left_out(description="Last day, inclusive (default: today).",
                        json_schema_extra={"type": "string", "format": "date"})
    _bounds: tuple[dt.datetime, dt.datetime] = PrivateAttr()

    @model_validator(mode="after")
    def _window(self) -> "HealthWindow":
        given = {name: getattr(self, name) for name in ("window", "start", "end")
                 if getattr(self, name) is not None}
        self._bounds = health_window(given)
        return self

    def own_arguments(self) -> dict:
        return {"start": self._bounds[0], "end": self._bounds[1]}


class TrendParams(KpiParams):
    """A trend's metric, interval and span, checked in that order."""

    metric: TrendMetric = Field(..., description="The figure.")
    interval: Interval = optional("week or month (default month); readiness_ratio: month "
                                  "only.")
    end: dt.date = optional("Last day, inclusive (default: today).")
    start: dt.date = optional("First day (default: the start of the 12th interval back).")

    @staticmethod
    def resolve_metric(params: dict) -> Any:
        # Required in the document, yet a missing metric is refused in the API's words
        # ("must be one of ..."): read as None, so its validator runs even then.
        return params.get("metric")

    @field_validator("metric", mode="before")
    @classmethod
    def _metric(cls, value: Any) -> str:
        return choice_param(_one("metric", value), "metric", list(trends.METRICS))

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, value: Any, info: ValidationInfo) -> str:
        interval = choice_param(_one("interval", value), "interval",
                                [trends.MONTH, trends.WEEK], default=trends.MONTH)
        metric = info.data.get("metric")
        metric = getattr(metric, "value", metric)
        if metric in trends.MONTH_ONLY and interval != trends.MONTH:
            raise bad_parameter("interval", f"{metric} is a monthly figure: must be month")
        return interval

    _end = field_validator("end", mode="before")(end_date)

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: Any, info: ValidationInfo) -> dt.date:
        end, interval = info.data["end"], info.data["interval"].value
        start = date_param(_one("start", value), "start",
                           default=trends.default_start(end, interval))
        if start > end:
            raise bad_parameter("start", "must not be after end")
        if len(trends.intervals(start, end, interval)) > trends.MAX_POINTS:
            raise bad_parameter("start", f"at most {trends.MAX_POINTS} intervals")
        return start

    def own_arguments(self) -> dict:
        return {"metric": self.metric.value, "interval": self.interval.value,
                "start": self.start, "end": self.end}


# The parameters of each KPI: its own, then (where it has headline amounts) the reporting
# currency, then the filters; the bases are listed in the reverse order.
class WipParams(Filters, Currency, AsOf):
    pass


class ReadinessParams(Filters, Currency, Period):
    pass


class WindowParams(Filters, Window):
    pass


class ReportedWindowParams(Filters, Currency, Window):
    pass


class HealthParams(HealthWindow):
    pass


class MarginParams(Filters, Currency, GroupByParam, Window):
    pass


class ReceivablesParams(Filters, Currency, AsOf):
    pass


class BillingParams(Filters, Currency, BillingWindow):
    pass


class ReconciliationParams(Filters, LastPeriod):
    pass


class PeriodCloseParams(Filters, Currency, LastPeriod):
    pass


class TrendsParams(Filters, TrendParams):
    pass


class FilterParams(Filters):
    pass
