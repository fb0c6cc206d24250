"""Connector types (entry points) and configured instances (the TOML file).

Built-in and third-party connectors load the same way: through the
``dsar.connectors`` entry-point group. The file named by ``DSAR_CONNECTORS``
has one table per instance::

    [connectors.crm]
    type = "sql"
    label = "Customer accounts"     # optional: the store's name for requesters
    url = "sqlite:///crm.db"

A ``[holds.<name>]`` table gives the words a requester reads about the
records a legal hold keeps (:func:`load_hold_texts`)::

    [holds.tax-records]
    requester = "Your invoices: tax law makes us keep them for 10 years."

Any key may instead be read from the environment: ``url_env = "CRM_URL"``
(at any depth), so secrets need not be written into the file.
Everything is validated before any request runs; errors name the file and the
key (:class:`dsar.config.ConfigError`), and never quote a secret: the values
of fields the schema flags secret (and URL passwords) are masked in them,
whatever a validator echoes.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, cast

from marshmallow import ValidationError

from .config import ConfigError
from .connector import Capability, Connector, redact_secrets, secret_values

GROUP = "dsar.connectors"


def available_types() -> dict[str, Any]:
    """Entry-point name → entry point (not yet imported)."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_type(type_name: str, where: str,
              extra_types: Mapping[str, type[Connector]] | None = None) -> type[Connector]:
    """Import the connector class registered as ``type_name``."""
    if extra_types and type_name in extra_types:
        cls: Any = extra_types[type_name]
    else:
        found = available_types().get(type_name)
        if found is None:
            known = ", ".join(sorted(set(available_types()) | set(extra_types or {}))) or "none"
            raise ConfigError(f"{where}: unknown connector type {type_name!r} "
                              f"(installed: {known})")
        try:
            cls = found.load()
        except Exception as exc:  # an import error in a third-party package
            raise ConfigError(f"{where}: connector type {type_name!r} failed to load: "
                              f"{type(exc).__name__}: {exc}") from None
    _check_class(cls, type_name, where)
    return cast(type[Connector], cls)  # _check_class made sure


def _check_class(cls: Any, type_name: str, where: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ConfigError(f"{where}: {type_name!r} is not a dsar.connector.Connector")
    if not hasattr(cls, "config_schema"):
        raise ConfigError(f"{where}: {cls.__name__} declares no config_schema")
    needs = {Capability.ERASE: ("plan_erasure", "erase"), Capability.DISCOVER: ("discover",)}
    for capability, methods in needs.items():
        if capability not in cls.capabilities:
            continue
        for method in methods:
            if getattr(cls, method) is getattr(Connector, method):
                raise ConfigError(f"{where}: {cls.__name__} declares the {capability.value} "
                                  f"capability but does not implement {method}()")


def load_connectors(path: str | None,
                    extra_types: Mapping[str, type[Connector]] | None = None
                    ) -> dict[str, Connector]:
    """Read, validate and instantiate every connector in the file at ``path``.

    No path means no connectors. Raises :class:`ConfigError` naming the file
    and key on any mistake.
    """
    return load_connector_file(path, extra_types)[0]


def load_connector_file(path: str | None,
                        extra_types: Mapping[str, type[Connector]] | None = None
                        ) -> tuple[dict[str, Connector], dict[str, str]]:
    """The connectors (:func:`load_connectors`) and the holds' requester texts
    (:func:`load_hold_texts`) of the file at ``path``, read once."""
    if not path:
        return {}, {}
    file = Path(path)
    data = _read(file)
    tables = data.get("connectors", {})
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{file}: no [connectors.<name>] tables")
    connectors = {name: _instantiate(file, name, raw, extra_types)
                  for name, raw in tables.items()}
    return connectors, _hold_texts(file, data)


def _read(file: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: connector file not found (DSAR_CONNECTORS)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None


def load_hold_texts(path: str | None) -> dict[str, str]:
    """What a requester is told about the records each legal hold keeps, by
    the hold's name: the ``[holds.<name>]`` tables of the connector file, each
    with one key, ``requester`` (the text, stripped). A hold a connector names
    that has no table here gets the default text (``mail.erased.hold.default``).
    No path, or no ``[holds]``: none. Raises :class:`ConfigError` naming the
    file and key."""
    if not path:
        return {}
    file = Path(path)
    return _hold_texts(file, _read(file))


def _hold_texts(file: Path, data: Mapping[str, Any]) -> dict[str, str]:
    holds = data.get("holds", {})
    if not isinstance(holds, dict):
        raise ConfigError(f"{file}: holds: must be a table of [holds.<name>] tables")
    return {name: _hold_text(file, name, table) for name, table in holds.items()}


def _hold_text(file: Path, name: str, table: Any) -> str:
    where = f"{file}: holds.{name}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table ([holds.{name}] with requester = \"...\")")
    unknown = sorted(set(table) - {"requester"})
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(unknown)} (only requester)")
    text = table.get("requester")
    if text is not None and not isinstance(text, str):
        raise ConfigError(f"{where}.requester: must be text")
    if not text or not text.strip():
        raise ConfigError(f"{where}.requester: missing (what a requester is told about the "
                          "records this hold keeps)")
    return text.strip()


def _instantiate(file: Path, name: str, raw: Any,
                 extra_types: Mapping[str, type[Connector]] | None) -> Connector:
    where = f"{file}: connectors.{name}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    options = dict(raw)
    type_name = options.pop("type", None)
    if not isinstance(type_name, str):
        raise ConfigError(f"{where}.type: missing (the connector's entry-point name)")
    label = _label(options.pop("label", None), where)
    cls = load_type(type_name, f"{where}.type", extra_types)
    options = _from_environment(options, where)
    try:
        config = cls.load_config(options)
    except ValidationError as exc:  # a validator may echo the value: mask the secrets
        message = _flatten(exc.messages)
        raise ConfigError(f"{where}: {_masked(message, cls, options)}") from None
    except Exception as exc:  # a third-party schema's bug: its message may quote anything
        raise ConfigError(f"{where}: loading the configuration raised {type(exc).__name__}: "
                          f"{_masked(str(exc), cls, options)}") from None
    try:
        connector = cls(name, config)
    except Exception as exc:
        raise ConfigError(f"{where}: {cls.__name__}() raised {type(exc).__name__}: "
                          f"{_masked(str(exc), cls, config)}") from None
    connector.label = label
    return connector


def labels(connectors: Mapping[str, Connector]) -> dict[str, str | None]:
    """Each store's name for requesters (:attr:`Connector.label`) by its name."""
    return {name: connector.label for name, connector in connectors.items()}


def _label(value: Any, where: str) -> str | None:
    """The store's name for requesters (``label``, dsar's key like ``type``:
    the connector's schema never sees it), stripped; ``None`` when not given."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.label: must be a non-empty text (the name requesters "
                          "see for this store), or left out")
    return value.strip()


def _masked(message: str, cls: type[Connector], config: Mapping[str, Any]) -> str:
    """``message`` without the secrets of ``config`` (raw or loaded)."""
    try:
        secrets = secret_values(cls.config_schema, config)
    except Exception:  # a schema this cannot walk: keep nothing that may quote it
        return "(message withheld: it may quote a secret)"
    return redact_secrets(message, secrets)


def _from_environment(options: dict[str, Any], where: str) -> dict[str, Any]:
    """Replace every ``<key>_env = "VARIABLE"`` (at any depth) with ``<key>``
    read from that environment variable, so secrets need not sit in the file."""
    resolved: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, dict):
            value = _from_environment(value, f"{where}.{key}")
        elif isinstance(value, list):
            value = [_from_environment(v, f"{where}.{key}") if isinstance(v, dict) else v
                     for v in value]
        if not (key.endswith("_env") and isinstance(value, str)):
            resolved[key] = value
            continue
        target = key.removesuffix("_env")
        if target in options:
            raise ConfigError(f"{where}: give {target} or {key}, not both")
        if value not in os.environ:
            raise ConfigError(f"{where}.{key}: environment variable {value} is not set")
        resolved[target] = os.environ[value]
    return resolved


def _flatten(messages: Any, prefix: str = "") -> str:
    if isinstance(messages, dict):
        return "; ".join(_flatten(v, f"{prefix}{k}.") for k, v in messages.items())
    if isinstance(messages, list):
        return f"{prefix.rstrip('.')}: " + " ".join(str(m) for m in messages)
    return f"{prefix.rstrip('.')}: {messages}"


@dataclass(frozen=True)
class Health:
    """One configured connector's ``check()``: ``message`` with secrets masked."""

    name: str
    type: str
    ok: bool
    message: str


def check_connectors(connectors: Mapping[str, Connector]) -> list[Health]:
    """Run every connector's ``check()``; one that raises counts as not ok
    (named by the exception's type only: its text may quote a secret)."""
    results = []
    for name, connector in connectors.items():
        try:
            result = connector.check()
            ok, message = result.ok, connector.redacted(result.message)
        except Exception as exc:  # check() must not raise; report it as not ok
            ok, message = False, f"check raised {type(exc).__name__}"
        results.append(Health(name, type(connector).__name__, ok, message))
    return results
