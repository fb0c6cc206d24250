"""The requester's download of an export: a link with a lifetime and a count.

The request stays ``completed`` whatever happens to the link; every download
is an audit event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from .. import audit
from ..models import ExportBundle, Request
from ..runtime import Runtime


class DownloadRefused(Exception):
    """``key`` names the text explaining why (see dsar/texts.py)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def bundle_of(session: Session, request: Request) -> ExportBundle | None:
    return session.get(ExportBundle, request.id)


@dataclass(frozen=True)
class Availability:
    """Whether :func:`take` would hand the zip out now: ``refusal`` is the
    text key saying why not (``None``: it would), ``left`` the downloads left."""

    refusal: str | None
    left: int
    expires_at: datetime | None


def availability(rt: Runtime, bundle: ExportBundle | None) -> Availability:
    """The one place the link's rules live (status pages, the API and take).
    A link that ended (expired, used up) says so even when its file is gone
    too: only a live link's missing file is "not ready"."""
    if bundle is None:
        return Availability("download.not_ready", 0, None)
    left = max(int(rt.settings["EXPORT_MAX_DOWNLOADS"]) - bundle.download_count, 0)
    if bundle.expires_at is not None and rt.now() >= bundle.expires_at:
        return Availability("download.expired", left, bundle.expires_at)
    if left == 0:
        return Availability("download.exhausted", 0, bundle.expires_at)
    if not (Path(rt.settings["EXPORT_DIR"]) / bundle.filename).exists():
        return Availability("download.not_ready", left, bundle.expires_at)
    return Availability(None, left, bundle.expires_at)


def take(session: Session, rt: Runtime, request: Request, *, actor: str = "requester") -> Path:
    """Count one download and return the zip's path, or raise
    :class:`DownloadRefused` (not ready, expired, exhausted)."""
    bundle = session.get(ExportBundle, request.id, with_for_update=True)
    state = availability(rt, bundle)
    if bundle is None or state.refusal is not None:
        raise DownloadRefused(state.refusal or "download.not_ready")
    bundle.download_count += 1
    audit.record(session, rt.crypto, "export.downloaded", actor=actor, request_id=request.id,
                 details={"download": bundle.download_count, "sha256": bundle.sha256})
    return Path(rt.settings["EXPORT_DIR"]) / bundle.filename
