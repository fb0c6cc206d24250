"""The subject's identifiers: stored encrypted, looked up by keyed hash."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..connector import Subject, normalise_identifier
from ..models import Request, SubjectIdentifier
from ..runtime import Runtime


def add_identifiers(rt: Runtime, request: Request,
                    identifiers: Mapping[str, Iterable[str]], *, source: str,
                    limit: int | None = None) -> list[str]:
    """Attach identifiers not yet known, at most ``limit`` of them; returns
    the digests (``kind:digest``) of the new ones (written at the session's
    next flush)."""
    known = {(i.kind, i.digest) for i in request.identifiers}
    added: list[str] = []
    for kind, values in identifiers.items():
        for value in values:
            if not value or not value.strip() or (limit is not None and len(added) >= limit):
                continue
            digest = rt.crypto.identifier_digest(kind, value)
            if (kind, digest) in known:
                continue
            known.add((kind, digest))
            clean = normalise_identifier(kind, value)
            request.identifiers.append(SubjectIdentifier(
                kind=kind, digest=digest, source=source,
                value_ct=rt.crypto.encrypt_text(clean, f"identifier:{kind}")))
            added.append(f"{kind}:{digest}")
    return added


def subject_of(rt: Runtime, request: Request) -> Subject:
    """The decrypted subject of a request, for handing to connectors."""
    values: dict[str, set[str]] = {}
    for ident in request.identifiers:
        text = rt.crypto.decrypt_text(ident.value_ct, f"identifier:{ident.kind}")
        values.setdefault(ident.kind, set()).add(text)
    return Subject(values)


def identifier_sources(rt: Runtime, request: Request) -> list[dict[str, str]]:
    """The identifiers used for a request and where each came from, for the
    subject's own export (never for logs or the audit trail)."""
    return [{"kind": i.kind,
             "value": rt.crypto.decrypt_text(i.value_ct, f"identifier:{i.kind}"),
             "source": i.source} for i in request.identifiers]


def given_by_requester(rt: Runtime, request: Request, kind: str) -> list[str]:
    """The identifiers of ``kind`` the requester gave (source ``requester``),
    decrypted and sorted: never those identity expansion found."""
    return sorted(rt.crypto.decrypt_text(i.value_ct, f"identifier:{kind}")
                  for i in request.identifiers if i.kind == kind and i.source == "requester")
