"""No address, code or status token in any log line: ours, or the web server's access log."""

from __future__ import annotations

import logging
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from flask import Flask
from werkzeug.serving import make_server

from dsar.executor import InProcessExecutor
from dsar.logfilter import REDACTED, RedactingFilter, redact
from tests.portal.journey import ALICE, Browser
from tests.support.engine_connectors import Script

TOKEN = "Zx9_secret-status-token_0123456789abcdefghijk"


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)


@pytest.mark.parametrize("line", [
    f'127.0.0.1 - - [01/Jan/2025 10:00:00] "GET /requests/ab12?token={TOKEN} HTTP/1.1" 303 -',
    f'"GET /api/v1/x?email=ann.lee%40example.org&token={TOKEN}&page=2 HTTP/1.1" 200 -',
    '"GET /lookup?who=Ann.Lee+tag@Example.ORG HTTP/1.1" 404 -',
])
def test_redact(line: str) -> None:
    cleaned = redact(line)
    assert TOKEN not in cleaned and "example.org" not in cleaned.lower()
    assert REDACTED in cleaned and "HTTP/1.1" in cleaned


def test_filter_rewrites_formatted_records() -> None:
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, '%s - - [%s] "%s" %s %s',
                               ("127.0.0.1", "now", f"GET /?token={TOKEN} HTTP/1.1", 200, "-"),
                               None)
    assert RedactingFilter().filter(record)
    assert TOKEN not in record.getMessage() and "GET /?token=[redacted] HTTP/1.1" in \
        record.getMessage()


def test_access_log_of_a_real_server_is_redacted(portal_app: Callable[..., Flask],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = make_server("127.0.0.1", 0, portal_app())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = (f"http://127.0.0.1:{server.port}/requests/{'a' * 32}"
               f"?token={TOKEN}&email=ann.lee%40example.org")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        refused.value.close()
        assert refused.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    access = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("/requests/" in line and REDACTED in line for line in access), access
    assert TOKEN not in _logged(caplog) and "ann.lee" not in _logged(caplog)


def test_whole_journey_logs_no_address_code_or_token(
        portal_app: Callable[..., Flask], scripts: dict[str, Script],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    scripts["crm"] = Script()
    scripts["crm"].seed(ALICE, 2)
    browser = Browser(portal_app(connectors={"crm": {"type": "scripted", "script": "crm"}}))
    request_id = browser.start("access", ALICE)
    assert browser.resend(request_id).status_code == 429
    mail = browser.outbox.new()[0]
    body = mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
    code = re.findall(r"^\s*(\d{6})\s*$", body, re.MULTILINE)[0]  # never in the subject
    token = re.findall(r"token=([\w-]+)", body)[0]
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert browser.verify(request_id, wrong).status_code == 400
    assert Browser(browser.app).client.get(f"/requests/{request_id}?token={token}").status_code \
        == 303
    assert browser.verify(request_id, code).status_code == 303
    with InProcessExecutor(browser.rt, 2, poll_seconds=0.05) as executor:
        assert executor.wait_until_idle(30)
    assert browser.download(request_id)[0] == 200
    text = _logged(caplog)
    assert "mail verification-code written" in text  # the log says a mail went out ...
    for secret in (ALICE, ALICE.split("@")[0], code, wrong, token):
        assert secret not in text, f"{secret!r} reached a log line"  # ... never what it said
