"""Every key function, digest and log filter survives any string: lone
surrogates (JSON's ``"\\ud800"``), NULs, huge and odd unicode. Such text is
then refused by validation like any other bad value, never a 500."""

from __future__ import annotations

import logging
import time

import pytest
from flask import Flask

from dsar.crypto import Crypto, constant_time_equal
from dsar.extensions import client_address, holder_key
from dsar.logfilter import RedactingFilter, redact
from tests.support.app import SECRET

ODD = ["ann\ud800@example.org", "\udfff", "a\x00b@example.org", "\U0010ffff" * 300, "",
       "x" * 100_000, "\ud83d\ude00@example.org"]


@pytest.mark.parametrize("text", ODD)
def test_digests_take_any_string(text: str) -> None:
    crypto = Crypto(SECRET)
    for kind in ("email", "phone", "customer_id"):
        assert len(crypto.identifier_digest(kind, text)) == 64
    assert len(crypto.token_digest(text)) == 64
    assert constant_time_equal(text, text) and not constant_time_equal(text, text + "x")


def test_valid_text_keeps_its_digest() -> None:
    """Surrogate-safe encoding changes nothing for text that was encodable
    before (digests already stored keep matching)."""
    import hashlib
    import hmac

    crypto = Crypto(SECRET)
    expected = hmac.new(crypto._identifier_key, b"token:Zx\xc3\xa9",
                        hashlib.sha256).hexdigest()
    assert crypto.token_digest("Zxé") == expected


@pytest.mark.parametrize("text", ODD)
def test_redaction_takes_any_string(text: str) -> None:
    assert isinstance(redact(text), str)
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, "%s", (text,), None)
    assert RedactingFilter().filter(record)


@pytest.mark.parametrize("text", ["x" * 100_000, "a." * 50_000, "%40" * 30_000,
                                  "x@" + "y" * 100_000, "a-" * 50_000 + "@example"])
def test_redaction_takes_linear_time(text: str) -> None:
    """A long run of address characters without an address: the access log
    line of a long URL. The old pattern retried the run from every position
    (quadratic: 100,000 characters took over two minutes)."""
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("text", [t for t in ODD if len(t) < 10_000])  # bodies: 64 KiB at most
def test_rate_limit_keys_take_any_string(app: Flask, text: str) -> None:
    as_json = app.test_request_context("/api/v1/requests", method="POST",
                                       data=f'{{"email": "{_json_escaped(text)}"}}',
                                       content_type="application/json")
    with as_json:
        assert client_address()
    with app.test_request_context("/api/v1/requests/x/verify", method="POST"):
        assert holder_key(lambda _request_id: text)().startswith("request:x:")


def _json_escaped(text: str) -> str:
    """``text`` as the inside of a JSON string, lone surrogates as ``\\uXXXX``."""
    return "".join(c if " " <= c < "\x7f" and c not in '"\\' else f"\\u{ord(c):04x}"
                   if ord(c) < 0x10000 else _pair(ord(c)) for c in text)


def _pair(code: int) -> str:
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
