"""CSV exports (dashboard panels, the case list, the read API's exceptions.csv): one writer,
no cell a spreadsheet would run as a formula, numbers left numbers, empty cells empty."""
import csv
import io
from decimal import Decimal

import pytest

from exceptions.models import Case

DANGEROUS = ["=1+2", "+1+2", "-1+2", "@SUM(A1)", "\t=cmd", "\r=cmd", "\n=cmd", " =1+2",
             "|calc", "-", "=HYPERLINK(\"x\")"]
KEPT = ["", "Acme", "-12.50", "12.50", "-3", "0", "a=b", "2026-03-01"]


def rows_of(response):
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.getvalue().decode())))


@pytest.fixture
def hostile_panel(monkeypatch):
    """A panel whose table holds every kind of cell."""
    from reporting import views

    table = {"columns": ["Cell"],
             "rows": [[value] for value in DANGEROUS + KEPT]
             + [[Decimal("-7.25")], [None], [-4], [1.5]]}
    monkeypatch.setitem(views.PANELS, "receivables", lambda f: {"table": table})


def test_a_panel_export_neutralises_formulas_and_keeps_numbers(client, logged_in, hostile_panel):
    logged_in("executive")
    cells = [row[0] for row in rows_of(client.get("/panels/receivables/?format=csv"))[1:]]
    written = dict(zip(DANGEROUS + KEPT, cells, strict=False))  # the extra rows follow
    for value in DANGEROUS:
        assert written[value] == "'" + value, value
    for value in KEPT:
        assert written[value] == value, value
    assert cells[-4:] == ["-7.25", "", "-4", "1.5"]


@pytest.mark.parametrize("url", ["/exceptions/export.csv", "/api/v1/exceptions.csv"])
def test_the_case_exports_use_the_same_writer(client, logged_in, case, url):
    Case.objects.filter(pk=case.pk).update(title="\t=HYPERLINK(\"http://x\")", currency="",
                                           money_at_stake=Decimal("-5.00"))
    logged_in("executive")
    header, row = rows_of(client.get(url))
    cell = dict(zip(header, row, strict=True))
    assert cell["title"] == "'\t=HYPERLINK(\"http://x\")"
    assert cell["money_at_stake"] == "-5.00"  # a number, not text
    assert cell["currency"] == "" and cell["owner"] == ""  # empty, not a lone quote


def test_one_cell_rule_for_every_export():
    from core.csvexport import spreadsheet_safe

    for value in DANGEROUS:
        assert spreadsheet_safe(value) == "'" + value
    for value in KEPT + [None, Decimal("-1.10"), -3, 2.5, True]:
        assert spreadsheet_safe(value) == value
