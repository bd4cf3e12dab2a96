"""The master-data family: clients that look like one another."""
import datetime as dt
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from opsview import models as state

from ..models import CaseType, Severity
from .engine import Finding
from .registry import rule

SUFFIXES = re.compile(r"\b(inc|incorporated|corp|corporation|co|company|ltd|limited|llc|plc|"
                      r"gmbh|ag|sa|bv)\b")


def normalize_name(name: str) -> str:
    """'ACME Corporation, Inc.' and 'Acme Corp' both become 'acme'."""
    cleaned = re.sub(r"[^a-z0-9 ]", " ", name.lower())
    return " ".join(SUFFIXES.sub(" ", cleaned).split())


def client_groups(clients: Sequence[Mapping[str, Any]]) -> list[set[str]]:
    """Clients linked by a shared normalized name or tax id, transitively: a list of sets
    of client ids (union–find over the links)."""
    parent = {c["client_id"]: c["client_id"] for c in clients}

    def root(client_id: str) -> str:
        while parent[client_id] != client_id:
            parent[client_id] = parent[parent[client_id]]
            client_id = parent[client_id]
        return client_id

    first_by_link: dict[str, str] = {}
    for c in clients:
        links = []
        if c["name"] and normalize_name(c["name"]):
            links.append(f"name:{normalize_name(c['name'])}")
        if c["tax_id"]:
            links.append(f"tax:{c['tax_id'].strip().upper()}")
        for link in links:
            other = first_by_link.setdefault(link, c["client_id"])
            parent[root(c["client_id"])] = root(other)
    groups = defaultdict(set)
    for client_id in parent:
        groups[root(client_id)].add(client_id)
    return [ids for ids in groups.values() if len(ids) > 1]


@rule(CaseType.DUPLICATE_CLIENT, "Duplicate client", queue="finance-ops", severity=Severity.LOW,
      wakes_on=("opsview.Client",), counts=False, batch_order=60)
def duplicate_client() -> list[Finding]:
    """One case per group of linked clients with at least two clients neither merged away
    nor marked distinct. Its fingerprint is the group's first client by receipt; it began
    when its second such client arrived."""
    clients = {c["client_id"]: c for c in state.Client.objects.filter(is_placeholder=False)
               .values("client_id", "name", "tax_id", "merged_into", "marked_distinct",
                       "first_received_at")}
    findings = []
    far_future = dt.datetime.max.replace(tzinfo=dt.UTC)
    for ids in client_groups(list(clients.values())):
        by_receipt = sorted(ids, key=lambda i: (clients[i]["first_received_at"] or far_future,
                                                i))
        counted = [i for i in by_receipt
                   if not clients[i]["merged_into"] and not clients[i]["marked_distinct"]]
        if len(counted) < 2:
            continue
        first = by_receipt[0]
        findings.append(Finding(
            fingerprint=f"group:{first}", object_kind="client", object_id=first,
            title="Possible duplicate clients: " + ", ".join(
                clients[i]["name"] or i for i in counted),
            client_id=first, began_at=clients[counted[1]]["first_received_at"],
            detail={"client_ids": by_receipt, "counted": counted}))
    return findings
