"""The event catalog: each declaration is complete and agrees with the state it merges into,
and what is derived from it (contracts, dispatch, ranks, schemas) keeps its published form."""
from pathlib import Path

import pytest
from django.test import Client as HttpClient

from ingestion import catalog
from ingestion.catalog import CATALOG, CONTRACTS, EVENT_TYPES, TARGETS, Merge
from opsview.lifecycle import LifecycleStage

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"

# The published type strings: each is part of a schema URL senders use.
PUBLISHED = [
    "assignment.upserted", "client.upserted", "expense.approved", "expense.invoiced",
    "expense.posted", "fx_rate.published", "invoice.blocked", "invoice.drafted",
    "invoice.issued", "invoice.paid", "invoice.voided", "milestone.completed",
    "milestone.invoiced", "person.upserted", "project.upserted", "reconciliation.reported",
    "revenue.recognized", "sync.failed", "sync.succeeded", "time_entry.approved",
    "time_entry.invoiced", "time_entry.posted", "time_entry.rejected", "time_entry.reversed",
    "time_entry.submitted",
]


def test_every_type_is_declared_once_and_the_published_ones_are_all_there():
    assert len(EVENT_TYPES) == len(CATALOG)
    assert sorted(CONTRACTS) == PUBLISHED


def test_every_type_goes_to_a_target_that_is_applied():
    names = [target.name for target in TARGETS]
    assert len(set(names)) == len(names)
    for declared in CATALOG:
        assert declared.target in TARGETS, declared.type
        assert declared.type.split(".")[0] == declared.target.name


@pytest.mark.parametrize("target", [t for t in TARGETS if t.merge == Merge.LIFECYCLE],
                         ids=lambda t: t.name)
def test_a_lifecycle_declares_every_stage_of_its_model_once(target):
    declared = [d.stage for d in CATALOG if d.target is target]
    assert all(isinstance(stage, LifecycleStage) for stage in declared)
    assert sorted(declared) == sorted(target.model.Stage)
    # The ranks the model exposes are the declared stages' ranks.
    assert {d.stage.value: d.rank for d in CATALOG if d.target is target} == target.model.RANKS


def test_outside_a_lifecycle_there_is_no_stage_or_rank():
    for declared in CATALOG:
        if declared.target.merge != Merge.LIFECYCLE:
            assert (declared.stage, declared.rank) == (None, None), declared.type


def test_the_fields_an_event_dates_and_the_keys_exist_on_its_model():
    for declared in CATALOG:
        fields = {f.name for f in declared.target.model._meta.get_fields()}
        assert set(declared.dated_by) <= fields, declared.type
        assert set(declared.target.key) <= fields, declared.target.name


def test_a_lifecycle_event_dates_the_field_of_its_stage():
    time_approved = EVENT_TYPES["time_entry.approved"]
    assert time_approved.dated_by == ("approved_at",)
    assert (time_approved.stage.rank, EVENT_TYPES["invoice.blocked"].rank) == (2, 2)


def test_an_unknown_type_has_no_declaration():
    with pytest.raises(KeyError):
        catalog.validate_data("time_entry.teleported", {})


@pytest.mark.django_db
def test_the_schema_urls_serve_each_declared_type():
    http = HttpClient()
    listing = http.get("/ingest/schemas/").json()
    assert [entry["type"] for entry in listing["types"]] == PUBLISHED
    schema = http.get("/ingest/schemas/invoice.blocked.json").json()
    assert schema["$id"] == "/ingest/schemas/invoice.blocked.json"
    assert "blocked_reason" in schema["required"]


def test_the_docs_list_every_declared_type():
    text = DOCS.read_text()
    missing = [t for t in CONTRACTS if f"| `{t}` |" not in text]
    assert missing == []


def _run_time_nodes(tree):
    """Every node but those under `if TYPE_CHECKING:` (imports for annotations only)."""
    import ast

    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _ingestion_imports():
    """{module: {ingestion modules it imports at run time, function-local imports too}}."""
    import ast

    package = Path(catalog.__file__).parent
    graph = {}
    for path in package.glob("*.py"):
        found = set()
        for node in _run_time_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    names = [node.module] if node.module else [a.name for a in node.names]
                elif node.module and node.module.startswith("ingestion"):
                    rest = node.module.removeprefix("ingestion").lstrip(".")
                    names = [rest] if rest else [a.name for a in node.names]
                else:
                    continue
                found |= {name.split(".")[0] for name in names}
        graph[path.stem] = found & {p.stem for p in package.glob("*.py")}
    return graph


def test_the_modules_of_ingestion_import_one_another_without_a_circle():
    graph = _ingestion_imports()
    assert "tasks" in graph["intake"] and "intake" not in graph["pipeline"]

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n)))
                   for n in graph.get(start, ()))

    assert [module for module in graph if reaches(module, module)] == []
