"""The registry of exception rules: each rule declared once, beside its finder.

A declaration carries everything the rest of the app needs to know of a case type: its code
(a `CaseType` value) and label, its finder, when it runs (time-based always; event-driven
when a processed batch can have changed it), its defaults (queue, severity, parameters),
the kind of object whose period billing it blocks, and how its cases group on the triage
list. The dispatch of both evaluations, `BLOCKING`, the defaults of a rule nobody configured
and the case-type labels are derived from here.

This module imports nothing of the app: labels and groups read it without cycles.
"""
import datetime as dt
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Between the parts of a group key (the case type first), as in multi-part fingerprints.
SEPARATOR = "|"


@dataclass(frozen=True)
class Grouping:
    """How a type's cases group on the triage list (exceptions.groups): alike when their
    key parts are equal."""

    parts: Callable[[dict], list[str]]  # the values row → the parts after the type
    members: Callable[[list[str]], Any]  # the parts → a Q selecting the cases of the group
    label: Callable[[list[str]], str]  # the parts → words
    arity: int = 2  # how many parts follow the type


@dataclass(frozen=True)
class Run:
    """One reconciliation a processed batch asks for: `find()` under the type's lock, the
    open cases it may change (`scope`, a Q on Case; None: all of the type), and whether a
    finding is an occurrence (`count`: times seen goes up)."""

    find: Callable[[], list]
    scope: Any = None
    count: bool = True


# The batch (an ingestion.pipeline.BatchChanges) and the moment → the runs it asks for.
BatchTrigger = Callable[[Any, dt.datetime], Iterable[Run]]


@dataclass(frozen=True)
class Rule:
    """One exception rule. `find` takes `now` when its condition depends on the moment."""

    code: str
    label: str
    find: Callable[..., list]
    queue: str  # the default queue's slug
    severity: str = "medium"
    # Default parameters; a callable is read when used (e.g. a setting from the environment).
    parameters: Mapping[str, Any] = field(default_factory=dict)
    # Event-driven: the touched model labels that wake the whole finder, and whether its
    # findings then count as occurrences; or a trigger of its own for finer scopes.
    wakes_on: tuple[str, ...] = ()
    counts: bool = True
    on_batch: BatchTrigger | None = None
    # Where it runs after a batch, lowest first (then in declaration order): rules that open
    # cases on what arrived come before the stale-feed check, which the arrival itself clears.
    # Case ids follow this order, so it stays as it was when the rules were one module.
    batch_order: int = 50
    # The kind of object ("project", "invoice", "milestone") whose period's billing a case
    # blocks: such cases are due by that period's cut-off (SPEC section 7).
    blocks: str = ""
    grouping: Grouping | None = None  # None: its cases group by type alone

    def find_at(self, now: dt.datetime) -> list:
        """The findings over the whole state at `now`."""
        if "now" in inspect.signature(self.find).parameters:
            return self.find(now)
        return self.find()

    def runs(self, changes: Any, now: dt.datetime) -> list[Run]:
        """The reconciliations the processed batch `changes` asks of this rule."""
        if self.on_batch is not None:
            return list(self.on_batch(changes, now))
        if any(changes.touched.get(label) for label in self.wakes_on):
            return [Run(lambda: self.find_at(now), count=self.counts)]
        return []

    def default_parameters(self) -> dict[str, Any]:
        """The parameters a new rule setting starts with, callables read now."""
        return {name: value() if callable(value) else value
                for name, value in self.parameters.items()}


# Case type code → its rule, in declaration order (the order of evaluation).
REGISTRY: dict[str, Rule] = {}


def rule(code: str, label: str, *, queue: str, **options: Any) -> Callable:
    """Declare the decorated finder as the rule of case type `code` (see `Rule`)."""

    def declare(find: Callable[..., list]) -> Callable[..., list]:
        if str(code) in REGISTRY:
            raise ValueError(f"the rule {code} is declared twice")
        REGISTRY[str(code)] = Rule(code=str(code), label=label, find=find, queue=queue,
                                   **options)
        return find

    return declare


def blocking() -> dict[str, str]:
    """{case type: the object kind whose period's billing its cases block}."""
    return {code: r.blocks for code, r in REGISTRY.items() if r.blocks}
