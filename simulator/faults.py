"""The faults of a real feed, planted on purpose, each named in `FirmSimulator.planted` and in
docs/simulator.md with what OpsView should show for it."""
import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .dates import Event, stamp

if TYPE_CHECKING:  # the firm imports this module
    from .firm import FirmSimulator


class Faults:
    def __init__(self, firm: "FirmSimulator") -> None:
        self.firm = firm

    def events(self) -> list[Event]:
        """The planted data problems: twin clients, placeholder projects, unreadable events."""
        return (self._duplicate_clients() + self._placeholder_projects()
                + self._unreadable_events())

    def _duplicate_clients(self) -> list[Event]:
        """One company as three CRM records linked transitively (the first two by normalized
        name, the second and third by tax id), the third arriving mid-span; and a second
        record of another company that the CRM later merges into its survivor."""
        firm = self.firm
        master = firm.start - dt.timedelta(days=30)
        middle = firm.start + (firm.end - firm.start) / 2
        acme, globex = firm.clients[0], firm.clients[1]
        twin = {"client_id": "CRM-0999", "name": "ACME Corporation", "tax_id": firm.spare_tax_id}
        third = {"client_id": "CRM-0998", "name": "Acme Holdings", "tax_id": firm.spare_tax_id}
        merged = {"client_id": "CRM-0997", "name": f"{globex['name']}, Inc."}
        firm.plant("duplicate_clients", acme["client_id"], twin["client_id"], third["client_id"])
        firm.plant("merged_client", merged["client_id"], globex["client_id"])
        return [firm.event("client.upserted", twin, master),
                firm.event("client.upserted", third, middle),
                firm.event("client.upserted", merged, master),
                firm.event("client.upserted", {**merged, "merged_into": globex["client_id"]},
                           firm.start + (firm.end - firm.start) / 3)]

    def _placeholder_projects(self) -> list[Event]:
        """Time booked on two projects the PSA has not got yet: the CRM's project sync fails
        once and the project arrives a day later; the other project never arrives."""
        firm, end = self.firm, self.firm.end
        person, client = firm.people[0], firm.clients[0]
        arriving = {"project_id": "PRJ-NEW-1", "client_id": client["client_id"],
                    "name": f"{client['name']} — Pilot", "practice": person["practice"],
                    "legal_entity": "US", "currency": "USD",
                    "billing_method": "time_and_materials", "status": "active",
                    "rate_card_id": "RC-US-1", "po_required": False}
        firm.plant("placeholder_project", "PRJ-NEW-1", "TE-ORPHAN-1")
        firm.plant("missing_project", "PRJ-NEW-2", "TE-ORPHAN-2")
        approved, arrived = end - dt.timedelta(days=2), end - dt.timedelta(days=1)

        def entry(entry_id: str, project_id: str, work_date: dt.date) -> dict[str, Any]:
            return {"time_entry_id": entry_id, "project_id": project_id,
                    "person_id": person["person_id"], "work_date": work_date.isoformat(),
                    "hours": "6.0", "billable": True}

        orphan = entry("TE-ORPHAN-1", "PRJ-NEW-1", approved.date() - dt.timedelta(days=1))
        lost = entry("TE-ORPHAN-2", "PRJ-NEW-2", end.date() - dt.timedelta(days=1))
        posted = arrived + dt.timedelta(hours=2)
        return [
            firm.event("time_entry.approved", orphan, approved, correlation="TE-ORPHAN-1"),
            firm.sync("crm-to-psa", "project", "PRJ-NEW-1", approved - dt.timedelta(hours=3),
                      error=("PSA-422", "PSA rejected the project: practice not mapped")),
            firm.event("project.upserted", arriving, arrived, correlation="PRJ-NEW-1"),
            firm.sync("crm-to-psa", "project", "PRJ-NEW-1", arrived, attempt=2),
            firm.event("time_entry.posted", {**orphan, "erp_document_id": "ERP-9000001"},
                       posted, correlation="TE-ORPHAN-1"),
            firm.sync("psa-to-erp", "time_entry", "TE-ORPHAN-1", posted),
            firm.event("time_entry.approved", lost, end - dt.timedelta(hours=20),
                       correlation="TE-ORPHAN-2"),
        ]

    def _unreadable_events(self) -> list[Event]:
        """An event of a type OpsView does not know, and two that break their schema."""
        firm, late = self.firm, self.firm.end - dt.timedelta(days=2)
        locked = firm.event("timesheet.locked", {"week": late.date().isoformat()}, late)
        firm.plant("unknown_type", locked["id"])
        firm.plant("invalid_events", "TE-BAD-1", "INV-BAD-1")
        return [
            locked,
            firm.event("time_entry.approved", {
                "time_entry_id": "TE-BAD-1", "project_id": firm.projects[0]["project_id"],
                "person_id": firm.people[0]["person_id"], "work_date": "2026-02-30",
                "hours": "eight", "billable": "yes"}, late),
            firm.event("invoice.blocked", {
                "invoice_id": "INV-BAD-1", "client_id": firm.clients[0]["client_id"],
                "amount": "1200.00", "currency": "usd", "blocked_reason": "missing_po"}, late),
        ]

    def share_an_id(self, master: list[Event], expenses: list[Event]) -> None:
        """The expense relay numbers its events on its own: one of its ids is one the PSA
        relay already used. Different CloudEvents sources, so both events count."""
        middle = self.firm.start + (self.firm.end - self.firm.start) / 2
        approval = next((e for e in expenses if e["type"] == "expense.approved"
                         and e["time"] >= stamp(middle)), None)
        upsert = next(e for e in master if e["type"] == "project.upserted")
        if approval:
            approval["id"] = upsert["id"]
            self.firm.plant("shared_event_id", upsert["id"])

    def conflicting_repeat(self, expenses: list[Event],
                           ) -> tuple[dt.datetime, Event] | tuple[None, None]:
        """(when, event): an expense posting the relay sends again two days later under the
        same id with another amount: a conflict, kept for inspection and without effect."""
        third = self.firm.start + (self.firm.end - self.firm.start) / 3
        posting = next((e for e in expenses if e["type"] == "expense.posted"
                        and e["time"] >= stamp(third)), None)
        if posting is None:
            return None, None
        self.firm.plant("conflicting_repeat", posting["id"])
        amount = str(Decimal(posting["data"]["amount"]) + 10)
        repeat = {**posting, "data": {**posting["data"], "amount": amount}}
        return dt.datetime.fromisoformat(posting["time"]) + dt.timedelta(days=2), repeat
