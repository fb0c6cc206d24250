"""The ``sql`` connector's configuration: marshmallow schemas.

The schema checks what each table says on its own (syntax, strategies, holds,
that a masked row stops matching the subject). What needs the whole dataset or
the database (unknown tables and columns, cycles, dangling references, NOT NULL
columns, column types and lengths) is checked by ``SqlTableConnector.check()``,
which names every mistake at once.

A loaded configuration loads again unchanged (the engine and the conformance kit
rely on it). The old per-table form ``erase = "null"`` with ``null_columns`` is
still accepted and loads as ``erase = "mask"`` with ``columns = {c = "null"}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from marshmallow import (
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

__all__ = ["KINDS", "MIN_HASH_KEY", "SqlConfigSchema", "TableSchema", "identity_column"]

#: identifier kinds every instance may use; any other lower-case name is accepted too
KINDS = frozenset({"email", "phone", "customer_id"})
KIND_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
TARGET = re.compile(r"^[^.\s]+(\.[^.\s]+)*\.[^.\s]+$")  # table.column (table may hold dots)
ROW_ACTIONS = ("delete", "mask", "keep", "null")  # "null": the old form of "mask"
MIN_HASH_KEY = 16


class StrategyField(fields.Field[Any]):
    """One column's erasure strategy: ``"null"``, ``"hash"``,
    ``{ fixed = "text" }`` or ``{ keep = "hold-name" }``. Loads to itself."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if value in ("null", "hash"):
            return value
        if isinstance(value, Mapping) and len(value) == 1:
            (how, arg), = value.items()
            if how in ("fixed", "keep") and isinstance(arg, str) and (arg or how == "fixed"):
                return {how: arg}
        raise ValidationError(
            'expected "null", "hash", { fixed = "text" } or { keep = "hold-name" }'
        )


class IdentityField(fields.Field[Any]):
    """One identity column: ``"column"`` or ``{ column = "email", normalised =
    true }``: the column holds values in normalised form only (checked by
    ``check()``), so lookups compare it as it is and a plain index serves them.
    Loads to itself (the table form with ``normalised`` filled in)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and value:
            return value
        if isinstance(value, Mapping) and set(value) <= {"column", "normalised"}:
            column, normalised = value.get("column"), value.get("normalised", False)
            if isinstance(column, str) and column and isinstance(normalised, bool):
                return {"column": column, "normalised": normalised}
        raise ValidationError('expected "column" or { column = "name", normalised = true }')


def identity_column(value: Any) -> str:
    """The column of an identity entry (either form of :class:`IdentityField`)."""
    return str(value["column"] if isinstance(value, Mapping) else value)


class ReferenceField(fields.Field[Any]):
    """A reference to a parent row: ``"table.column"`` or
    ``{ to = "table.column", follow = false }``. Loads to itself."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and TARGET.match(value):
            return value
        if isinstance(value, Mapping) and set(value) <= {"to", "follow"}:
            to, follow = value.get("to"), value.get("follow", True)
            if isinstance(to, str) and TARGET.match(to) and isinstance(follow, bool):
                return {"to": to, "follow": follow}
        raise ValidationError(
            'expected "table.column" or { to = "table.column", follow = false }'
        )


def _kind(value: str) -> None:
    if not KIND_NAME.match(value):
        raise ValidationError(f"{value!r} is not an identifier kind (lower-case, like email)")


class TableSchema(Schema):
    """One table: how the subject's rows are found and what erasure does."""

    name = fields.String(required=True, validate=validate.Length(min=1))
    #: a column's name, not a credential
    key = fields.String(load_default="id", validate=validate.Length(min=1),
                        metadata={"secret": False})
    category = fields.String(load_default="profile", validate=validate.Length(min=1))
    identity = fields.Dict(keys=fields.String(validate=_kind), values=IdentityField(),
                           load_default=dict)
    references = fields.Dict(keys=fields.String(validate=validate.Length(min=1)),
                             values=ReferenceField(), load_default=dict)
    erase = fields.String(required=True, validate=validate.OneOf(ROW_ACTIONS))
    columns = fields.Dict(keys=fields.String(validate=validate.Length(min=1)),
                          values=StrategyField(), load_default=dict)
    null_columns = fields.List(fields.String(), load_default=list)  # old form of columns
    hold = fields.String(load_default=None)
    reason = fields.String(load_default=None)
    #: report this table's identity columns of the subject's rows as further
    #: identifiers (identity expansion); off unless asked for
    discover = fields.Boolean(load_default=False)

    @validates_schema
    def _reachable(self, data: dict[str, Any], **_: Any) -> None:
        if not data["identity"] and not data["references"]:
            raise ValidationError("a table needs identity columns or references "
                                  "(how else are the subject's rows found?)", "identity")

    @validates_schema
    def _row_action(self, data: dict[str, Any], **_: Any) -> None:
        erase, columns = data["erase"], data["columns"]
        if erase == "null":
            _old_null_form(data)
            return
        if data["null_columns"]:
            raise ValidationError('null_columns goes with erase = "null"; '
                                  'use columns = { col = "null" }', "null_columns")
        if erase == "delete" and columns:
            raise ValidationError("columns apply to erase = mask or keep; delete removes "
                                  "the whole row", "columns")
        if erase == "keep" and not data.get("hold"):
            raise ValidationError("erase = keep needs a hold (a name from holds)", "hold")
        key_strategy = columns.get(data["key"])
        if key_strategy is not None and not (isinstance(key_strategy, dict)
                                             and "keep" in key_strategy):
            raise ValidationError(f"the key column {data['key']!r} cannot be masked", "columns")
        if erase == "mask":
            if not columns:
                raise ValidationError("erase = mask needs columns = { col = strategy }",
                                      "columns")
            loose = sorted(c for c in map(identity_column, data["identity"].values())
                           if c not in columns)
            if loose:
                raise ValidationError(
                    "every identity column needs a strategy, or the masked row is still "
                    "the subject's; missing: " + ", ".join(loose), "columns")

    @post_load
    def _new_form(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if data["erase"] == "null":
            nulls = dict.fromkeys(data.pop("null_columns"), "null")
            data.update(erase="mask", columns={**nulls, **data["columns"]}, null_columns=[])
        return data


def _old_null_form(data: dict[str, Any]) -> None:
    missing = sorted(set(map(identity_column, data["identity"].values()))
                     - set(data["null_columns"]))
    if missing:
        raise ValidationError("null_columns must include every identity column; missing: "
                              + ", ".join(missing), "null_columns")
    if data["key"] in data["null_columns"]:
        raise ValidationError("the key column cannot be nulled", "null_columns")


class SqlConfigSchema(Schema):
    """The whole instance: where the database is and the dataset in it."""

    url = fields.String(required=True, validate=validate.Length(min=1),
                        metadata={"secret": True})
    hash_key = fields.String(load_default=None, validate=validate.Length(min=MIN_HASH_KEY),
                             metadata={"secret": True})
    holds = fields.Dict(keys=fields.String(validate=validate.Length(min=1)),
                        values=fields.String(validate=validate.Length(min=1)),
                        load_default=dict)
    tables = fields.List(fields.Nested(TableSchema), required=True,
                         validate=validate.Length(min=1))

    @validates_schema
    def _dataset(self, data: dict[str, Any], **_: Any) -> None:
        tables = data.get("tables") or []
        names = [t["name"] for t in tables]
        if len(names) != len(set(names)):
            raise ValidationError("each table may be listed once", "tables")
        holds = data.get("holds") or {}
        for table in tables:
            _holds_known(table, holds)
            hashed = [c for c, s in table["columns"].items() if s == "hash"]
            if hashed and not data.get("hash_key"):
                raise ValidationError(
                    f"{table['name']}.{hashed[0]} uses hash: set hash_key (a secret of "
                    f"at least {MIN_HASH_KEY} characters)", "hash_key")


def _holds_known(table: dict[str, Any], holds: Mapping[str, str]) -> None:
    named = [table["hold"]] if table.get("hold") else []
    named += [s["keep"] for s in table["columns"].values() if isinstance(s, dict) and "keep" in s]
    for hold in named:
        inline = hold == table.get("hold") and table.get("reason")
        if hold not in holds and not inline:
            raise ValidationError(
                f"table {table['name']}: hold {hold!r} is not in holds (holds = "
                "{ name = \"retention reason\" }), and the table gives no reason", "holds")
