"""The mail in the outbox table, decrypted, for tests that read what was queued."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import select

from dsar.models import OutboxMail
from dsar.runtime import Runtime


class Mail(NamedTuple):
    kind: str
    to: str
    subject: str
    body: str


def queued(rt: Runtime, request_id: str | None = None) -> list[Mail]:
    """Every mail queued (of ``request_id`` when given), oldest first, decrypted
    with the outbox's contexts."""
    stmt = select(OutboxMail).order_by(OutboxMail.id)
    if request_id is not None:
        stmt = stmt.where(OutboxMail.request_id == request_id)
    with rt.transaction() as session:
        return [Mail(m.kind, *(rt.crypto.decrypt_text(blob, f"outbox:{part}")
                               for part, blob in (("recipient", m.recipient_ct),
                                                  ("subject", m.subject_ct),
                                                  ("body", m.body_ct))))
                for m in session.scalars(stmt)]
