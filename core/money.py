"""The one money formatter, used by every page's filters."""
from decimal import Decimal, InvalidOperation


def money(value: Decimal | int | float | str | None, places: int = 0) -> str:
    """'1234567.50' → '1,234,568' (or with `places` decimals); '—' when missing."""
    if value in (None, ""):
        return "—"
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)  # text that is not a number is shown as it is
    return f"{number:,.{int(places)}f}"


def money_in(value: Decimal | int | float | str | None, currency: str) -> str:
    """'771000.00', 'EUR' → '771,000 EUR': an amount never shown without its currency."""
    formatted = money(value)
    return formatted if formatted == "—" or not currency else f"{formatted}\u00a0{currency}"
