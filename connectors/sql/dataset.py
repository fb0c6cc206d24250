"""The declarative dataset: tables, references between them, strategies.

:class:`Dataset` is built from a loaded configuration. It knows the reference
graph (a child row holds its parent's value, e.g. ``orders.customer_id`` →
``customers.id``) and answers, without the database:

* :meth:`Dataset.walk_order`: parents before children, the order in which the
  subject's rows are found (and, reversed, erased);
* :meth:`Dataset.walk_problems` / :meth:`Dataset.erase_problems`: the mistakes
  that make finding, or erasing, unsafe, each naming the table and column.

Rules (see docs/connectors.md): the walk follows every reference unless it is
marked ``follow = false``; followed references must not form a cycle (a cycle
has an *exit* when one of its references is not followed). When a parent row is
deleted, or its referenced column masked, every child row found through that
reference must be deleted too, or have its reference column set to NULL;
children behind an unfollowed reference get that column set to NULL.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dsar.connector import Action

from .config import identity_column

__all__ = ["Dataset", "Reference", "Strategy", "TableSpec"]


@dataclass(frozen=True)
class Strategy:
    """What erasure does to one column: ``null``, ``hash``, ``fixed`` (with
    ``value``) or ``keep`` (``value`` is the hold's name)."""

    how: str
    value: str | None = None

    @classmethod
    def parse(cls, raw: Any) -> Strategy:
        if isinstance(raw, Mapping):
            (how, value), = raw.items()
            return cls(how, value)
        return cls(raw)

    @property
    def masks(self) -> bool:
        return self.how != "keep"

    def describe(self, column: str) -> str:
        """Shown to officers in the plan: the fixed text is configuration, not a value."""
        return {
            "null": f"{column} set to NULL",
            "hash": f"{column} replaced by a keyed hash (HMAC-SHA256)",
            "fixed": f"{column} replaced by {self.value!r}",
            "keep": f"{column} kept (hold {self.value})",
        }[self.how]


@dataclass(frozen=True)
class Reference:
    """``table.column`` holds the value of ``parent.parent_column``."""

    table: str
    column: str
    parent: str
    parent_column: str
    follow: bool = True

    def __str__(self) -> str:
        return f"{self.table}.{self.column} -> {self.parent}.{self.parent_column}"


@dataclass
class TableSpec:
    """One configured table (see ``config.TableSchema``)."""

    name: str
    key: str
    category: str
    identity: dict[str, str]
    references: list[Reference]
    erase: str  # delete | mask | keep
    columns: dict[str, Strategy]
    hold: str | None
    reason: str | None
    discover: bool = False
    #: identity columns declared to hold normalised values only
    normalised: frozenset[str] = frozenset()

    @property
    def masked(self) -> dict[str, Strategy]:
        """Columns erasure changes (on masked rows, and on kept rows with columns)."""
        return {c: s for c, s in self.columns.items() if s.masks}

    def changes(self, column: str) -> bool:
        """Does erasure delete this table's rows or change ``column``?"""
        return self.erase == "delete" or column in self.masked

    @property
    def kept_identity(self) -> list[str]:
        """Identity columns a hold keeps: the masked row is still the subject's."""
        wanted = set(self.identity.values())
        return [c for c, s in self.columns.items() if not s.masks and c in wanted]

    @property
    def row_action(self) -> Action:
        if self.erase == "delete":
            return Action.DELETE
        if self.erase == "keep" or self.kept_identity:
            return Action.KEEP
        return Action.MASK

    @property
    def used_columns(self) -> set[str]:
        return {self.key, *self.identity.values(), *self.columns,
                *(r.column for r in self.references)}


@dataclass
class Dataset:
    """The parsed dataset of one connector instance."""

    tables: dict[str, TableSpec]
    holds: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Dataset:
        tables = {t["name"]: _table(t) for t in config["tables"]}
        return cls(tables, dict(config.get("holds") or {}))

    # ------------------------------------------------------------ the graph
    @property
    def references(self) -> Iterator[Reference]:
        for spec in self.tables.values():
            yield from spec.references

    def followed(self) -> list[Reference]:
        """References the walk follows: marked so, between configured tables."""
        return [r for r in self.references if r.follow and r.parent in self.tables]

    def exits(self) -> list[Reference]:
        """Unfollowed references between configured tables."""
        return [r for r in self.references if not r.follow and r.parent in self.tables]

    def walk_order(self) -> list[str]:
        """Table names, parents before children (configuration order otherwise).
        Tables on a cycle (a mistake :meth:`walk_problems` reports) come last."""
        parents: dict[str, set[str]] = {name: set() for name in self.tables}
        for ref in self.followed():
            if ref.parent != ref.table:
                parents[ref.table].add(ref.parent)
        order: list[str] = []
        while len(order) < len(self.tables):
            ready = [n for n in self.tables if n not in order and parents[n] <= set(order)]
            if not ready:
                order += [n for n in self.tables if n not in order]
                break
            order += ready
        return order

    def identity_kinds(self) -> frozenset[str]:
        return frozenset(k for spec in self.tables.values() for k in spec.identity)

    def hold_reason(self, spec: TableSpec, hold: str) -> str:
        if hold == spec.hold and spec.reason:
            return spec.reason
        return self.holds.get(hold, "")

    # ------------------------------------------------------------- mistakes
    def walk_problems(self) -> list[str]:
        """Mistakes that make finding wrong: unknown parents, cycles, tables
        the walk never reaches."""
        problems = [
            f"{ref}: table {ref.parent} is not in the dataset (add it, or drop the reference)"
            for ref in self.references if ref.parent not in self.tables
        ]
        problems += self._cycles()
        reached = {n for n, spec in self.tables.items() if spec.identity}
        grew = True
        while grew:
            more = {r.table for r in self.followed() if r.parent in reached} - reached
            reached |= more
            grew = bool(more)
        problems += [
            f"table {name}: no identity column and no followed reference from a reachable "
            "table, so its rows are never found"
            for name in self.tables if name not in reached
        ]
        return problems

    def erase_problems(self) -> list[str]:
        """Mistakes that would make erasure leave a dangling reference."""
        problems = [
            f"table {name}: erase = mask but every column in columns is kept"
            for name, spec in self.tables.items() if spec.erase == "mask" and not spec.masked
        ]
        for ref in self.followed():
            parent, child = self.tables[ref.parent], self.tables[ref.table]
            strategy = child.columns.get(ref.column)
            if strategy is not None and strategy.how in ("hash", "fixed"):
                problems.append(f"{ref}: {ref.table}.{ref.column} is a reference; only "
                                "null keeps it valid (or delete the row)")
            if not parent.changes(ref.parent_column):
                continue
            if child.erase == "delete" or (strategy is not None and strategy.how == "null"):
                continue
            what = ("deleted" if parent.erase == "delete"
                    else f"changed ({ref.parent}.{ref.parent_column} is masked)")
            fate = (f"kept under hold {child.hold}" if child.erase == "keep"
                    else f"masked without nulling {ref.table}.{ref.column}")
            problems.append(
                f"{ref}: {ref.parent} rows are {what} but the {ref.table} rows referencing "
                f"them are {fate}; they would dangle (delete {ref.table} rows, set "
                f"{ref.table}.{ref.column} to null, or keep the {ref.parent} rows)")
        return problems

    def _cycles(self) -> list[str]:
        edges: dict[str, list[Reference]] = {name: [] for name in self.tables}
        for ref in self.followed():
            edges[ref.parent].append(ref)  # walk direction: parent -> child
        found: list[str] = []
        seen: set[frozenset[str]] = set()
        done: set[str] = set()

        def visit(name: str, path: list[Reference], on_path: list[str]) -> None:
            for ref in edges[name]:
                if ref.table in on_path:
                    cycle = path[on_path.index(ref.table):] + [ref]
                    tables = frozenset(r.table for r in cycle)
                    if tables not in seen:
                        seen.add(tables)
                        chain = ", ".join(str(r) for r in cycle)
                        found.append(
                            f"reference cycle without an exit: {chain} (mark one of these "
                            "references follow = false; its column must be nullable)")
                elif ref.table not in done:
                    visit(ref.table, [*path, ref], [*on_path, ref.table])
            done.add(name)

        for name in self.tables:
            if name not in done:
                visit(name, [], [name])
        return found


def _table(raw: Mapping[str, Any]) -> TableSpec:
    refs = []
    for column, target in raw["references"].items():
        follow = True
        if isinstance(target, Mapping):
            target, follow = target["to"], target.get("follow", True)
        parent, _, parent_column = str(target).rpartition(".")
        refs.append(Reference(raw["name"], column, parent, parent_column, bool(follow)))
    identity = {kind: identity_column(entry) for kind, entry in raw["identity"].items()}
    normalised = frozenset(identity_column(entry) for entry in raw["identity"].values()
                           if isinstance(entry, Mapping) and entry.get("normalised"))
    return TableSpec(
        name=raw["name"], key=raw["key"], category=raw["category"],
        identity=identity, references=refs, erase=raw["erase"],
        columns={c: Strategy.parse(s) for c, s in raw["columns"].items()},
        hold=raw.get("hold"), reason=raw.get("reason"), discover=bool(raw.get("discover")),
        normalised=normalised,
    )
