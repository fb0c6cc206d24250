"""Fuzz every route of the portal and the API: no input gets a 5xx or a traceback.

The routes come from ``app.url_map``, so a new route is fuzzed without being
listed here. Each example sends one generated request: any method (odd ones
too), a path built from the rule with generated or real values (a real
request id and its bearer token, or anything), a query, a content type and a
body (JSON of any shape, forms with the fields the views read, raw bytes,
NULs, lone surrogates, huge strings). Portal forms get a valid CSRF token,
none or a wrong one, so their validation is reached too. The limits are
raised so that 429s do not hide what lies behind them. Deterministic
(``derandomize``), bounded, and writes no ``.hypothesis`` folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.routing import Rule

from tests.api.helpers import BASE

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)

#: examples per run: about 5 s here per database; DSAR_FUZZ_EXAMPLES=20000 for a longer hunt
EXAMPLES = int(os.environ.get("DSAR_FUZZ_EXAMPLES", "1000"))
UNLIMITED = {f"RATE_LIMIT_{name}": "100000 per hour" for name in ("SUBMIT", "VERIFY", "RESEND")}
FIELDS = ["kind", "email", "name", "message", "code", "phone", "customer_id", "csrf_token",
          "token", "status_token"]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "PROPFIND", "TRACE"]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8",
                 "application/json; charset=latin-1", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=b", "multipart/form-data", "text/plain",
                 "application/xml", "", "application/*", "x/x; a=\"\\\x7f"]
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

#: any code point, lone surrogates and NUL included
any_char = st.characters(codec=None, exclude_categories=())
short_text = st.one_of(
    st.text(any_char, max_size=40),
    st.sampled_from(["", " ", "\x00", "\ud800", "ann\ud800@example.org", "a@b.c",
                     "alice@example.org", "access", "erasure", "123456", "0" * 6, "\u202e",
                     "x" * 300, "a" * 250 + "@example.org", "\U0001f600@example.org"]),
)
#: bodies also get huge strings (URLs do not: they are not where 64 KiB arrive)
odd_text = st.one_of(
    short_text,
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "\u00e9", "\ud800", "\x00", "@"]),
              st.sampled_from([201, 5001, 70_000])),
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=12)
#: the fields the views read, each present or not, mostly text (what gets furthest)
known_fields = st.fixed_dictionaries(
    {}, optional={name: odd_text | odd_text | json_value for name in FIELDS})
json_body = st.one_of(
    known_fields, known_fields,
    st.dictionaries(odd_text, json_value, max_size=4),
    json_value,
).map(lambda value: json.dumps(value).encode())  # ensure_ascii: surrogates as \\udXXX
form_body = st.one_of(
    st.fixed_dictionaries({}, optional={name: odd_text for name in FIELDS}),
    st.dictionaries(odd_text, odd_text, max_size=4))
raw_body = st.binary(max_size=200) | st.sampled_from([b"", b"{", b"[" * 5000, b"\xff\xfe",
                                                      b"--b\r\n\r\n--b--", b"\x00" * 10])


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _form_bytes(fields: dict[str, str]) -> bytes:
    return "&".join(f"{quote(_bytes(k), safe='')}={quote(_bytes(v), safe='')}"
                    for k, v in fields.items()).encode()


class Target:
    """The app under fuzz, one real request (id and token) and the portal's CSRF token."""

    def __init__(self, app: Flask) -> None:
        self.app, self.client = app, app.test_client()
        self.csrf = _CSRF.search(self.client.get("/").text).group(1)  # type: ignore[union-attr]
        answer = self.client.post(BASE, json={"kind": "access", "email": "alice@example.org"})
        self.request_id, self.token = answer.json["id"], answer.json["status_token"]  # type: ignore[index]
        self.rules = sorted((r for r in app.url_map.iter_rules()),
                            key=lambda r: (r.rule, r.endpoint))
        self.seen: set[str] = set()


@st.composite
def requests(draw: st.DrawFn, target: Target) -> dict[str, Any]:
    rule: Rule = draw(st.sampled_from(target.rules))
    values = {}
    for name in sorted(rule.arguments):
        real = target.request_id if name == "request_id" else "portal.css"
        values[name] = draw(st.just(real) | short_text.filter(bool))
    path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>",
                  lambda m: quote(_bytes(values[m.group(1)]), safe="/" if "path" in m.group(0)
                                  else ""), rule.rule)
    query = draw(st.dictionaries(st.sampled_from(FIELDS) | short_text, short_text, max_size=3))
    if query:
        path += "?" + urlencode({_bytes(k): _bytes(v) for k, v in query.items()})
    method = draw(st.sampled_from(sorted(rule.methods or [])) | st.sampled_from(["POST"])
                  | st.sampled_from(METHODS))
    kind = draw(st.sampled_from(["json", "form", "raw", "none"]))
    body: bytes = b""
    content_type = draw(st.sampled_from(CONTENT_TYPES))  # mostly the body's own type:
    if kind == "json":
        body = draw(json_body)
        content_type = draw(st.just("application/json") | st.just(content_type))
    elif kind == "form":
        content_type = draw(st.just("application/x-www-form-urlencoded")
                            | st.just(content_type))
        fields = draw(form_body)
        csrf = draw(st.sampled_from(["valid", "none", "wrong"]))
        if csrf != "none":
            fields["csrf_token"] = target.csrf if csrf == "valid" else "x" + target.csrf[1:]
        body = _form_bytes(fields)
    elif kind == "raw":
        body = draw(raw_body)
    headers = {}
    auth = draw(st.sampled_from(["real", "none", "odd"]))
    if auth == "real":
        headers["Authorization"] = f"Bearer {target.token}"
    elif auth == "odd":
        header = draw(st.text(st.characters(codec="latin-1", exclude_characters="\r\n"),
                              max_size=300))
        headers["Authorization"] = draw(st.sampled_from(["Bearer ", ""])) + header
    return {"rule": rule.rule, "path": path, "method": method, "data": body,
            "content_type": content_type or None, "headers": headers}


class ErrorRecords(logging.Handler):
    """Every record at ERROR or above, and any with a traceback, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info or record.exc_text:
            self.records.append(record)


def test_no_input_gets_a_5xx_or_a_traceback(make_app: Callable[..., Flask],
                                            tmp_path: Path) -> None:
    target = Target(make_app(OUTBOX_DIR=str(tmp_path / "outbox"), TESTING=True, **UNLIMITED))
    errors = ErrorRecords()
    root = logging.getLogger()
    root.addHandler(errors)

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(requests(target))
    def one_request(sent: dict[str, Any]) -> None:
        errors.records.clear()  # each example on its own (hypothesis shrinks failures)
        target.seen.add(sent["rule"])
        rule = sent.pop("rule")
        answer = target.client.open(**sent)
        with answer:
            body = answer.get_data()
        assert answer.status_code < 500, (rule, sent["method"], answer.status_code, body[:300])
        assert b"Traceback" not in body
        assert not errors.records, [r.getMessage() for r in errors.records]

    started = time.monotonic()
    try:
        one_request()
    finally:
        root.removeHandler(errors)
    elapsed = time.monotonic() - started
    missed = {rule.rule for rule in target.rules} - target.seen
    assert not missed, f"routes never fuzzed: {sorted(missed)}"
    print(f"fuzzed {EXAMPLES} examples over {len(target.rules)} routes in {elapsed:.1f} s")
