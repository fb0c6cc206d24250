"""Connectors that let engine tests steer timing and failures.

They test the engine's side of the seam (leases, retries, verification),
not a store: the real stores are covered by the built-in connectors' tests.
The store is a dict shared per test, kept in memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from marshmallow import Schema, fields

from dsar.connector import (
    Action,
    Capability,
    CheckResult,
    Connector,
    ErasurePlan,
    ErasureResult,
    PermanentError,
    PlanItem,
    Record,
    RetryableError,
    Subject,
    check_stop,
)


class ScriptedSchema(Schema):
    script = fields.String(required=True)
    kinds = fields.List(fields.String(), load_default=lambda: ["email"])


class Script:
    """What a scripted connector instance does; tests configure it by name."""

    def __init__(self) -> None:
        self.records: dict[str, list[Record]] = {}  # email -> records
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.fail_times = 0
        self.fail_with: type[Exception] = RetryableError
        self.leave_behind = 0
        self.holds: set[str] = set()
        #: the holds a kept record names (by key; default: ``tax-law``)
        self.hold_names: dict[str, tuple[str, ...]] = {}
        self.calls: list[str] = []
        self.lock = threading.Lock()
        #: identity expansion: identifier value -> further identifiers it links to
        self.links: dict[str, dict[str, set[str]]] = {}
        #: erase: seconds spent on each record (a long call), or what happens
        #: instead on each record (a test moving the clock), and whether the
        #: connector ignores the engine's stop token
        self.erase_pause = 0.0
        self.erase_tick: Callable[[], None] | None = None
        self.ignore_stop = False
        self.erased_keys: list[str] = []

    def seed(self, email: str, count: int, collection: str = "items") -> None:
        self.records[email] = [Record(collection, f"{email}-{i}", "item", {"n": i, "owner": email})
                               for i in range(count)]


class ScriptedConnector(Connector):
    """Finds and erases from ``SCRIPTS[config.script]``."""

    SCRIPTS: ClassVar[dict[str, Script]] = {}
    config_schema = ScriptedSchema
    capabilities = frozenset({Capability.FIND, Capability.ERASE, Capability.STOP})
    identity_kinds = frozenset({"email"})

    def __init__(self, name: str, config: Any) -> None:
        super().__init__(name, config)
        self.identity_kinds = frozenset(self.config["kinds"])

    @property
    def script(self) -> Script:
        return self.SCRIPTS[self.config["script"]]

    def check(self) -> CheckResult:
        return CheckResult(True)

    def _step(self, name: str) -> None:
        script = self.script
        with script.lock:
            script.calls.append(name)
            failing = script.fail_times > 0
            if failing:
                script.fail_times -= 1
        script.started.set()
        if script.gate is not None:
            script.gate.wait(30)
        if failing:
            raise script.fail_with("store unavailable (scripted)")

    def find(self, subject: Subject) -> Iterator[Record]:
        self._step("find")
        for kind in sorted(self.identity_kinds):
            for value in sorted(subject.values(kind)):
                yield from self.script.records.get(value, [])

    def plan_erasure(self, subject: Subject) -> ErasurePlan:
        plan = ErasurePlan(self.name)
        for record in self.find(subject):
            held = record.key in self.script.holds
            names = self.script.hold_names.get(record.key, ("tax-law",)) if held else ()
            plan.items.append(PlanItem(record.collection, record.key,
                                       Action.KEEP if held else Action.DELETE,
                                       "tax-law: invoices kept 10 years" if held else "",
                                       holds=names))
        return plan

    def erase(self, plan: ErasurePlan) -> ErasureResult:
        script = self.script
        script.calls.append("erase")
        doomed = {i.key for i in plan.items if i.action is Action.DELETE}
        spared = set(sorted(doomed)[: script.leave_behind])
        deleted = 0
        for key in sorted(doomed - spared):  # one record at a time, like a real store
            if not script.ignore_stop:
                check_stop(done=ErasureResult(deleted=deleted))
            if script.erase_tick is not None:
                script.erase_tick()
            else:
                time.sleep(script.erase_pause)
            for email, records in script.records.items():
                if any(r.key == key for r in records):
                    script.records[email] = [r for r in records if r.key != key]
                    script.erased_keys.append(key)
                    deleted += 1
        return ErasureResult(deleted=deleted, kept=len(plan.kept()))


class DiscoveringConnector(ScriptedConnector):
    """Also reports the identifiers ``Script.links`` ties to the subject's."""

    capabilities = frozenset({Capability.FIND, Capability.ERASE, Capability.DISCOVER})

    def discover(self, subject: Subject) -> dict[str, set[str]]:
        self.script.calls.append("discover")
        found: dict[str, set[str]] = {}
        for kind in sorted(self.identity_kinds):
            for value in subject.values(kind):
                for linked_kind, values in self.script.links.get(value, {}).items():
                    found.setdefault(linked_kind, set()).update(values)
        return found


class BrokenConnector(ScriptedConnector):
    """Raises a permanent error on every find."""

    def find(self, subject: Subject) -> Iterator[Record]:
        raise PermanentError("credentials refused by the store (scripted)")
        yield  # pragma: no cover


TYPES: dict[str, Any] = {"scripted": ScriptedConnector, "broken": BrokenConnector,
                         "discovering": DiscoveringConnector}
