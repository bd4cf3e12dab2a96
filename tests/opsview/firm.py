"""A small, hand-worked firm, built by sending real events through the webhook.

The expected figures in tests/opsview/test_kpis.py are worked out by hand from this data:

projects  P1 Acme/Data/US/USD T&M, rate card          → billing set-up complete
          P2 Globex/Cloud/UK/GBP T&M, no rate card    → set-up incomplete
          P3 Acme/Data/US/USD milestone, PO required, no PO → set-up incomplete
          P4 Acme/Data/US/USD fixed fee 12,000: 3,000 recognized in each of Jan, Feb and
             Mar 2026; invoice I7 (3,000) issued 5 Feb, I8 (3,000) drafted 25 Mar
people    U1 Data cost 50 bill 100 cap 40; U2 Cloud cost 60 bill 120 cap 32;
          U3 Data cost 40 cap 40, inactive
billing   T4 is billed on I3 (issued 10 Mar) from 15 Mar; T2 was billed on I5 on 6 Mar and
          is back in WIP since I5 was voided on 7 Mar; T7 is in billing on I2 (blocked
          20 Mar); M2 names I9, an invoice that never arrives (unbilled, unknown reference)
"""
import datetime as dt

from ingestion.events import make_event

UTC = dt.UTC


def at(text):
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def project(pid, client, practice, entity, currency, method, **extra):
    return make_event("project.upserted", {
        "project_id": pid, "client_id": client, "name": f"Project {pid}", "practice": practice,
        "legal_entity": entity, "currency": currency, "billing_method": method,
        "status": "active", **extra}, time=at("2025-01-01T00:00:00"))


def person(pid, practice, cost, bill=None, capacity="40", active=True):
    data = {"person_id": pid, "name": f"Person {pid}", "practice": practice, "cost_rate": cost,
            "capacity_hours_per_week": capacity, "active": active}
    if bill:
        data["bill_rate"] = bill
    return make_event("person.upserted", data, time=at("2025-01-01T00:00:00"))


def entry(eid, project_id, person_id, work_date, hours, stages, billable=True, **extra):
    """One event per (stage, time) pair in `stages`."""
    return [make_event(f"time_entry.{stage}", {
        "time_entry_id": eid, "project_id": project_id, "person_id": person_id,
        "work_date": work_date, "hours": hours, "billable": billable, **extra},
        time=at(when)) for stage, when in stages]


def invoice(iid, client, amount, stages, currency="USD", **extra):
    return [make_event(f"invoice.{stage}", {"invoice_id": iid, "client_id": client,
                                            "amount": amount, "currency": currency, **extra},
                       time=at(when)) for stage, when in stages]


def firm_events():
    events = [
        make_event("client.upserted", {"client_id": "C1", "name": "Acme"}),
        make_event("client.upserted", {"client_id": "C2", "name": "Globex"}),
        project("P1", "C1", "Data", "US", "USD", "time_and_materials", rate_card_id="rc1"),
        project("P2", "C2", "Cloud", "UK", "GBP", "time_and_materials"),
        project("P3", "C1", "Data", "US", "USD", "milestone", rate_card_id="rc1",
                po_required=True),
        project("P4", "C1", "Data", "US", "USD", "fixed_fee", contract_value="12000.00"),
        person("U1", "Data", "50.00", "100.00"),
        person("U2", "Cloud", "60.00", "120.00", capacity="32"),
        person("U3", "Data", "40.00", active=False),
    ]
    events += entry("T1", "P1", "U1", "2026-03-30", "8.00",
                    [("approved", "2026-03-30T18:00:00"), ("posted", "2026-03-31T06:00:00")])
    events += entry("T2", "P1", "U1", "2026-02-15", "5.00",
                    [("approved", "2026-02-16T09:00:00")], bill_rate="150.00")
    events += entry("T2", "P1", "U1", "2026-02-15", "5.00",
                    [("invoiced", "2026-03-06T12:00:00")], bill_rate="150.00", invoice_id="I5")
    events += entry("T3", "P1", "U1", "2025-12-01", "2.00",
                    [("approved", "2025-12-02T09:00:00")])
    events += entry("T4", "P1", "U1", "2026-03-01", "4.00",
                    [("approved", "2026-03-02T10:00:00"), ("posted", "2026-03-02T12:00:00")])
    events += entry("T4", "P1", "U1", "2026-03-01", "4.00",
                    [("invoiced", "2026-03-15T12:00:00")], invoice_id="I3")
    events += entry("T5", "P1", "U1", "2026-03-02", "3.00",
                    [("approved", "2026-03-03T09:00:00"), ("rejected", "2026-03-03T10:00:00")])
    events += entry("T6", "P1", "U1", "2026-03-03", "6.00",
                    [("posted", "2026-03-04T09:00:00"), ("reversed", "2026-03-05T09:00:00")])
    events += entry("T7", "P2", "U2", "2026-03-10", "10.00",
                    [("approved", "2026-03-11T09:00:00"), ("posted", "2026-03-13T09:00:00")])
    events += entry("T7", "P2", "U2", "2026-03-10", "10.00",
                    [("invoiced", "2026-03-19T09:00:00")], invoice_id="I2")
    events += entry("T8", "P1", "U1", "2026-03-04", "7.00",
                    [("approved", "2026-03-05T09:00:00")], billable=False)
    events += entry("T9", "P9", "U1", "2026-03-05", "3.00",  # P9 never arrives: placeholder
                    [("approved", "2026-03-06T09:00:00")])
    events += entry("T10", "P1", "U1", "2026-04-02", "1.00",
                    [("approved", "2026-04-02T18:00:00")])
    events += entry("T11", "P1", "U1", "2026-03-20", "2.00",
                    [("submitted", "2026-03-20T18:00:00")])
    events += entry("T12", "P1", "U1", "2026-03-25", "1.50",
                    [("approved", "2026-03-26T09:00:00")])
    events += entry("T13", "P4", "U1", "2026-03-10", "4.00",  # chargeable, no value of its own
                    [("approved", "2026-03-10T18:00:00")])
    events += [
        make_event("expense.approved", {"expense_id": "E1", "project_id": "P1",
                                        "person_id": "U1", "incurred_on": "2026-01-20",
                                        "amount": "90.00", "currency": "USD", "billable": True},
                   time=at("2026-01-21T09:00:00")),
        make_event("expense.approved", {"expense_id": "E2", "project_id": "P1",
                                        "person_id": "U1", "incurred_on": "2026-03-15",
                                        "amount": "50.00", "currency": "USD", "billable": False},
                   time=at("2026-03-16T09:00:00")),
        *[make_event(f"expense.{stage}", {"expense_id": "E3", "project_id": "P1",
                                          "person_id": "U1", "incurred_on": "2026-03-05",
                                          "amount": "60.00", "currency": "USD",
                                          "billable": True}, time=at(when))
          for stage, when in (("approved", "2026-03-06T09:00:00"),
                              ("posted", "2026-03-07T09:00:00"))],
        make_event("milestone.completed", {"milestone_id": "M1", "project_id": "P3",
                                           "name": "Go-live", "amount": "5000.00",
                                           "completed_on": "2026-03-20"},
                   time=at("2026-03-20T16:00:00")),
        make_event("milestone.completed", {"milestone_id": "M2", "project_id": "P3",
                                           "name": "Design", "amount": "3000.00",
                                           "completed_on": "2026-02-01"},
                   time=at("2026-02-01T12:00:00")),
        make_event("milestone.invoiced", {"milestone_id": "M2", "project_id": "P3",
                                          "name": "Design", "amount": "3000.00",
                                          "invoice_id": "I9"}, time=at("2026-02-10T12:00:00")),
        make_event("revenue.recognized", {"project_id": "P1", "period": "2026-03",
                                          "amount": "900.00", "currency": "USD"},
                   time=at("2026-04-05T12:00:00")),
        make_event("revenue.recognized", {"project_id": "P2", "period": "2026-01",
                                          "amount": "111.00", "currency": "GBP"},
                   time=at("2026-02-05T12:00:00")),
        *[make_event("revenue.recognized", {"project_id": "P4", "period": period,
                                            "amount": "3000.00", "currency": "USD"},
                     time=at(when))
          for period, when in (("2026-01", "2026-02-03T12:00:00"),
                               ("2026-02", "2026-03-03T12:00:00"),
                               ("2026-03", "2026-04-03T12:00:00"))],
    ]
    events += invoice("I1", "C1", "700.00", [("blocked", "2026-03-20T09:00:00")],
                      project_id="P3", blocked_reason="missing_po")
    events += invoice("I2", "C2", "300.00", [("blocked", "2026-03-20T09:00:00")],
                      currency="GBP", project_id="P2", blocked_reason="rate_mismatch")
    events += invoice("I3", "C1", "1000.00", [("blocked", "2026-03-08T09:00:00"),
                                              ("issued", "2026-03-10T09:00:00")],
                      project_id="P1", blocked_reason="missing_po", issued_on="2026-03-10",
                      due_on="2026-04-09")
    events += invoice("I4", "C1", "500.00", [("issued", "2026-03-05T09:00:00"),
                                             ("paid", "2026-03-20T09:00:00")],
                      project_id="P3", issued_on="2026-03-05", paid_on="2026-03-20")
    events += invoice("I5", "C1", "400.00", [("issued", "2026-03-06T09:00:00"),
                                             ("voided", "2026-03-07T09:00:00")],
                      project_id="P1", issued_on="2026-03-06")
    events += invoice("I6", "C1", "2000.00", [("issued", "2025-11-01T09:00:00")],
                      project_id="P1", issued_on="2025-11-01")
    events += invoice("I7", "C1", "3000.00", [("drafted", "2026-02-03T09:00:00"),
                                              ("issued", "2026-02-05T09:00:00")],
                      project_id="P4", issued_on="2026-02-05")
    events += invoice("I8", "C1", "3000.00", [("drafted", "2026-03-25T09:00:00")],
                      project_id="P4")
    return events


def month_end_events():
    """Added on top of firm_events() for the month-end KPIs (reconciliation, period close,
    billing, reporting currency); the figures of firm_events() alone are left as they are.

    T20 (P1, 2 h, 200.00) approved 17 Mar and billed on I3 on the 18th, never posted;
    T21 (P1, 3 h, 300.00) posted, billed on I3 on the 20th and reversed on the 25th, I3
    still issued; T1 billed on I10 (drafted 8 Apr, issued 10 Apr for 720.00, a write-down of
    its 800.00, paid 30 Apr); E3 billed on I11 (drafted 3 Apr, issued 6 Apr, 60.00); T22 and
    T23 (April, 1 h each) posted on 2 Apr, T22 after a failed sync. Reports for March:
    time 8 / 3, expenses 2 / 2, invoices 1 / 1. Rates: 1 USD = 0.9 EUR (31 Mar; an earlier
    event said 0.88), 1 EUR = 0.85 GBP (30 Mar), 1 USD = 0.95 EUR (15 Apr).
    """
    events = []
    events += entry("T20", "P1", "U1", "2026-03-16", "2.00",
                    [("approved", "2026-03-17T09:00:00")])
    events += entry("T20", "P1", "U1", "2026-03-16", "2.00",
                    [("invoiced", "2026-03-18T09:00:00")], invoice_id="I3")
    events += entry("T21", "P1", "U1", "2026-03-18", "3.00",
                    [("approved", "2026-03-18T18:00:00"), ("posted", "2026-03-19T09:00:00"),
                     ("reversed", "2026-03-25T09:00:00")])
    events += entry("T21", "P1", "U1", "2026-03-18", "3.00",
                    [("invoiced", "2026-03-20T09:00:00")], invoice_id="I3")
    events += entry("T1", "P1", "U1", "2026-03-30", "8.00",
                    [("invoiced", "2026-04-08T10:00:00")], invoice_id="I10")
    events += invoice("I10", "C1", "720.00", [("drafted", "2026-04-08T09:00:00"),
                                              ("issued", "2026-04-10T09:00:00"),
                                              ("paid", "2026-04-30T09:00:00")],
                      project_id="P1", issued_on="2026-04-10", paid_on="2026-04-30")
    events.append(make_event("expense.invoiced", {
        "expense_id": "E3", "project_id": "P1", "person_id": "U1", "incurred_on": "2026-03-05",
        "amount": "60.00", "currency": "USD", "billable": True, "invoice_id": "I11"},
        time=at("2026-04-03T10:00:00")))
    events += invoice("I11", "C1", "60.00", [("drafted", "2026-04-03T09:00:00"),
                                             ("issued", "2026-04-06T09:00:00")],
                      project_id="P1", issued_on="2026-04-06")
    for eid, posted in (("T22", "2026-04-02T09:00:00"), ("T23", "2026-04-02T10:00:00")):
        events += entry(eid, "P1", "U1", "2026-04-01", "1.00",
                        [("approved", "2026-04-01T18:00:00"), ("posted", posted)])
    events += [sync("psa-to-erp", "T22", False, at("2026-04-02T08:00:00")),
               sync("psa-to-erp", "T22", True, at("2026-04-02T09:00:00"))]
    for flow, object_type, source, target in (("psa-to-erp", "time_entry", 8, 3),
                                              ("expenses-to-erp", "expense", 2, 2),
                                              ("erp-to-crm", "invoice", 1, 1)):
        events.append(make_event("reconciliation.reported", {
            "flow": flow, "object_type": object_type, "period_start": "2026-03-01",
            "period_end": "2026-03-31", "source_count": source, "target_count": target},
            time=at("2026-04-17T06:00:00")))
    events.append(reconciliation("psa-to-erp", "2026-02-01", "2026-02-28", 3, 3))
    for base, quote, rate, day, when in (("USD", "EUR", "0.88", "2026-03-31", "2026-03-31"),
                                         ("USD", "EUR", "0.9", "2026-03-31", "2026-04-01"),
                                         ("EUR", "GBP", "0.85", "2026-03-30", "2026-03-30"),
                                         ("USD", "EUR", "0.95", "2026-04-15", "2026-04-15")):
        events.append(make_event("fx_rate.published", {"base": base, "quote": quote,
                                                       "rate": rate, "date": day},
                                 time=at(f"{when}T17:00:00")))
    return events


def close_calendars():
    """The firm closes on its 3rd working day, Good Friday (3 Apr 2026) off; the UK on its
    4th, Easter Monday (6 Apr) off too; the US on its 2nd. March's cut-offs: the firm's
    Mon 6 Apr (1, 2, 6 April), the UK's Wed 8 Apr (1, 2, 7, 8), the US's Thu 2 Apr."""
    from opsview.models import CloseCalendar

    firm = CloseCalendar.objects.update_or_create(legal_entity="",
                                                  defaults={"cutoff_working_day": 3})[0]
    firm.holidays.create(date="2026-04-03", name="Good Friday")
    uk = CloseCalendar.objects.create(legal_entity="UK", cutoff_working_day=4)
    uk.holidays.create(date="2026-04-06", name="Easter Monday")
    CloseCalendar.objects.create(legal_entity="US", cutoff_working_day=2)


def sync(flow, object_id, ok, when, latency=None, **extra):
    data = {"flow": flow, "source_system": "psa", "target_system": "erp",
            "object_type": "time_entry", "object_id": object_id, "attempt": 1}
    if latency is not None:
        data["latency_ms"] = latency
    if not ok:
        data |= {"error_code": "E42", "error_message": "period closed", "retryable": True}
    return make_event("sync.succeeded" if ok else "sync.failed", {**data, **extra},
                      time=when)


def reconciliation(flow, start, end, source_count, target_count):
    return make_event("reconciliation.reported", {
        "flow": flow, "object_type": "time_entry", "period_start": start, "period_end": end,
        "source_count": source_count, "target_count": target_count})
