"""The status page a requester follows: no dead ends, no internal words.

It never reloads itself (a "Check again" link does, and a small script with a
polite live region while work is under way); an export that expired or was
used up says so and offers a new request; stores show the label the company
gave them, or a neutral text, never their names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import update

from dsar.database import utcnow
from dsar.executor import InProcessExecutor
from dsar.models import ExportBundle
from dsar.runtime import Runtime
from dsar.texts import DEFAULTS as T
from dsar.workflow import requests as flow
from dsar.workflow.states import Status, transition
from tests.portal.journey import ALICE, Browser
from tests.support.engine_connectors import Script

#: the stores' names: none of them may reach a requester's page
STORES = ("zz_crm_store", "zz_mail_store", "zz_chat_store")


@pytest.fixture
def shop(portal_app: Callable[..., Flask], scripts: dict[str, Script]) -> Browser:
    """Three scripted stores holding Alice's records; one has a label."""
    for store in STORES:
        scripts[store] = Script()
        scripts[store].seed(ALICE, 2)
    connectors = {store: {"type": "scripted", "script": store} for store in STORES}
    connectors["zz_crm_store"]["label"] = "Customer accounts"
    return Browser(portal_app(connectors=connectors))


def _verified(browser: Browser, kind: str = "access") -> str:
    request_id = browser.start(kind)
    assert browser.verify(request_id, browser.outbox.code()).status_code == 303
    return request_id


def _process(browser: Browser) -> None:
    with InProcessExecutor(browser.rt, 2, poll_seconds=0.05) as executor:
        assert executor.wait_until_idle(30)


def _change(rt: Runtime, request_id: str, action: Callable[..., None], **kwargs: str) -> None:
    with rt.transaction() as session:
        action(session, rt, flow.get(session, request_id), actor="officer:test", **kwargs)


def _rows(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<tr><th scope="row">([^<]*)</th><td>([^<]*)</td></tr>', html)


# -- no page reloads itself ---------------------------------------------------------------

def test_work_under_way_offers_check_again_and_never_reloads_the_page(shop: Browser) -> None:
    request_id = _verified(shop)
    page = shop.status(request_id).text
    assert T["status.processing"] in page
    assert "http-equiv" not in page  # axe-core meta-refresh (WCAG 2.2.1)
    # without JavaScript: a plain link to this page
    here = f"/requests/{request_id}"
    assert re.search(rf'<a [^>]*href="{here}"[^>]*>{T["status.check_again"]}</a>', page)
    assert T["status.check_hint"] in page
    # with it: a script from 'self' reads the page again into a polite live region
    script = re.search(r'<script src="(/static/portal/status\.js)" defer></script>', page)
    assert script, page
    assert re.search(r'id="status-live"[^>]*aria-live="polite"', page)
    assert 'data-poll-seconds="10"' in page
    pause = re.search(r'<button type="button" id="pause-updates"[^>]*>', page)
    assert pause and " hidden" in pause.group(0)  # shown by the script only
    for key in ("status.pause_updates", "status.resume_updates", "status.refreshing",
                "status.updates_paused"):
        assert f'="{T[key]}"' in page, key  # the script's words, from the texts
    served = shop.client.get(script.group(1))
    assert served.status_code == 200 and "javascript" in served.mimetype
    assert served.headers["Content-Security-Policy"].startswith("default-src 'self'")
    served.close()


def test_a_finished_request_neither_polls_nor_offers_to_check_again(shop: Browser) -> None:
    request_id = _verified(shop)
    _process(shop)
    page = shop.status(request_id).text
    assert T["status.completed"] in page
    for absent in ("status.js", "data-poll-seconds", T["status.check_again"], "pause-updates",
                   "http-equiv"):
        assert absent not in page, absent
    assert 'id="status-live"' in page  # the region is there for the script's last update


# -- no dead ends -------------------------------------------------------------------------

def test_an_expired_download_never_says_ready_and_offers_a_new_request(shop: Browser) -> None:
    request_id = _verified(shop)
    _process(shop)
    with shop.rt.transaction() as session:
        session.execute(update(ExportBundle).where(ExportBundle.request_id == request_id)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    page = shop.status(request_id).text
    assert T["status.completed.download_expired"] in page
    assert T["status.completed"] not in page and "ready to download" not in page
    assert T["download.link"] not in page and "/download" not in page
    assert f'<a href="/?kind=access">{T["status.new_access_request"]}</a>' in page


def test_a_used_up_download_never_says_ready_and_offers_a_new_request(shop: Browser) -> None:
    request_id = _verified(shop)
    _process(shop)
    for _ in range(3):
        assert shop.download(request_id)[0] == 200
    page = shop.status(request_id).text
    assert T["status.completed.download_exhausted"] in page
    assert T["status.completed"] not in page and "ready to download" not in page
    assert "/download" not in page
    assert f'<a href="/?kind=access">{T["status.new_access_request"]}</a>' in page


def test_a_missing_file_is_not_called_ready(shop: Browser) -> None:
    request_id = _verified(shop)
    _process(shop)
    with shop.rt.transaction() as session:
        bundle = session.get(ExportBundle, request_id)
        assert bundle is not None
        filename = bundle.filename
    (Path(shop.rt.settings["EXPORT_DIR"]) / filename).unlink()  # removed by hand
    page = shop.status(request_id).text
    assert T["status.completed.download_missing"] in page
    assert T["status.completed"] not in page and "/download" not in page


def test_the_new_request_link_opens_the_form_with_a_copy_chosen(shop: Browser) -> None:
    form = shop.client.get("/?kind=access").text
    assert re.search(r'<input id="kind-access"[^>]*\bchecked\b', form)
    assert not re.search(r'<input id="kind-erasure"[^>]*\bchecked\b', form)
    other = shop.client.get("/?kind=portability").text
    assert not re.search(r"\bchecked\b", other)


@pytest.mark.parametrize("ending", ["expired", "cancelled"])
def test_a_request_that_ended_unfinished_offers_a_new_one(shop: Browser, ending: str) -> None:
    request_id = shop.start()
    with shop.rt.transaction() as session:
        found = flow.get(session, request_id)
        if ending == "cancelled":
            flow.cancel(session, shop.rt, found, actor="officer:test", reason="asked to")
        else:
            transition(session, shop.rt.crypto, found, Status.EXPIRED, actor="system")
    page = shop.status(request_id).text
    assert T[f"status.{ending}"] in page
    assert f'<a href="/">{T["status.new_request"]}</a>' in page


def test_awaiting_review_says_what_happens_next(shop: Browser) -> None:
    request_id = _verified(shop, "erasure")
    page = shop.status(request_id).text
    assert T["status.awaiting_review"] in page
    said = T["status.awaiting_review"].lower()
    assert "privacy team" in said and "email you" in said  # who decides, how you hear
    assert "data-poll-seconds" not in page  # nothing moves until they decide: no polling


# -- the requester's words ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["access", "erasure"])
def test_the_kind_of_request_in_plain_words(shop: Browser, kind: str) -> None:
    page = shop.status(shop.start(kind)).text
    assert f"<dd>{T[f'status.kind.{kind}']}</dd>" in page
    assert T["status.kind.access"] == "A copy of your data"
    assert T["status.kind.erasure"] == "Deleting your data"
    for internal in ("access (", "erasure (", ">access<", ">erasure<"):
        assert internal not in page


def test_stores_show_their_label_or_a_neutral_text_never_their_name(shop: Browser) -> None:
    request_id = _verified(shop)
    waiting = shop.status(request_id).text
    assert _rows(waiting) == [("Customer accounts", T["progress.waiting"]),
                              (T["status.store.unlabelled_n"].format(n=1), T["progress.waiting"]),
                              (T["status.store.unlabelled_n"].format(n=2), T["progress.waiting"])]
    _process(shop)
    done = shop.status(request_id).text
    assert {state for _store, state in _rows(done)} == {T["progress.done"]}
    for page in (waiting, done):
        assert "zz_" not in page


def test_one_store_without_a_label_is_not_numbered(portal_app: Callable[..., Flask],
                                                   scripts: dict[str, Script]) -> None:
    scripts["crm"] = Script()
    browser = Browser(portal_app(connectors={"crm": {"type": "scripted", "script": "crm"}}))
    page = browser.status(_verified(browser)).text
    assert _rows(page) == [(T["status.store.unlabelled"], T["progress.waiting"])]
    assert ">crm<" not in page


def test_a_denial_gives_the_reason_and_the_right_to_complain(shop: Browser) -> None:
    """Art. 12(4): the reason, and the rights to complain to a supervisory
    authority and to go to court, on the page as in the mail."""
    request_id = _verified(shop, "erasure")
    _change(shop.rt, request_id, flow.deny, reason="We must keep invoices (tax law).")
    page = shop.status(request_id).text
    assert "We must keep invoices (tax law)." in page
    assert T["status.rights"] in page
    shop.outbox.new()  # the denial's mail
    cancelled = _verified(shop, "access")
    _change(shop.rt, cancelled, flow.cancel, reason="asked twice")
    assert T["status.rights"] in shop.status(cancelled).text
    shop.outbox.new()  # the cancellation's mail
    going_on = _verified(shop, "access")  # a request going on: not told
    assert T["status.rights"] not in shop.status(going_on).text
