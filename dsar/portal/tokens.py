"""The status tokens a browser holds, kept in the signed session cookie.

A status link's token is moved here on its first use, so later URLs, the
history and the access log never carry it. The cookie is signed, not
encrypted: it holds only what its owner already has (the link). At most
:data:`KEPT` tokens are kept, the newest last; older ones are dropped so the
cookie stays well under the 4 KB browsers accept (with it the CSRF token).
"""

from __future__ import annotations

from flask import session

KEY = "status_tokens"
KEPT = 10


def remember(request_id: str, token: str) -> None:
    held = [pair for pair in _pairs() if pair[0] != request_id]
    session[KEY] = [*held, [request_id, token]][-KEPT:]


def token_for(request_id: str) -> str:
    """The token this browser holds for ``request_id``, or ``""``."""
    return next((pair[1] for pair in _pairs() if pair[0] == request_id), "")


def _pairs() -> list[list[str]]:
    raw = session.get(KEY)
    if not isinstance(raw, list):
        return []
    return [p for p in raw if isinstance(p, list) and len(p) == 2
            and all(isinstance(v, str) for v in p)]
