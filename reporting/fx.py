"""Reporting currency (SPEC section 4): a money KPI asked with `currency=XXX` adds a
`reporting` block that converts its headline amounts into XXX with published rates.

Nothing is converted unless asked, and nothing is guessed: each currency takes the latest
`fx_rate.published` dated on or before the figure's date, direct (base = the currency,
quote = XXX) or inverted (base = XXX, quote = the currency; the same date prefers the
direct one); a currency without one is left out of the total and named in `unconverted`.
Each amount is converted unrounded; only the total is rounded, to two places.
"""
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Q

from opsview import models as state

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Rate:
    """A published rate: 1 `base` = `rate` `quote` on `date`."""

    base: str
    quote: str
    rate: Decimal
    date: dt.date

    def factor(self, currency: str, target: str) -> Decimal:
        """What one unit of `currency` is worth in `target` by this rate."""
        if (self.base, self.quote) == (currency, target):
            return self.rate
        if (self.base, self.quote) == (target, currency):
            return Decimal(1) / self.rate
        raise ValueError(f"{self} does not convert {currency} into {target}")

    def as_dict(self) -> dict[str, str]:
        """The rate as the reporting block lists it."""
        return {"base": self.base, "quote": self.quote, "rate": f"{self.rate.normalize():f}",
                "date": self.date.isoformat()}


def choose(candidates: Iterable[Rate], currency: str, target: str, on: dt.date) -> Rate | None:
    """The rate to use for `currency` → `target` on a date, from published rates: the
    latest dated on or before it, direct or inverted; on the same date the direct one."""
    usable = [r for r in candidates if r.date <= on and {r.base, r.quote} == {currency, target}]
    if not usable:
        return None
    return max(usable, key=lambda r: (r.date, r.base == currency))


def convert(amounts: Mapping[str, Decimal | str], target: str,
            rates: Mapping[str, Rate | None]) -> dict[str, Any]:
    """The reporting block for {currency: amount} in `target`, with `rates`
    {currency: Rate or None} (a currency equal to the target needs none)."""
    total, used, unconverted = Decimal(0), {}, []
    for currency, amount in sorted(amounts.items()):
        if currency == target:
            total += Decimal(amount)
            continue
        rate = rates.get(currency)
        if rate is None:
            unconverted.append(currency)
            continue
        total += Decimal(amount) * rate.factor(currency, target)
        used[(rate.base, rate.quote, rate.date)] = rate
    return {"currency": target, "total": str(total.quantize(CENT)),
            "rates": [used[key].as_dict() for key in sorted(used)],
            "unconverted": unconverted}


def published_rates(currencies: Iterable[str], target: str, on: dt.date,
                    ) -> dict[str, Rate | None]:
    """{currency: Rate or None}: the rate each currency takes into `target` on a date."""
    others = sorted(set(currencies) - {target})
    if not others:
        return {}
    pairs = Q(base__in=others, quote=target) | Q(base=target, quote__in=others)
    latest: dict[str, list[Rate]] = {}
    # The two latest dates per pair are enough to pick; read newest first and stop early.
    for base, quote, rate, date in (state.FxRate.objects.filter(pairs, date__lte=on)
                                    .order_by("-date").values_list("base", "quote", "rate",
                                                                   "date").iterator()):
        currency = base if quote == target else quote
        latest.setdefault(currency, []).append(Rate(base, quote, rate, date))
        if all(c in latest and latest[c][-1].date < latest[c][0].date for c in others):
            break
    return {c: choose(latest.get(c, []), c, target, on) for c in others}


def reporting(amounts: Mapping[str, Decimal | str], target: str, on: dt.date,
              ) -> dict[str, Any]:
    """The reporting block of {currency: amount} converted into `target` as of `on`."""
    amounts = {c: Decimal(v) for c, v in amounts.items() if c}
    return convert(amounts, target, published_rates(amounts, target, on))
