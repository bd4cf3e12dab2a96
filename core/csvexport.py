"""The one CSV writer of every export: dashboard panels, the case list and the read API's
exceptions.csv.

A cell a spreadsheet would run as a formula is made text by a leading apostrophe (OWASP's
advice for CSV injection): one starting with = + - @, or with a tab, carriage return, line
feed, space or pipe, which some spreadsheets skip or treat as a command before a formula.
A number stays a number, whether it arrives as a number or as a decimal string such as
"-12.50" (the KPIs' money), and an empty cell stays empty.
"""
import csv
import re
from collections.abc import Iterable, Iterator
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", " ", "|")
PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def spreadsheet_safe(value: Any) -> Any:
    """The cell as written: text that could start a formula gets a leading apostrophe."""
    if (isinstance(value, str) and value.startswith(FORMULA_STARTS)
            and not PLAIN_NUMBER.fullmatch(value)):
        return "'" + value
    return value


def csv_response(filename: str, columns: Iterable[Any], rows: Iterable[Iterable[Any]],
                 ) -> HttpResponse:
    """An attachment `filename` with a header row and `rows` (iterables of cells)."""
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow([spreadsheet_safe(column) for column in columns])
    writer.writerows([spreadsheet_safe(cell) for cell in row] for row in rows)
    return response


class _Line:
    """A file-like object whose write() hands back the line: the csv module formats each
    row, the response sends it at once."""

    def write(self, value: str) -> str:
        """The line the csv writer made, handed back instead of written."""
        return value


def csv_stream(filename: str, columns: Iterable[Any], rows: Iterable[Iterable[Any]],
               ) -> StreamingHttpResponse:
    """Like csv_response, row by row as `rows` yields them: an export of any length is
    never held whole in memory as text."""
    writer = csv.writer(_Line())

    def lines() -> Iterator[str]:
        yield writer.writerow([spreadsheet_safe(column) for column in columns])
        for row in rows:
            yield writer.writerow([spreadsheet_safe(cell) for cell in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
