"""The ``rest`` connector's configuration: marshmallow schemas and profiles.

Everything is checked at load time, before any request runs: a search
endpoint must use ``{value}`` (one that does not would match everybody), an
endpoint that acts on one record must use ``{id}``, a ``parent`` must name a
declared object type, and each erasure strategy must have what it needs.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from .templates import placeholders

KINDS = ("email", "phone", "customer_id")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
STRATEGIES = ("delete", "anonymise", "keep")
AUTH_KINDS = {
    "api_key": ("header", "key"),
    "bearer": ("token",),
    "basic": ("username", "password"),
    "oauth2_client_credentials": ("token_url", "client_id", "client_secret"),
}
_AUTH_OPTIONAL = {"oauth2_client_credentials": ("scope", "client_auth")}
_NAME = r"^[A-Za-z][A-Za-z0-9_-]*$"
_PROFILE = re.compile(r"^[a-z0-9_]+$")
_HTTP_URL = validate.URL(relative=False, schemes={"http", "https"}, require_tld=False)
SECRET = {"secret": True}
#: a URL that is shown: credentials go in ``auth``, never in it (``_no_credentials``)
NOT_SECRET = {"secret": False}


def _header_safe(value: str) -> None:
    # http.client would refuse a control character later, quoting the value
    # (a credential) in its error; refuse it here without quoting it.
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValidationError("must not contain control characters (line breaks, tabs)")


def _no_credentials(value: str) -> None:
    # a URL is shown and logged as it is; urllib would send its user:password@
    # as part of the host, and quote it in its error
    if "@" in urlsplit(value).netloc:
        raise ValidationError("must not hold a user or password (user:password@): "
                              "give credentials in auth")


def _absolute_path(value: str) -> None:
    if not value.startswith("/"):
        raise ValidationError("must start with /")


class Names(fields.Field[Any]):
    """A string or a list of strings, loaded as a non-empty list."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(
                isinstance(v, str) and v for v in items):
            raise ValidationError("must be a non-empty string or a list of them")
        return list(items)


class AuthSchema(Schema):
    """How requests authenticate; ``kind`` decides which keys are needed."""

    kind = fields.String(required=True, validate=validate.OneOf(sorted(AUTH_KINDS)))
    header = fields.String(load_default=None, validate=[validate.Length(min=1), _header_safe])
    key = fields.String(load_default=None, validate=_header_safe, metadata=SECRET)
    token = fields.String(load_default=None, validate=_header_safe, metadata=SECRET)
    username = fields.String(load_default=None, validate=_header_safe)
    password = fields.String(load_default=None, validate=_header_safe, metadata=SECRET)
    token_url = fields.String(load_default=None, validate=[_HTTP_URL, _no_credentials],
                              metadata=NOT_SECRET)
    client_id = fields.String(load_default=None, validate=_header_safe)
    client_secret = fields.String(load_default=None, validate=_header_safe, metadata=SECRET)
    scope = fields.String(load_default=None)
    client_auth = fields.String(load_default=None, validate=validate.OneOf(["basic", "body"]))

    @validates_schema
    def _keys_of_kind(self, data: dict[str, Any], **_: Any) -> None:
        needed = AUTH_KINDS.get(data.get("kind", ""), ())
        allowed = {"kind", *needed, *_AUTH_OPTIONAL.get(data.get("kind", ""), ())}
        errors = {name: ["required for this auth kind"] for name in needed if not data.get(name)}
        unused = [name for name, value in data.items() if value is not None and name not in allowed]
        errors.update({name: [f"not used by auth kind {data.get('kind')!r}"] for name in unused})
        if errors:
            raise ValidationError(errors)


def _json_template(value: Any) -> None:
    if not isinstance(value, dict | list):
        raise ValidationError("must be a table or an array (a JSON body template)")
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise ValidationError("must be JSON-serialisable") from None


class EndpointSchema(Schema):
    """One HTTP call: method, path under ``base_url``, query and JSON body
    templates. Placeholders: ``{value}``, ``{field}`` (searches), ``{id}``."""

    method = fields.String(load_default="GET", validate=validate.OneOf(METHODS))
    path = fields.String(required=True, validate=_absolute_path)
    query = fields.Dict(keys=fields.String(validate=validate.Length(min=1)), values=fields.Raw(),
                        load_default=dict)
    body = fields.Raw(load_default=None, validate=_json_template)

    @validates("query")
    def _scalar_query(self, value: dict[str, Any], data_key: str) -> None:
        for name, item in value.items():
            items = item if isinstance(item, list) else [item]
            if not all(isinstance(v, str | int | float | bool) for v in items):
                raise ValidationError(f"{name}: query values are strings, numbers or lists")


class DeleteSchema(EndpointSchema):
    method = fields.String(load_default="DELETE", validate=validate.OneOf(METHODS))


class AnonymiseSchema(EndpointSchema):
    method = fields.String(load_default="PATCH", validate=validate.OneOf(METHODS))
    body = fields.Raw(required=True, validate=_json_template)


class ReadSchema(EndpointSchema):
    record = fields.String(load_default="")  # dotted path of the record in the response


class PagingSchema(Schema):
    """``offset``: limit/offset parameters; ``cursor``: a cursor parameter
    and where the next cursor is; ``next_link``: a next URL at ``next`` or,
    when ``next`` is unset, in the ``Link`` header. ``location`` places the
    parameters in the JSON body or the query (``auto``: body if there is one)."""

    kind = fields.String(required=True, validate=validate.OneOf(["offset", "cursor", "next_link"]))
    param = fields.String(load_default="after")
    next = fields.String(load_default=None)
    limit_param = fields.String(load_default="limit")
    offset_param = fields.String(load_default="offset")
    page_size = fields.Integer(load_default=100, validate=validate.Range(min=1))
    location = fields.String(load_default="auto",
                             validate=validate.OneOf(["auto", "body", "query"]))
    max_pages = fields.Integer(load_default=1000, validate=validate.Range(min=1))

    @validates_schema
    def _next_for_cursor(self, data: dict[str, Any], **_: Any) -> None:
        if data["kind"] == "cursor" and not data.get("next"):
            raise ValidationError({"next": ["cursor paging needs the path of the next cursor"]})


class SearchSchema(EndpointSchema):
    results = fields.String(load_default="results")  # dotted path of the result list
    id = fields.String(load_default="id")            # dotted path of a result's id
    paging = fields.Nested(PagingSchema, load_default=None)


class ObjectSchema(Schema):
    """One object type (contacts, tickets...): how to find its records and
    what erasure does to them."""

    category = fields.String(load_default="profile", validate=validate.Length(min=1))
    identity = fields.Dict(keys=fields.String(validate=validate.OneOf(KINDS)), values=Names(),
                           load_default=None, validate=validate.Length(min=1))
    parent = fields.String(load_default=None)
    match = fields.Dict(keys=fields.String(validate=validate.OneOf(KINDS)), values=Names(),
                        load_default=dict)
    discover = fields.Dict(keys=fields.String(validate=validate.OneOf(KINDS)), values=Names(),
                           load_default=dict)
    search = fields.Nested(SearchSchema, required=True)
    read = fields.Nested(ReadSchema, load_default=None)
    erase = fields.String(required=True, validate=validate.OneOf(STRATEGIES))
    delete = fields.Nested(DeleteSchema, load_default=None)
    anonymise = fields.Nested(AnonymiseSchema, load_default=None)
    hold = fields.String(load_default=None, validate=validate.Length(min=1))
    reason = fields.String(load_default=None, validate=validate.Length(min=1))

    @validates_schema
    def _consistent(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, list[str]] = {}
        if (data.get("identity") is None) == (data.get("parent") is None):
            errors["identity"] = ["set exactly one of identity (kind = field) and parent"]
        if set(data.get("match") or {}) - set(data.get("identity") or {}):
            errors["match"] = ["only kinds listed in identity can be matched"]
        if data.get("discover") and data.get("identity") is None:
            errors["discover"] = ["only object types with identity can discover identifiers"]
        strategy = data.get("erase")
        if strategy == "delete" and not data.get("delete"):
            errors["delete"] = ["erase = 'delete' needs a delete endpoint"]
        if strategy == "anonymise" and not data.get("anonymise"):
            errors["anonymise"] = ["erase = 'anonymise' needs an anonymise endpoint"]
        if strategy == "keep" and not (data.get("hold") and data.get("reason")):
            errors["hold"] = ["erase = 'keep' needs hold and reason"]
        errors.update(_placeholder_errors(data))
        if errors:
            raise ValidationError(errors)


def _used(endpoint: Mapping[str, Any]) -> set[str]:
    query = endpoint.get("query") or {}
    return placeholders([endpoint["path"], list(query), query, endpoint.get("body")])


def _placeholder_errors(data: dict[str, Any]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    search = data.get("search")
    if search:
        allowed = {"value", "field"} if data.get("identity") is not None else {"value"}
        used = _used(search)
        if "value" not in used:
            errors["search"] = ["must use {value} (a search without it would match everybody)"]
        elif used - allowed:
            errors["search"] = [f"cannot use {{{sorted(used - allowed)[0]}}} here"]
    for name in ("read", "delete", "anonymise"):
        endpoint = data.get(name)
        if endpoint and _used(endpoint) != {"id"}:
            errors[name] = ["must use {id} (and no other placeholder)"]
    return errors


class RestConfigSchema(Schema):
    """The whole instance: where the API is, how to authenticate, the object
    types, and the HTTP policy (timeout, tries, backoff, Retry-After cap)."""

    base_url = fields.String(required=True, validate=[_HTTP_URL, _no_credentials],
                             metadata=NOT_SECRET)
    auth = fields.Nested(AuthSchema, required=True)
    objects = fields.Dict(keys=fields.String(validate=validate.Regexp(_NAME)),
                          values=fields.Nested(ObjectSchema), required=True,
                          validate=validate.Length(min=1))
    check = fields.Nested(EndpointSchema, load_default=None)
    timeout = fields.Float(load_default=30.0, validate=validate.Range(min=0, min_inclusive=False))
    max_tries = fields.Integer(load_default=4, validate=validate.Range(min=1, max=10))
    backoff = fields.Float(load_default=0.5, validate=validate.Range(min=0))
    retry_after_cap = fields.Float(load_default=60.0, validate=validate.Range(min=0))

    @validates_schema
    def _object_graph(self, data: dict[str, Any], **_: Any) -> None:
        objects = data.get("objects") or {}
        for name, spec in objects.items():
            seen = [name]
            while spec.get("parent") is not None:
                if spec["parent"] not in objects:
                    raise ValidationError({"objects": {name: {"parent": [
                        f"unknown object type {spec['parent']!r}"]}}})
                if spec["parent"] in seen:
                    raise ValidationError({"objects": {name: {"parent": [
                        "parents form a cycle: " + " -> ".join([*seen, spec["parent"]])]}}})
                seen.append(spec["parent"])
                spec = objects[spec["parent"]]
        check = data.get("check")
        if check and _used(check):
            raise ValidationError({"check": ["takes no placeholders"]})


def shipped_profiles() -> list[str]:
    """Names of the profiles in ``connectors/profiles``."""
    folder = resources.files("connectors").joinpath("profiles")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def read_profile(name: str) -> dict[str, Any]:
    """A shipped profile's options; ``ValidationError`` on ``profile`` if unknown."""
    if not isinstance(name, str) or not _PROFILE.match(name) or name not in shipped_profiles():
        known = ", ".join(shipped_profiles()) or "none"
        raise ValidationError({"profile": [f"unknown profile (shipped: {known})"]})
    text = resources.files("connectors").joinpath("profiles", f"{name}.toml").read_text("utf-8")
    return tomllib.loads(text)


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``: tables merge key by key, anything
    else (strings, arrays) replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``raw``; with ``profile = "name"`` the shipped profile is the
    base and ``raw`` overrides it. Raises marshmallow's ``ValidationError``."""
    options = dict(raw)
    if "profile" in options:
        options = merge(read_profile(options.pop("profile")), options)
    return dict(RestConfigSchema().load(options))
