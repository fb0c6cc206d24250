"""The ``rest`` connector class: walks the declared object types.

Records are found from the subject's identifiers (object types with
``identity``) and then from found records (object types with ``parent``:
searched once per parent record, the parent's id as ``{value}``). A record
reached twice is reported once. ``(collection, key)`` is (object type, id).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from dsar.connector import (
    Action,
    Capability,
    CheckResult,
    Connector,
    ConnectorError,
    ErasurePlan,
    ErasureResult,
    PermanentError,
    PlanItem,
    Record,
    Subject,
    check_stop,
    normalise_identifier,
)

from . import config as rest_config
from .http import HttpClient, Response
from .paging import pages, results
from .templates import dig, fill, fill_path, fill_query

log = logging.getLogger(__name__)

#: statuses meaning "the record is not there (any more)"
GONE = frozenset({404, 410})
#: the identifier the check probe searches for when no check endpoint is set
PROBE = "dsar-check-probe@example.invalid"

Hit = tuple[str, str, Any]  # (object type, id, search result)


class RestConnector(Connector):
    """A declarative connector for HTTP/JSON APIs (HubSpot-, Salesforce-,
    Zendesk-shaped). ``erase`` is idempotent: 404/410 on delete, anonymise or
    read mean the record is already gone. ``identity_kinds`` of an instance
    are the kinds its object types declare. Every call stops when asked
    (``Capability.STOP``), before the next HTTP request or record."""

    config_schema = rest_config.RestConfigSchema
    capabilities = frozenset({Capability.FIND, Capability.ERASE, Capability.DISCOVER,
                              Capability.STOP})
    identity_kinds = frozenset(rest_config.KINDS)

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        self.objects: dict[str, dict[str, Any]] = dict(self.config["objects"])
        self.identity_kinds = frozenset(
            kind for spec in self.objects.values() for kind in (spec["identity"] or {})
        )
        self.children = {name: [child for child, spec in self.objects.items()
                                if spec["parent"] == name] for name in self.objects}
        self.http = HttpClient(name, self.config)

    @classmethod
    def load_config(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``raw``; ``profile = "hubspot_contacts"`` starts from a
        shipped profile that ``raw`` overrides."""
        return rest_config.load_config(raw)

    # ------------------------------------------------------------ http
    def _call(self, endpoint: Mapping[str, Any], values: Mapping[str, str],
              **options: Any) -> Response:
        """One call of a declared endpoint with its placeholders filled."""
        url, query, body = self._request_parts(endpoint, values)
        return self.http.call(endpoint["method"], url, _label(endpoint), query=query, body=body,
                              **options)

    def _request_parts(self, endpoint: Mapping[str, Any],
                       values: Mapping[str, str]) -> tuple[str, dict[str, str], Any]:
        url = self.config["base_url"].rstrip("/") + fill_path(endpoint["path"], values)
        body = None if endpoint["body"] is None else fill(endpoint["body"], values)
        return url, fill_query(endpoint["query"], values), body

    # ------------------------------------------------------------ check
    def check(self) -> CheckResult:
        """One try at the ``check`` endpoint, or, without one, a search for
        a probe identifier that matches nobody. Never raises."""
        try:
            endpoint = self.config["check"]
            if endpoint is not None:
                response = self._call(endpoint, {}, tries=1)
                return CheckResult(True, f"{_label(endpoint)} answered HTTP {response.status}")
            name, spec = next((n, s) for n, s in self.objects.items() if s["identity"])
            search = spec["search"]
            field = next(iter(spec["identity"].values()))[0]
            response = self._call(search, {"value": PROBE, "field": field}, tries=1)
            results(response, search, _label(search))
            return CheckResult(True, f"search of {name} answered HTTP {response.status}")
        except ConnectorError as exc:
            return CheckResult(False, str(exc))

    # ------------------------------------------------------------ walk
    def _walk(self, subject: Subject) -> Iterator[Hit]:
        """Every record of the subject, parents before their children."""
        seen: set[tuple[str, str]] = set()
        for name, key, item in self._roots(subject):
            yield from self._visit(name, key, item, seen)

    def _roots(self, subject: Subject, only: set[str] | None = None) -> Iterator[Hit]:
        """Hits of the identity searches: one search per (kind, field, value)."""
        for name, spec in self.objects.items():
            if only is not None and name not in only:
                continue
            for kind, names in sorted((spec["identity"] or {}).items()):
                for field in names:
                    for value in sorted(subject.values(kind)):
                        for key, item in self._search(name, {"value": value, "field": field}, kind):
                            yield name, key, item

    def _visit(self, name: str, key: str, item: Any, seen: set[tuple[str, str]]) -> Iterator[Hit]:
        if (name, key) in seen:
            return
        seen.add((name, key))
        yield name, key, item
        for child in self.children[name]:
            for child_key, child_item in self._search(child, {"value": key}, None):
                yield from self._visit(child, child_key, child_item, seen)

    def _search(self, name: str, values: dict[str, str],
                kind: str | None) -> Iterator[tuple[str, Any]]:
        """(id, result) of one search across all its pages. With ``match``
        set for ``kind``, results whose value there is not the subject's are
        dropped (full-text search APIs return near misses)."""
        spec = self.objects[name]
        search, label = spec["search"], _label(spec["search"])
        match = spec["match"].get(kind, []) if kind else []
        url, query, body = self._request_parts(search, values)
        dropped = 0
        check_stop()  # before the first page's request
        for page in pages(self.http, search, label, url, query, body, self.config["base_url"]):
            for item in page:
                check_stop()
                if kind and match and not _matches(item, match, kind, values["value"]):
                    dropped += 1
                    continue
                yield _key(item, search["id"], label), item
            check_stop()  # before the next page's request
        if dropped:
            log.debug("rest %s: %s: %d results did not match and were dropped",
                      self.name, name, dropped)

    # ------------------------------------------------------------ discover
    def discover(self, subject: Subject) -> dict[str, list[str]]:
        """Identifiers at the ``discover`` paths of the records the identity
        searches find (search results, not reads: request the properties in
        the search). Only object types with ``discover`` are searched."""
        wanted = {name for name, spec in self.objects.items() if spec["discover"]}
        found: dict[str, set[str]] = {}
        for name, _, item in self._roots(subject, only=wanted):
            check_stop()
            for kind, paths in self.objects[name]["discover"].items():
                found.setdefault(kind, set()).update(
                    normalise_identifier(kind, v) for v in _values(item, paths))
        log.debug("rest %s: discovered %d identifiers", self.name,
                  sum(len(v) for v in found.values()))
        return {kind: sorted(values) for kind, values in found.items() if values}

    # ------------------------------------------------------------ find
    def find(self, subject: Subject) -> Iterator[Record]:
        """Yield one record per object found; with a ``read`` endpoint its
        answer is the record's fields, else the search result."""
        count = 0
        for name, key, item in self._walk(subject):
            check_stop()  # before the read's request, so before each yield
            fields = self._read(name, key, item)
            if fields is None:
                continue  # deleted between search and read
            count += 1
            yield Record(name, key, self.objects[name]["category"], fields)
        log.debug("rest %s: %d records found", self.name, count)

    def _read(self, name: str, key: str, item: Any) -> dict[str, Any] | None:
        read = self.objects[name]["read"]
        if read is None:
            return dict(item) if isinstance(item, dict) else {"value": item}
        response = self._call(read, {"id": key}, allow=GONE)
        if response.status in GONE:
            return None
        record = dig(response.data, read["record"])
        if not isinstance(record, dict):
            where = read["record"] or "the top level"
            raise PermanentError(f"{_label(read)}: the answer has no record at {where!r}")
        return record

    # ------------------------------------------------------------ erase
    def plan_erasure(self, subject: Subject) -> ErasurePlan:
        """One item per record, by its object type's ``erase`` strategy.
        Changes nothing; ``extra`` stays empty (the plan holds only ids)."""
        plan = ErasurePlan(connector=self.name)
        for name, key, _ in self._walk(subject):
            check_stop()
            plan.items.append(self._plan_item(name, key))
        return plan

    def _plan_item(self, name: str, key: str) -> PlanItem:
        spec = self.objects[name]
        if spec["erase"] == "keep":
            return PlanItem(name, key, Action.KEEP, f"hold {spec['hold']}: {spec['reason']}",
                            holds=(spec["hold"],))
        if spec["erase"] == "anonymise":
            replaced = ", ".join(_leaf_paths(spec["anonymise"]["body"]))
            how = _label(spec["anonymise"])
            return PlanItem(name, key, Action.MASK, f"fixed values written by {how}: {replaced}")
        return PlanItem(name, key, Action.DELETE, f"deleted by {_label(spec['delete'])}")

    def erase(self, plan: ErasurePlan) -> ErasureResult:
        """Carry out ``plan``, children before parents (the reverse of the
        walk), so a half-done erasure can still be planned again. A record
        already gone (404/410) is skipped and not counted. Asked to stop, it
        stops between records; ``Stopped.done`` counts the calls that went
        through (each record is one call: changed, or untouched)."""
        deleted = masked = kept = 0
        for item in reversed(plan.items):
            check_stop(done=ErasureResult(deleted=deleted, masked=masked, kept=kept))
            if item.action is Action.KEEP:
                kept += 1
                continue
            role = "delete" if item.action is Action.DELETE else "anonymise"
            endpoint = (self.objects.get(item.collection) or {}).get(role)
            if endpoint is None:
                raise PermanentError(f"the plan asks to {role} {item.collection!r} records; "
                                     f"the configuration has no {role} endpoint for them")
            if self._call(endpoint, {"id": item.key}, allow=GONE).status in GONE:
                log.debug("rest %s: a %s record was already gone", self.name, item.collection)
                continue
            deleted += item.action is Action.DELETE
            masked += item.action is Action.MASK
        log.info("rest %s: erased, %d deleted, %d masked, %d kept",
                 self.name, deleted, masked, kept)
        return ErasureResult(deleted=deleted, masked=masked, kept=kept)


def _label(endpoint: Mapping[str, Any]) -> str:
    """How logs and errors name an endpoint: its method and path template."""
    return f"{endpoint['method']} {endpoint['path']}"


def _key(item: Any, path: str, label: str) -> str:
    key = dig(item, path)
    if isinstance(key, bool) or not isinstance(key, str | int) or key == "":
        raise PermanentError(f"{label}: a result has no id at {path!r}")
    return str(key)


def _values(item: Any, paths: list[str]) -> Iterator[str]:
    """The strings at ``paths`` in ``item`` (a path may hold a list)."""
    for path in paths:
        found = dig(item, path)
        for value in found if isinstance(found, list) else [found]:
            if isinstance(value, str) and value.strip():
                yield value


def _matches(item: Any, paths: list[str], kind: str, wanted: str) -> bool:
    return any(normalise_identifier(kind, v) == wanted for v in _values(item, paths))


def _leaf_paths(template: Any, prefix: str = "") -> list[str]:
    """``{"properties": {"email": ...}}`` → ``["properties.email"]``."""
    if isinstance(template, dict):
        return [path for key, item in template.items()
                for path in _leaf_paths(item, f"{prefix}{key}.")]
    return [prefix.rstrip(".")] if prefix else []
