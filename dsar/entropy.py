"""Where dsar's unpredictable values come from: ids, status tokens, codes.

Request ids, the requester's status token and code, a mail's Message-ID and
outbox file name, and an export run's id all leave the system (a URL, a mail,
a zip, the audit trail), so they are drawn here, from one source: the
operating system's CSPRNG (:class:`random.SystemRandom`, what :mod:`secrets`
uses), always, in every process that dsar runs.

Nothing in dsar can make it anything else: no setting, no environment
variable, no argument. Only tests replace :data:`source`, with a seeded
:class:`random.Random` from ``tests/support`` (which the package does not
ship), so that the same input gives the same bytes (the golden files).

Left out on purpose, drawn from the system where they are used: AES-GCM
nonces and generated keys (:mod:`dsar.crypto`, :mod:`dsar.config`: a
predictable nonce or key breaks the encryption, and neither leaves the system
in clear), the owners of leases and notifications (executors, outbox
deliverers, wake-ups: they must differ between processes, which one seed
shared by several processes would not give) and retry jitter.
"""

from __future__ import annotations

import base64
import random
import uuid

#: the generator every value here is drawn from; tests alone replace it
source: random.Random = random.SystemRandom()


def token_bytes(nbytes: int) -> bytes:
    return source.randbytes(nbytes)


def hex_id(nbytes: int = 16) -> str:
    """``nbytes`` random bytes as lower-case hex (twice as many digits)."""
    return token_bytes(nbytes).hex()


def uuid4_hex() -> str:
    """A random (version 4) UUID's 32 hex digits, as ``uuid.uuid4().hex``."""
    return uuid.UUID(bytes=token_bytes(16), version=4).hex


def token_urlsafe(nbytes: int = 32) -> str:
    """As :func:`secrets.token_urlsafe`: ``nbytes`` random bytes, URL-safe
    base64 without padding."""
    return base64.urlsafe_b64encode(token_bytes(nbytes)).rstrip(b"=").decode("ascii")


def numeric_code(digits: int) -> str:
    """A uniformly drawn number of ``digits`` decimal digits, zero-padded."""
    return f"{source.randrange(10 ** digits):0{digits}d}"
