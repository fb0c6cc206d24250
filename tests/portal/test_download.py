"""Progress and the download: a link that expires and counts, every download audited."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import update

from dsar.database import utcnow
from dsar.executor import InProcessExecutor
from dsar.models import ExportBundle
from dsar.texts import DEFAULTS as T
from tests.portal.journey import ALICE, Browser, events
from tests.support.engine_connectors import Script


@pytest.fixture
def shop(portal_app: Callable[..., Flask], scripts: dict[str, Script]) -> Browser:
    """A requester on an app with one scripted store holding three records of Alice."""
    scripts["crm"] = Script()
    scripts["crm"].seed(ALICE, 3)
    scripts["crm"].seed("bob@example.org", 2)
    return Browser(portal_app(connectors={"crm": {"type": "scripted", "script": "crm"}}))


def _verified(browser: Browser) -> str:
    request_id = browser.start()
    assert browser.verify(request_id, browser.outbox.code()).status_code == 303
    return request_id


def _process(browser: Browser) -> None:
    with InProcessExecutor(browser.rt, 2, poll_seconds=0.05) as executor:
        assert executor.wait_until_idle(30)


def test_three_downloads_then_a_clear_410(shop: Browser) -> None:
    request_id = _verified(shop)
    waiting = shop.status(request_id)
    assert T["status.processing"] in waiting.text
    assert "http-equiv" not in waiting.text and T["status.check_again"] in waiting.text
    store = T["status.store.unlabelled"]  # crm has no label: never its name
    assert f'<tr><th scope="row">{store}</th><td>{T["progress.waiting"]}</td></tr>' in waiting.text
    _process(shop)
    page = shop.status(request_id)
    assert T["status.completed"] in page.text and 'http-equiv="refresh"' not in page.text
    assert f'<tr><th scope="row">{store}</th><td>{T["progress.done"]}</td></tr>' in page.text
    assert f'href="/requests/{request_id}/download"' in page.text
    assert "3 downloads left" in page.text and " UTC;" in page.text
    for left in (2, 1, 0):
        status, body, answer = shop.download(request_id)
        assert status == 200 and answer.mimetype == "application/zip"
        assert answer.headers["Content-Disposition"] == (
            f"attachment; filename=my-data-{request_id[:8]}.zip")
        assert answer.headers["Cache-Control"] == "no-store" and "ETag" not in answer.headers
        with zipfile.ZipFile(io.BytesIO(body)) as bundle:
            manifest = json.loads(bundle.read("manifest.json"))
            records = json.loads(bundle.read("crm.json"))["records"]
        assert [c["records"] for c in manifest["connectors"]] == [3]
        assert {r["fields"]["owner"] for r in records} == {ALICE}
        if left:
            said = "1 download left" if left == 1 else f"{left} downloads left"
            assert said in shop.status(request_id).text
    status, body, answer = shop.download(request_id)
    assert status == 410 and T["download.exhausted"] in body.decode()
    assert T["error.410.title"] in body.decode()
    assert T["status.completed.download_exhausted"] in shop.status(request_id).text
    assert events(shop.rt, request_id).count("export.downloaded") == 3


def test_expired_link_gets_a_410_page(shop: Browser) -> None:
    request_id = _verified(shop)
    _process(shop)
    with shop.rt.transaction() as session:
        session.execute(update(ExportBundle).where(ExportBundle.request_id == request_id)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    status, body, _answer = shop.download(request_id)
    assert status == 410 and T["download.expired"] in body.decode()
    page = shop.status(request_id)
    assert T["status.completed.download_expired"] in page.text and "/download" not in page.text
    assert "export.downloaded" not in events(shop.rt, request_id)


def test_download_before_completion_is_409(shop: Browser) -> None:
    request_id = shop.start()
    status, body, _answer = shop.download(request_id)
    assert status == 409 and T["download.not_ready"] in body.decode()
    assert "/download" not in shop.status(request_id).text


def test_a_head_request_never_uses_up_a_download(shop: Browser) -> None:
    """Mail scanners and link checkers send HEAD first: it must not count."""
    request_id = _verified(shop)
    _process(shop)
    for _ in range(4):
        answer = shop.client.head(f"/requests/{request_id}/download")
        assert answer.status_code == 405 and answer.headers["Allow"] == "GET"
    assert "3 downloads left" in shop.status(request_id).text
    assert events(shop.rt, request_id).count("export.downloaded") == 0
    assert shop.download(request_id)[0] == 200
