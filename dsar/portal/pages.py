"""What the portal's pages show, built from a request in the requester's view.

:func:`status_context` runs inside the view's transaction (it reads the
request's tasks and export); :func:`render` and :func:`message` turn a
template and the texts (``t``) into a response.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flask import Response, make_response, render_template, url_for
from sqlalchemy.orm import Session

from ..models import Request, RequestToken
from ..registry import labels
from ..runtime import Runtime, runtime
from ..schemas.requester import RequestRequesterView
from ..texts import say
from ..workflow import downloads, verification
from ..workflow.states import RequestKind, Status

#: states in which work is under way: the status page offers "Check again", and its
#: script (static/status.js) reads the page again every POLL_SECONDS
REFRESHING = frozenset({"received", "verified", "approved", "processing"})
POLL_SECONDS = 10
#: a completed access request whose link no longer works: what its state says instead
#: of "ready to download" (the download's refusal -> the state's text)
UNAVAILABLE = {"download.expired": "status.completed.download_expired",
               "download.exhausted": "status.completed.download_exhausted",
               "download.not_ready": "status.completed.download_missing"}
#: endings after which a requester can only ask again
ASK_AGAIN = frozenset({Status.EXPIRED, Status.CANCELLED})


def render(template: str, http_status: int = 200, **context: Any) -> Response:
    """``template`` with the texts as ``t``."""
    return make_response(render_template(template, t=runtime().texts, **context), http_status)


def message(title_key: str, body: str, http_status: int) -> Response:
    """A page that only says something: a title from the texts and one paragraph."""
    texts = runtime().texts
    return render("portal_message.html", http_status, title=texts[title_key], body=body)


def when(texts: Mapping[str, str], value: datetime, *, with_time: bool = False) -> str:
    return texts["format.datetime" if with_time else "format.date"].format(d=value)


def status_context(session: Session, rt: Runtime, held: RequestToken) -> dict[str, Any]:
    """Everything the status page shows of the request ``held`` is a token of:
    nothing internal (stores by their label, never their name; before
    verification the dates of the holder's own submission)."""
    texts, request = rt.texts, held.request
    received_at, due_at = verification.as_seen(held)
    view = RequestRequesterView(labels=labels(rt.connectors)).dump(request)
    state = view["status"]
    page = {
        "request_id": request.id, "state": state, "state_text": _state_text(texts, request),
        "kind_text": texts[f"status.kind.{request.kind}"],
        "received_at": when(texts, received_at), "due_at": when(texts, due_at),
        "progress": progress(texts, view["progress"]), "reason": view["reason"],
        "reason_label": texts["status.reason" if state == Status.DENIED else "status.extended"],
        "refresh": state in REFRESHING, "poll_seconds": POLL_SECONDS,
        "verifying": state == "verifying",
        "code_minutes": int(float(rt.settings["CODE_TTL_SECONDS"]) // 60),
        "download": None, "new_request": _new_request(texts) if state in ASK_AGAIN else None,
        "rights": state in (Status.DENIED, Status.CANCELLED),  # Art. 12(4), as in the mail
    }
    if state == Status.COMPLETED and request.kind == RequestKind.ACCESS:
        _with_download(session, rt, request, page)
    return page


def _state_text(texts: Mapping[str, str], request: Request) -> str:
    state = request.status
    variant = request.paused_for if state == Status.PAUSED else request.kind
    return texts.get(f"status.{state}.{variant}", texts[f"status.{state}"])


def _new_request(texts: Mapping[str, str], kind: str | None = None) -> dict[str, str]:
    """The link to the form, with ``kind`` chosen: to ask again."""
    key = "status.new_access_request" if kind == RequestKind.ACCESS else "status.new_request"
    return {"url": url_for("portal.index", kind=kind), "text": texts[key]}


def _with_download(session: Session, rt: Runtime, request: Request,
                   page: dict[str, Any]) -> None:
    """The link and its limits; or, when it no longer works, a state that says
    why (never "ready to download") and, once it is gone for good, a new request."""
    texts = rt.texts
    state = downloads.availability(rt, downloads.bundle_of(session, request))
    if state.refusal is not None:
        page["state_text"] = texts[UNAVAILABLE[state.refusal]]
        if state.refusal != "download.not_ready":
            page["new_request"] = _new_request(texts, RequestKind.ACCESS.value)
        return
    limits = (say(texts, "download.left", left=state.left) if state.expires_at is None else
              say(texts, "download.valid", left=state.left,
                  until=when(texts, state.expires_at, with_time=True)))
    page["download"] = {"url": url_for("portal.download", request_id=request.id),
                        "limits": limits}


def progress(texts: Mapping[str, str], items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(what the requester reads for a store, its state), by label: a store's
    label, else a neutral text (numbered when several stores have none, in the
    order of their names), never its name."""
    latest = {item["store"]: item for item in items}  # a later task of a store wins
    unlabelled = sorted(name for name, item in latest.items() if not item["label"])
    rows: list[tuple[tuple[int, str, int], str, str]] = []
    for name, item in latest.items():
        state = texts[f"progress.{item['state']}"]
        if item["label"]:
            rows.append(((0, item["label"], 0), item["label"], state))
        elif len(unlabelled) == 1:
            rows.append(((1, "", 0), texts["status.store.unlabelled"], state))
        else:
            n = unlabelled.index(name) + 1
            rows.append(((1, "", n), texts["status.store.unlabelled_n"].format(n=n), state))
    return [(shown, state) for _key, shown, state in sorted(rows)]
