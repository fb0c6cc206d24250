"""The connector conformance kit.

A connector's test module subclasses :class:`ConnectorContract` and provides
fixtures; pytest then runs every contract test against that connector::

    from dsar.testing import ConnectorContract

    class TestMyContract(ConnectorContract):
        @pytest.fixture
        def connector(self, tmp_path): ...          # against a freshly seeded store
        @pytest.fixture
        def subject(self): ...                      # a seeded person
        @pytest.fixture
        def other_subject(self): ...                # another seeded person
        @pytest.fixture
        def unreachable_connector(self, tmp_path): ...  # a store that does not exist

Optional fixtures: ``shared_refs`` (refs both subjects genuinely share, e.g. an
email between them; default empty) and ``raw_config`` (a valid raw config for
the schema tests; default the connector's loaded config).

The kit also checks the configuration schema: every credential-like field
(see :func:`credential_like`) is flagged ``metadata={"secret": True}`` (or,
when it is none, ``{"secret": False}``), and neither a loaded configuration,
nor ``check()``'s message, nor the logs show a secret.

The kit only uses the public contract in :mod:`dsar.connector`. Each store
fixture must be function-scoped: erasure tests change the store. The kit needs
pytest, so it is for test suites only.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pytest
from marshmallow import Schema, ValidationError, fields

from dsar.connector import (
    Action,
    Capability,
    CheckResult,
    Connector,
    ErasurePlan,
    ErasureResult,
    Record,
    Stopped,
    Subject,
    masked_config,
    normalise_identifier,
    redact_secrets,
    secret_values,
    stop_scope,
)

__all__ = ["ConnectorContract", "credential_like", "personal_values"]

Ref = tuple[str, str]


def _refs(records: Iterable[Record]) -> list[Ref]:
    return [record.ref for record in records]


def personal_values(subject: Subject, records: Iterable[Record] = ()) -> set[str]:
    """Strings that must never appear in logs or reprs: the subject's
    identifiers (4+ characters) and the string field values of its records
    (8+ characters, to skip flags, types and short codes). Collection names,
    keys and categories are references, not personal data, and are skipped."""
    identifiers = {
        value for kind in subject.kinds for value in subject.values(kind) if len(value) >= 4
    }
    values: set[str] = set()
    references: set[str] = set()
    for record in records:
        references.update((record.collection, record.key, record.category))
        values.update(v for v in _strings(record.fields) if len(v) >= 8)
    return identifiers | (values - references)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


#: a field whose name ends in one of these words holds a credential (``password``,
#: ``api_key``, ``access_token``) or may (``dsn``, ``url``: a URL may carry a password)
CREDENTIAL_ENDINGS = frozenset({
    "password", "passwords", "passwd", "pwd", "passphrase", "secret", "secrets", "token",
    "tokens", "key", "keys", "apikey", "credential", "credentials", "dsn", "url", "uri",
})
#: ... or that holds one of these anywhere (``password_hash``, ``secret_name``)
CREDENTIAL_WORDS = frozenset({
    "password", "passwords", "passwd", "passphrase", "secret", "secrets", "credential",
    "credentials",
})
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
#: secrets shorter than this are not looked for in texts (a test's token "t")
MIN_SECRET = 4


def credential_like(name: str) -> bool:
    """Does a configuration key's name say it holds, or may hold, a
    credential? Its words (split at ``_``, ``-`` and camelCase) end in one of
    :data:`CREDENTIAL_ENDINGS` or contain one of :data:`CREDENTIAL_WORDS`."""
    words = [word.lower() for word in _WORD.findall(name)]
    return bool(words) and (words[-1] in CREDENTIAL_ENDINGS
                            or not CREDENTIAL_WORDS.isdisjoint(words))


def _unflagged(schema: Schema, prefix: str = "",
               seen: frozenset[type] = frozenset()) -> Iterator[str]:
    """Paths of the credential-like fields of ``schema`` that do not say
    whether they are secret (``metadata={"secret": True | False}``)."""
    for name, declared in schema.fields.items():
        key = declared.data_key or name
        yield from _unflagged_field(declared, f"{prefix}{key}", key, False, seen)


def _unflagged_field(declared: fields.Field[Any], path: str, name: str, decided: bool,
                     seen: frozenset[type]) -> Iterator[str]:
    flag = declared.metadata.get("secret")
    if flag is True:  # all of it is masked
        return
    decided = decided or flag is False
    if isinstance(declared, fields.Nested):  # its own fields decide
        nested = declared.schema
        if type(nested) not in seen:
            yield from _unflagged(nested, f"{path}.", seen | {type(nested)})
    elif isinstance(declared, fields.List):
        yield from _unflagged_field(declared.inner, f"{path}[]", name, decided, seen)
    elif isinstance(declared, fields.Tuple):
        for index, inner in enumerate(declared.tuple_fields):
            yield from _unflagged_field(inner, f"{path}[{index}]", name, decided, seen)
    elif isinstance(declared, fields.Mapping) and declared.value_field is not None:
        yield from _unflagged_field(declared.value_field, f"{path}.*", name, decided, seen)
    elif not decided and credential_like(name):
        yield path


def _url_passwords(value: Any, path: str = "") -> Iterator[str]:
    """Paths of the strings in ``value`` that hold a URL with a password."""
    if isinstance(value, str):
        if redact_secrets(value) != value:
            yield path or "(the configuration)"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _url_passwords(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _url_passwords(item, f"{path}[{index}]")


class ConnectorContract:
    """Contract tests every connector must pass. Not collected on its own
    (the name does not start with ``Test``); subclass it in a test module."""

    # ----------------------------------------------------------- fixtures
    @pytest.fixture
    def shared_refs(self) -> set[Ref]:
        """Refs that both subjects genuinely share; override when there are."""
        return set()

    @pytest.fixture
    def raw_config(self, connector: Connector) -> dict[str, Any]:
        """A valid raw configuration; override when the loaded one does not
        load again as it is."""
        return dict(connector.config)

    def _require_erase(self, connector: Connector) -> None:
        if Capability.ERASE not in connector.capabilities:
            pytest.skip("connector does not declare Capability.ERASE")

    def _require_discover(self, connector: Connector) -> None:
        if Capability.DISCOVER not in connector.capabilities:
            pytest.skip("connector does not declare Capability.DISCOVER")

    def _require_stop(self, connector: Connector) -> None:
        if Capability.STOP not in connector.capabilities:
            pytest.skip("connector does not declare Capability.STOP")

    # ----------------------------------------------------------- stop
    def test_find_stops_when_asked(self, connector: Connector, subject: Subject) -> None:
        self._require_stop(connector)
        assert list(connector.find(subject)), "the stop test needs a subject with records"
        yielded = 0
        with stop_scope(threading.Event()) as stop, pytest.raises(Stopped):
            stop.set()
            for _record in connector.find(subject):
                yielded += 1
        assert yielded <= 1, "find must stop within one record of being asked"

    def test_plan_stops_when_asked(self, connector: Connector, subject: Subject) -> None:
        self._require_stop(connector)
        self._require_erase(connector)
        with stop_scope(threading.Event()) as stop, pytest.raises(Stopped):
            stop.set()
            connector.plan_erasure(subject)

    def test_erase_stopped_reports_what_it_did_and_resumes(
        self, connector: Connector, subject: Subject
    ) -> None:
        self._require_stop(connector)
        self._require_erase(connector)
        plan = connector.plan_erasure(subject)
        changing = sum(1 for item in plan.items if item.action is not Action.KEEP)
        with stop_scope(threading.Event()) as stop, pytest.raises(Stopped) as stopped:
            stop.set()
            connector.erase(plan)
        done = stopped.value.done or ErasureResult()
        assert done.deleted + done.masked <= min(changing, 1), (
            "erase must stop within one record of being asked")
        connector.erase(plan)  # a rerun after a stop finishes the job
        assert set(_refs(connector.find(subject))) <= plan.kept()

    # ----------------------------------------------------------- discover
    def test_discover_returns_identifiers_and_changes_nothing(
        self, connector: Connector, subject: Subject
    ) -> None:
        self._require_discover(connector)
        before = sorted(_refs(connector.find(subject)))
        found = connector.discover(subject)
        assert isinstance(found, Mapping), "discover returns {kind: values}"
        for kind, values in found.items():
            assert isinstance(kind, str) and kind
            assert all(isinstance(v, str) and v.strip() for v in values), kind
        assert sorted(_refs(connector.find(subject))) == before, "discover changed the store"

    def test_discover_nothing_for_unknown_subject(self, connector: Connector) -> None:
        self._require_discover(connector)
        nobody = Subject({kind: {"zz-no-such-person-4711@example.invalid"}
                          for kind in connector.identity_kinds})
        assert not any(list(v) for v in connector.discover(nobody).values())

    def test_discover_stays_with_the_subject(
        self, connector: Connector, subject: Subject, other_subject: Subject
    ) -> None:
        self._require_discover(connector)
        found = {(k, normalise_identifier(k, v)) for k, values in
                 connector.discover(subject).items() for v in values}
        theirs = {(k, v) for k, values in other_subject.identifiers.items() for v in values}
        assert not (found & theirs), "discover returned the other subject's identifiers"

    # ----------------------------------------------------------- find
    def test_declares_find_and_subject_kinds(self, connector: Connector, subject: Subject) -> None:
        assert Capability.FIND in connector.capabilities
        assert subject.kinds & set(connector.identity_kinds), (
            "subject has no kind the connector accepts"
        )

    def test_find_returns_subject_records_only(
        self, connector: Connector, subject: Subject, other_subject: Subject, shared_refs: set[Ref]
    ) -> None:
        mine = list(connector.find(subject))
        theirs = set(_refs(connector.find(other_subject)))
        assert mine, "find returned nothing for the seeded subject"
        assert theirs, "find returned nothing for the other seeded subject"
        assert all(isinstance(r, Record) for r in mine)
        leaked = (set(_refs(mine)) & theirs) - set(shared_refs)
        assert not leaked, f"records of the other subject found for the subject: {sorted(leaked)}"

    def test_find_streams(self, connector: Connector, subject: Subject) -> None:
        found = connector.find(subject)
        assert isinstance(found, Iterator), "find must yield records, not build a list"

    def test_find_nothing_for_empty_or_unknown_subject(self, connector: Connector) -> None:
        assert list(connector.find(Subject({}))) == []
        strangers = {
            kind: {"zz-no-such-person-4711@example.invalid"} for kind in connector.identity_kinds
        }
        assert list(connector.find(Subject(strangers))) == []

    def test_find_ignores_kinds_it_does_not_accept(
        self, connector: Connector, subject: Subject
    ) -> None:
        extended = Subject({**subject.identifiers, "x-unknown-kind": {"whatever"}})
        assert sorted(_refs(connector.find(extended))) == sorted(_refs(connector.find(subject)))

    def test_keys_unique_and_find_repeatable(self, connector: Connector, subject: Subject) -> None:
        first = _refs(connector.find(subject))
        assert len(first) == len(set(first)), "duplicate (collection, key) refs"
        assert sorted(first) == sorted(_refs(connector.find(subject)))

    def test_fields_are_json_serialisable(self, connector: Connector, subject: Subject) -> None:
        for record in connector.find(subject):
            assert isinstance(record.key, str) and isinstance(record.collection, str)
            assert record.category, "every record needs a category"
            json.dumps(dict(record.fields))

    # ----------------------------------------------------------- plan
    def test_plan_lists_every_record_once_and_changes_nothing(
        self, connector: Connector, subject: Subject
    ) -> None:
        self._require_erase(connector)
        before = sorted(_refs(connector.find(subject)))
        plan = connector.plan_erasure(subject)
        assert isinstance(plan, ErasurePlan)
        assert plan.connector == connector.name
        planned = [item.ref for item in plan.items]
        assert sorted(planned) == before, "the plan must list every found record exactly once"
        for item in plan.items:
            assert isinstance(item.action, Action)
            if item.action is not Action.DELETE:
                assert item.detail, f"{item.action.value} needs a detail (how masked / which hold)"
            assert isinstance(item.holds, tuple) and all(
                isinstance(h, str) and h.strip() for h in item.holds), \
                f"holds is a tuple of hold names, not {item.holds!r}"
            assert item.action is Action.KEEP or not item.holds, \
                f"only a kept record names holds ({item.action.value} names {item.holds!r})"
        assert sorted(_refs(connector.find(subject))) == before, "planning changed the store"
        json.dumps(plan.extra)

    # ----------------------------------------------------------- erase
    def test_erase_then_find_returns_only_kept(
        self, connector: Connector, subject: Subject
    ) -> None:
        self._require_erase(connector)
        plan = connector.plan_erasure(subject)
        result = connector.erase(plan)
        assert isinstance(result, ErasureResult)
        left = set(_refs(connector.find(subject)))
        assert left <= plan.kept(), (
            f"erasure left records the plan does not keep: {sorted(left - plan.kept())}"
        )

    def test_erase_spares_other_subject(
        self, connector: Connector, subject: Subject, other_subject: Subject, shared_refs: set[Ref]
    ) -> None:
        self._require_erase(connector)
        before = {
            r.ref: dict(r.fields) for r in connector.find(other_subject) if r.ref not in shared_refs
        }
        connector.erase(connector.plan_erasure(subject))
        after = {r.ref: dict(r.fields) for r in connector.find(other_subject)}
        missing = set(before) - set(after)
        assert not missing, f"erasing the subject removed the other's records: {sorted(missing)}"
        changed = sorted(ref for ref in before if before[ref] != after[ref])
        assert not changed, f"erasing the subject changed the other's records: {changed}"

    def test_erase_twice_is_harmless(self, connector: Connector, subject: Subject) -> None:
        self._require_erase(connector)
        plan = connector.plan_erasure(subject)
        connector.erase(plan)
        connector.erase(plan)
        assert set(_refs(connector.find(subject))) <= plan.kept()

    # ----------------------------------------------------------- check
    def test_check_ok_on_good_store(self, connector: Connector) -> None:
        result = connector.check()
        assert isinstance(result, CheckResult)
        assert result.ok, result.message

    def test_check_reports_unreachable_store(self, unreachable_connector: Connector) -> None:
        result = unreachable_connector.check()
        assert isinstance(result, CheckResult)
        assert result.ok is False
        assert result.message and result.message != "ok"

    # ----------------------------------------------------------- config
    def test_config_loads_and_rejects_unknown_key(
        self, connector: Connector, raw_config: dict[str, Any]
    ) -> None:
        type(connector).load_config(raw_config)
        with pytest.raises(ValidationError):
            type(connector).load_config({**raw_config, "zz_unknown_key": "x"})

    def test_config_rejects_missing_required_key(
        self, connector: Connector, raw_config: dict[str, Any]
    ) -> None:
        required = [
            name for name, f in type(connector).config_schema().fields.items() if f.required
        ]
        if not required:
            pytest.skip("the config schema has no required key")
        for name in required:
            raw = {k: v for k, v in raw_config.items() if k != name}
            with pytest.raises(ValidationError):
                type(connector).load_config(raw)

    # ----------------------------------------------------------- secrets
    def test_credential_fields_are_flagged_secret(
        self, connector: Connector, raw_config: dict[str, Any]
    ) -> None:
        schema = type(connector).config_schema()
        unflagged = sorted(_unflagged(schema))
        assert not unflagged, (
            "config fields that look like credentials are not flagged secret: "
            + ", ".join(unflagged) + ' (metadata={"secret": True}; {"secret": False} if one '
            "never holds a credential)")
        for config in (raw_config, connector.config):
            shown = masked_config(schema, config)
            with_password = sorted(_url_passwords(shown))
            assert not with_password, (
                "a URL with a password in a config field not flagged secret: "
                + ", ".join(with_password))
            secrets = {s for s in secret_values(schema, raw_config) | secret_values(
                schema, connector.config) if len(s) >= MIN_SECRET}
            text = json.dumps(shown, default=str)
            copied = any(secret in text for secret in secrets)  # quotes none on failure
            assert not copied, "a secret of the configuration is copied into a field not " \
                "flagged secret"

    def test_check_and_logs_hold_no_secret(
        self, connector: Connector, unreachable_connector: Connector,
        caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        for instance in (connector, unreachable_connector):
            secrets = {s for s in secret_values(type(instance).config_schema, instance.config)
                       if len(s) >= MIN_SECRET}
            texts = [instance.check().message, repr(instance)]
            texts += [log.getMessage() + (log.exc_text or "") for log in caplog.records]
            # any(): a failure must not quote the secret it found
            leaked = any(secret in text for secret in secrets for text in texts)
            assert not leaked, "a secret of the configuration in check()'s message, the " \
                "repr or the logs"

    # ----------------------------------------------------------- privacy
    def test_reprs_hold_no_personal_data(self, connector: Connector, subject: Subject) -> None:
        records = list(connector.find(subject))
        secrets = personal_values(subject, records)
        texts = [repr(subject), repr(connector), *map(repr, records)]
        if Capability.ERASE in connector.capabilities:
            texts += [item.detail for item in connector.plan_erasure(subject).items]
        for text in texts:
            assert not [s for s in secrets if s in text], f"personal data in {text!r}"

    def test_logs_hold_no_personal_data(
        self, connector: Connector, subject: Subject, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        records = list(connector.find(subject))
        if Capability.ERASE in connector.capabilities:
            connector.erase(connector.plan_erasure(subject))
            list(connector.find(subject))
        secrets = personal_values(subject, records)
        for log in caplog.records:
            text = log.getMessage() + (log.exc_text or "")
            assert not [s for s in secrets if s in text], f"personal data logged by {log.name}"
