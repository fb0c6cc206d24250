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

from ..models import Request
from ..runtime import Runtime, runtime
from ..schemas.requester import RequestRequesterView
from ..workflow import downloads
from ..workflow.states import RequestKind, Status

#: states in which the status page refreshes itself (work is under way)
REFRESHING = frozenset({"received", "verified", "approved", "processing"})
_view = RequestRequesterView()


def render(template: str, http_status: int = 200, **context: Any) -> Response:
    """``template`` with the texts as ``t``."""
    return make_response(render_template(template, t=runtime().texts, **context), http_status)


def message(title_key: str, body: str, http_status: int) -> Response:
    """A page that only says something: a title from the texts and one paragraph."""
    texts = runtime().texts
    return render("portal_message.html", http_status, title=texts[title_key], body=body)


def when(texts: Mapping[str, str], value: datetime, *, with_time: bool = False) -> str:
    return texts["format.datetime" if with_time else "format.date"].format(d=value)


def status_context(session: Session, rt: Runtime, request: Request) -> dict[str, Any]:
    """Everything the status page shows of ``request``: nothing internal."""
    texts, view = rt.texts, _view.dump(request)
    state = view["status"]
    progress: dict[str, str] = {}
    for item in view["progress"]:  # a later task of a store (after discovery) wins
        progress[item["store"]] = texts[f"progress.{item['state']}"]
    variant = request.paused_for if state == Status.PAUSED else request.kind
    return {
        "request_id": request.id, "state": state,
        "state_text": texts.get(f"status.{state}.{variant}", texts[f"status.{state}"]),
        "kind_text": texts[f"kind.{request.kind}"],
        "received_at": when(texts, request.received_at), "due_at": when(texts, request.due_at),
        "progress": sorted(progress.items()), "reason": view["reason"],
        "reason_label": texts["status.reason" if state == Status.DENIED else "status.extended"],
        "refresh": state in REFRESHING, "verifying": state == "verifying",
        "code_minutes": int(float(rt.settings["CODE_TTL_SECONDS"]) // 60),
        "download": _download(session, rt, request),
    }


def _download(session: Session, rt: Runtime, request: Request) -> dict[str, str] | None:
    """The link and its limits, or why there is none; ``None`` when no export is due."""
    if request.status != Status.COMPLETED or request.kind != RequestKind.ACCESS:
        return None
    texts = rt.texts
    state = downloads.availability(rt, downloads.bundle_of(session, request))
    if state.refusal is not None:
        return {"note": texts[state.refusal]}
    left = state.left
    limits = (texts["download.left"].format(left=left) if state.expires_at is None else
              texts["download.valid"].format(until=when(texts, state.expires_at,
                                                        with_time=True), left=left))
    return {"url": url_for("portal.download", request_id=request.id), "limits": limits}
