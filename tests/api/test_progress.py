"""Progress store by store: the store's name for programs, its label for people."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from tests.api.helpers import ALICE, BASE, Outbox, auth, submit
from tests.support.engine_connectors import Script


def test_progress_carries_each_store_s_label_or_null(make_api: Callable[..., Flask],
                                                      scripts: dict[str, Script],
                                                      outbox: Outbox) -> None:
    for name in ("crm", "chat"):
        scripts[name] = Script()
        scripts[name].seed(ALICE, 1)
    app = make_api({"crm": {"type": "scripted", "script": "crm", "label": "Customer accounts"},
                    "chat": {"type": "scripted", "script": "chat"}})
    client = app.test_client()
    request_id, token = submit(client)
    verified = client.post(f"{BASE}/{request_id}/verify", json={"code": outbox.code(ALICE)},
                           headers=auth(token))
    assert verified.status_code == 200, verified.get_json()
    progress = sorted(verified.get_json()["progress"], key=lambda p: p["store"])
    assert progress == [{"store": "chat", "label": None, "state": "waiting"},
                        {"store": "crm", "label": "Customer accounts", "state": "waiting"}]
