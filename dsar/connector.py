"""The connector contract: the one module a connector engineer needs to learn.

A connector is a class that finds, and optionally erases, one person's data in
one store. The engine gives it a :class:`Subject` (identifiers by kind) and
asks it to

* ``check()``: say whether the store is reachable and configured right;
* ``find(subject)``: yield every :class:`Record` that belongs to the subject;
* ``plan_erasure(subject)``: say, per record, what erasure will do
  (delete, mask, or keep under a named legal hold) without changing anything;
* ``erase(plan)``: carry the plan out and return counts;
* ``discover(subject)`` (optional): report further identifiers of the subject
  (a phone number, a customer id) so stores keyed by them are searched too.

Rules the engine relies on:

* A connector never touches the application database or the audit log; it
  returns outcomes and the core records them.
* It raises only :class:`RetryableError` (the store is down, a timeout: try
  again later) or :class:`PermanentError` (misconfiguration, a refused
  credential: retrying will not help). Anything else is treated as a bug and
  retried like a retryable error.
* It never logs field values or identifiers; messages in errors are shown to
  compliance officers and must not contain personal data either.
* ``erase`` is idempotent: running a plan twice has the effect of running it
  once. After ``erase``, ``find`` must return only records the plan keeps; the
  engine checks this and fails the task otherwise.
* A call may be asked to stop (its worker lost the task, or the task ran past
  its maximum duration). A connector that declares :attr:`Capability.STOP`
  calls :func:`check_stop` between records in ``find``, ``plan_erasure``,
  ``erase`` and ``discover``; in ``erase`` it passes what it has done so far
  (``check_stop(done=ErasureResult(...))``) so the audit trail records what the
  store actually did. The stop token belongs to the running call, not to the
  instance (worker threads share instances), so nothing changes for
  connectors that do not use it: they simply run to the end.

Connectors register through the ``dsar.connectors`` entry-point group; the
configuration of each instance is validated with the class's marshmallow
``config_schema`` before any request runs. Fields flagged with
``metadata={"secret": True}`` (passwords, tokens, keys, URLs that may hold a
password) are never shown or logged: dsar shows a configuration through
:func:`masked_config` and passes every message that may quote one (a
validation error, a ``check()`` message) through :func:`redact_secrets`. The
conformance kit fails a schema whose credential-like fields are not flagged;
``metadata={"secret": False}`` says a field with such a name is not one (a
column called ``key``).
"""

from __future__ import annotations

import enum
import re
import threading
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar

from marshmallow import Schema, fields

__all__ = [
    "Action",
    "Capability",
    "CheckResult",
    "Connector",
    "ConnectorError",
    "ErasurePlan",
    "ErasureResult",
    "MASK",
    "PermanentError",
    "PlanItem",
    "Record",
    "RetryableError",
    "Stopped",
    "Subject",
    "check_stop",
    "masked_config",
    "normalise_identifier",
    "redact_secrets",
    "secret_values",
    "stop_requested",
    "stop_scope",
]


class Capability(enum.StrEnum):
    """What a connector can do. ``FIND`` is required; ``ERASE`` needs
    ``plan_erasure`` and ``erase``; ``DISCOVER`` needs ``discover``; ``STOP``
    promises that long calls call :func:`check_stop` between records."""

    FIND = "find"
    ERASE = "erase"
    DISCOVER = "discover"
    STOP = "stop"


class ConnectorError(Exception):
    """Base of the errors a connector may raise. The message is shown to
    officers: say what is wrong and what to do, without personal data."""


class RetryableError(ConnectorError):
    """A transient failure: the engine retries with backoff."""


class PermanentError(ConnectorError):
    """Retrying cannot help (bad configuration, refused credentials)."""


class Stopped(ConnectorError):
    """The engine asked the running call to stop; raised by :func:`check_stop`.

    ``done`` is what an interrupted ``erase`` had already changed in the store
    (``None`` when the call changed nothing or cannot tell)."""

    def __init__(self, message: str = "stopped at the engine's request",
                 done: ErasureResult | None = None) -> None:
        super().__init__(message)
        self.done = done


_stop_event: ContextVar[threading.Event | None] = ContextVar("dsar_stop_event", default=None)


def stop_requested() -> bool:
    """Has the engine asked the running call to stop? Cheap: call it often."""
    event = _stop_event.get()
    return event is not None and event.is_set()


def check_stop(done: ErasureResult | None = None) -> None:
    """Raise :class:`Stopped` if the engine asked the running call to stop.

    Call it between records, where stopping leaves the store consistent (each
    record either fully changed or untouched). In ``erase``, pass the counts of
    what was done so far."""
    if stop_requested():
        raise Stopped(done=done)


@contextmanager
def stop_scope(event: threading.Event) -> Iterator[threading.Event]:
    """Run the calls made inside the block under ``event`` as their stop token
    (the engine and the conformance kit use this; connectors never need it).

    The token is a context variable: it belongs to this thread's call, so
    worker threads sharing one connector instance each have their own."""
    token = _stop_event.set(event)
    try:
        yield event
    finally:
        _stop_event.reset(token)


def normalise_identifier(kind: str, value: str) -> str:
    """The canonical form of an identifier, used for matching and hashing.

    Emails are trimmed and lower-cased; phone numbers keep a leading ``+`` and
    digits only; every other kind is trimmed.
    """
    value = value.strip()
    if kind == "email":
        return value.lower()
    if kind == "phone":
        digits = "".join(ch for ch in value if ch.isdigit())
        return ("+" + digits) if value.startswith("+") else digits
    return value


@dataclass(frozen=True)
class Subject:
    """The person a request is about: identifiers by kind.

    ``Subject({"email": {"a@x.org"}, "customer_id": {"c-17"}})``. Values are
    normalised on construction, so connectors can compare them directly.
    """

    identifiers: Mapping[str, frozenset[str]]

    def __init__(self, identifiers: Mapping[str, Iterable[str]]) -> None:
        clean = {
            kind: frozenset(normalise_identifier(kind, v) for v in values if v and v.strip())
            for kind, values in identifiers.items()
        }
        object.__setattr__(self, "identifiers", {k: v for k, v in clean.items() if v})

    def values(self, kind: str) -> frozenset[str]:
        """The subject's identifiers of one kind (empty when none)."""
        return self.identifiers.get(kind, frozenset())

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self.identifiers)

    def restricted_to(self, kinds: Iterable[str]) -> Subject:
        """The same subject with only the kinds a connector accepts."""
        wanted = set(kinds)
        return Subject({k: v for k, v in self.identifiers.items() if k in wanted})

    def __hash__(self) -> int:
        return hash(frozenset(self.identifiers.items()))

    def __repr__(self) -> str:  # never the values
        counts = ", ".join(f"{k}={len(v)}" for k, v in sorted(self.identifiers.items()))
        return f"Subject({counts})"


@dataclass(frozen=True)
class Record:
    """One item of the subject's data.

    ``collection`` is where it lives (table, folder, channel), ``key`` is its
    identity inside the collection (stable across calls), ``category`` is a
    data category for the export (``profile``, ``message``, ``order``...),
    ``fields`` the values, JSON-serialisable.
    """

    collection: str
    key: str
    category: str
    fields: Mapping[str, Any]

    @property
    def ref(self) -> tuple[str, str]:
        return (self.collection, self.key)

    def __hash__(self) -> int:
        return hash(self.ref)

    def __repr__(self) -> str:  # never the field values
        return (f"Record({self.collection!r}, {self.key!r}, {self.category!r}, "
                f"{len(self.fields)} fields)")


class Action(enum.StrEnum):
    """What erasure does to one record."""

    DELETE = "delete"
    MASK = "mask"
    KEEP = "keep"


@dataclass(frozen=True)
class PlanItem:
    """One record's fate. ``detail`` says how it is masked (``MASK``) or which
    legal hold keeps it and why (``KEEP``); it is shown to officers.

    ``holds`` names the legal holds that keep a ``KEEP`` record (their names,
    as the connector's configuration gives them, e.g. ``("tax-records",)``):
    the requester is told what each hold keeps in the words the connector file
    gives the hold (``[holds.<name>]``, docs/connectors.md), never in
    ``detail``. Optional: a kept record that names none is explained with a
    default text."""

    collection: str
    key: str
    action: Action
    detail: str = ""
    holds: tuple[str, ...] = ()

    @property
    def ref(self) -> tuple[str, str]:
        return (self.collection, self.key)


@dataclass
class ErasurePlan:
    """What ``erase`` will do, reviewable before it runs.

    ``connector`` is the instance name; ``items`` one per record found.
    ``extra`` is connector-private data ``erase`` may need (never shown).
    """

    connector: str
    items: list[PlanItem] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def kept(self) -> set[tuple[str, str]]:
        """References of the records a hold keeps."""
        return {item.ref for item in self.items if item.action is Action.KEEP}

    def summary(self) -> dict[str, int]:
        """Counts by action, safe for the audit log."""
        counts = {a.value: 0 for a in Action}
        for item in self.items:
            counts[item.action.value] += 1
        return counts


@dataclass(frozen=True)
class ErasureResult:
    """Counts of what ``erase`` did."""

    deleted: int = 0
    masked: int = 0
    kept: int = 0


@dataclass(frozen=True)
class CheckResult:
    """The answer of ``check()``: ``ok`` and a message for the operator."""

    ok: bool
    message: str = "ok"


# ------------------------------------------------------------------ secrets in configurations

#: what a secret is shown as
MASK = "********"
#: the password of a URL (``scheme://user:password@host``), in any text
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*:)([^\s/?#@]+)(@)")
#: what :func:`_walk` calls on each value: ``leaf(value, secret)``
_Leaf = Callable[[Any, bool | None], Any]


def _is_secret(declared: fields.Field[Any]) -> bool:
    return declared.metadata.get("secret") is True


def _schema(schema: Schema | type[Schema]) -> Schema:
    return schema() if isinstance(schema, type) else schema


def _walk(schema: Schema, data: Any, leaf: _Leaf) -> Any:
    """``data`` (a raw or a loaded configuration) rebuilt with every value
    that is not a mapping, a list or a nested schema replaced by
    ``leaf(value, secret)``: ``secret`` is True under a field flagged secret
    (the whole value, however deep), False under any other declared field,
    None under a key the schema does not declare."""
    if not isinstance(data, Mapping):
        return leaf(data, None)
    by_key: dict[str, fields.Field[Any]] = {}
    for name, declared in schema.fields.items():
        by_key[declared.attribute or name] = by_key[declared.data_key or name] = declared
    out: dict[str, Any] = {}
    for key, value in data.items():
        found = by_key.get(key)
        out[key] = leaf(value, None) if found is None else _walk_field(found, value, leaf)
    return out


def _walk_field(declared: fields.Field[Any], value: Any, leaf: _Leaf) -> Any:
    if value is None:
        return None
    if _is_secret(declared):
        return leaf(value, True)
    if isinstance(declared, fields.Pluck):
        plucked = declared.schema.fields[declared.field_name]
        if isinstance(value, list):
            return [_walk_field(plucked, item, leaf) for item in value]
        return _walk_field(plucked, value, leaf)
    if isinstance(declared, fields.Nested):
        if isinstance(value, list):
            return [_walk(declared.schema, item, leaf) for item in value]
        return _walk(declared.schema, value, leaf)
    if isinstance(declared, fields.List) and isinstance(value, list | tuple):
        return [_walk_field(declared.inner, item, leaf) for item in value]
    if isinstance(declared, fields.Tuple) and isinstance(value, list | tuple):
        return [_walk_field(inner, item, leaf)
                for inner, item in zip(declared.tuple_fields, value, strict=False)]
    if isinstance(declared, fields.Mapping) and isinstance(value, Mapping):
        values = declared.value_field
        return {key: leaf(item, False) if values is None else _walk_field(values, item, leaf)
                for key, item in value.items()}
    return leaf(value, False)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)


def masked_config(schema: Schema | type[Schema], config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as it may be shown: every value under a field flagged secret
    (all of it, however deep) and under a key the schema does not declare
    becomes :data:`MASK`. Pass any text made from it through
    :func:`redact_secrets` too, for a URL with a password in a field that
    should have been flagged."""
    return dict(_walk(_schema(schema), config,
                      lambda value, secret: value if secret is False else MASK))


def secret_values(schema: Schema | type[Schema], config: Mapping[str, Any]) -> frozenset[str]:
    """The strings of ``config`` (raw or loaded) that must never be shown:
    every string under a field flagged secret, and the password of a URL
    anywhere (as written and percent-decoded)."""
    found: set[str] = set()

    def leaf(value: Any, secret: bool | None) -> Any:
        for text in _strings(value):
            if secret:
                found.add(text)
            for match in _URL_PASSWORD.finditer(text):
                found.update({match.group(2), urllib.parse.unquote(match.group(2))})
        return value

    _walk(_schema(schema), config, leaf)
    return frozenset(value for value in found if value)


def redact_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` (a message, a log line) with each of ``secrets`` and the
    password of any URL in it replaced by :data:`MASK`."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _URL_PASSWORD.sub(rf"\1{MASK}\3", text)


class Connector(ABC):
    """Base class of every connector.

    Subclasses set ``config_schema`` (a marshmallow schema class),
    ``capabilities`` and ``identity_kinds`` (the identifier kinds ``find``
    understands, e.g. ``{"email"}``), and implement the methods below.
    ``self.name`` is the instance name from the connector file; ``self.config``
    the loaded (validated) configuration.
    """

    config_schema: ClassVar[type[Schema]]
    #: the store's name for requesters (their status page, the API's
    #: ``progress[].label``): the connector file's ``label``, which dsar takes
    #: out before ``config_schema`` sees the rest and sets after ``__init__``.
    #: ``None``: requesters read a neutral text, never ``name``.
    label: str | None = None
    #: both may be narrowed per instance from its configuration
    capabilities: frozenset[Capability] = frozenset({Capability.FIND})
    identity_kinds: frozenset[str] = frozenset({"email"})

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        self.name = name
        self.config = dict(config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def redacted(self, text: str) -> str:
        """``text`` with this instance's secrets and any URL's password masked."""
        return redact_secrets(text, secret_values(self.config_schema, self.config))

    def described(self, error: BaseException) -> str:
        """``error`` as officers and the audit trail may read it: its text
        (else its type's name), :meth:`redacted` (a driver's message may quote
        a connection URL)."""
        return self.redacted(str(error) or type(error).__name__)

    @classmethod
    def load_config(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``raw`` with ``config_schema``; raises marshmallow's
        ``ValidationError`` naming the bad keys."""
        return dict(cls.config_schema().load(dict(raw)))

    @abstractmethod
    def check(self) -> CheckResult:
        """Is the store reachable and the configuration right? Never raises
        for an unreachable store: returns ``CheckResult(False, why)``."""

    @abstractmethod
    def find(self, subject: Subject) -> Iterator[Record]:
        """Yield the subject's records, streaming (do not build a list)."""

    def discover(self, subject: Subject) -> Mapping[str, Iterable[str]]:
        """Further identifiers of the subject this store knows (identity
        expansion): e.g. the phone number and customer id on the CRM row found
        by email. Kinds it returns are fed to every connector that accepts
        them. Returning known identifiers again is fine. Changes nothing."""
        raise PermanentError(f"connector {self.name!r} cannot discover identifiers")

    def plan_erasure(self, subject: Subject) -> ErasurePlan:
        """Decide per record: delete, mask (how) or keep (which hold, why).
        Changes nothing."""
        raise PermanentError(f"connector {self.name!r} cannot erase")

    def erase(self, plan: ErasurePlan) -> ErasureResult:
        """Carry out ``plan``. Idempotent: a record already gone is not an error."""
        raise PermanentError(f"connector {self.name!r} cannot erase")

    def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release connections or files (the app is shutting down). Optional."""
