"""The requester's download of an export: a link with a lifetime and a count.

The request stays ``completed`` whatever happens to the link; every download
is an audit event.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from .. import audit
from ..database import utcnow
from ..models import ExportBundle, Request
from ..runtime import Runtime


class DownloadRefused(Exception):
    """``key`` names the text explaining why (see dsar/texts.py)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def bundle_of(session: Session, request: Request) -> ExportBundle | None:
    return session.get(ExportBundle, request.id)


def take(session: Session, rt: Runtime, request: Request, *, actor: str = "requester") -> Path:
    """Count one download and return the zip's path, or raise
    :class:`DownloadRefused` (not ready, expired, exhausted)."""
    bundle = session.get(ExportBundle, request.id, with_for_update=True)
    path = Path(rt.settings["EXPORT_DIR"]) / bundle.filename if bundle else None
    if bundle is None or path is None or not path.exists():
        raise DownloadRefused("download.not_ready")
    if bundle.expires_at is not None and utcnow() >= bundle.expires_at:
        raise DownloadRefused("download.expired")
    if bundle.download_count >= int(rt.settings["EXPORT_MAX_DOWNLOADS"]):
        raise DownloadRefused("download.exhausted")
    bundle.download_count += 1
    audit.record(session, rt.crypto, "export.downloaded", actor=actor, request_id=request.id,
                 details={"download": bundle.download_count, "sha256": bundle.sha256})
    return path
