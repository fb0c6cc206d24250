"""Keys, encryption at rest, keyed hashes and the audit seal.

One master secret (``DSAR_SECRET_KEY``) yields separate keys through HKDF, one
per purpose, so a key used to seal the audit chain never encrypts data:

* data key: AES-256-GCM for identifiers and free text kept in the database.
  A ciphertext is ``version byte || 12-byte nonce || ciphertext+tag``; the
  ``context`` (e.g. ``"identifier:email"``) is bound as associated data, so a
  value copied into another column does not decrypt.
* identifier key: HMAC-SHA256 over ``kind:normalised value``: the only form in
  which identifiers are looked up or written to the audit log.
* audit key: HMAC-SHA256 sealing each audit event and the chain's head
  (``DSAR_AUDIT_KEY`` when set, so its custody can be separate).
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .connector import normalise_identifier

_VERSION = b"\x01"


class DecryptionError(Exception):
    """A ciphertext does not decrypt with this key and context."""


def derive_key(secret: str | bytes, purpose: str) -> bytes:
    """A 32-byte key for ``purpose`` derived from ``secret`` (HKDF-SHA256)."""
    material = secret.encode() if isinstance(secret, str) else secret
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"dsar-v1", info=purpose.encode())
    return hkdf.derive(material)


class Crypto:
    """The application's keys and the operations over them."""

    def __init__(self, secret: str, audit_key: str | None = None) -> None:
        self._data = AESGCM(derive_key(secret, "data-encryption"))
        self._identifier_key = derive_key(secret, "identifier-hmac")
        self._audit_key = derive_key(audit_key or secret, "audit-seal")
        self.session_key = derive_key(secret, "flask-session").hex()

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        """Encrypt ``plaintext`` bound to ``context``."""
        nonce = os.urandom(12)
        return _VERSION + nonce + self._data.encrypt(nonce, plaintext, context.encode())

    def decrypt(self, blob: bytes, context: str) -> bytes:
        """Decrypt a value from :meth:`encrypt`; raises :class:`DecryptionError`."""
        if blob[:1] != _VERSION or len(blob) < 29:
            raise DecryptionError("unknown ciphertext format")
        try:
            return self._data.decrypt(blob[1:13], blob[13:], context.encode())
        except InvalidTag:
            raise DecryptionError("ciphertext does not match key or context") from None

    def encrypt_text(self, text: str, context: str) -> bytes:
        return self.encrypt(text.encode("utf-8"), context)

    def decrypt_text(self, blob: bytes, context: str) -> str:
        return self.decrypt(blob, context).decode("utf-8")

    def identifier_digest(self, kind: str, value: str) -> str:
        """The keyed hash of an identifier after normalisation (hex); any
        string, even one no validation has seen yet (see :func:`text_bytes`)."""
        message = text_bytes(f"{kind}:{normalise_identifier(kind, value)}")
        return hmac.new(self._identifier_key, message, hashlib.sha256).hexdigest()

    def token_digest(self, token: str) -> str:
        """The keyed hash of a secret token or code, for storing it (any string)."""
        message = b"token:" + text_bytes(token)
        return hmac.new(self._identifier_key, message, hashlib.sha256).hexdigest()

    def audit_mac(self, message: str) -> str:
        """HMAC of ``message`` under the audit key (hex)."""
        return hmac.new(self._audit_key, message.encode(), hashlib.sha256).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(text_bytes(a), text_bytes(b))


def text_bytes(text: str) -> bytes:
    """``text`` as UTF-8, for hashing request input before it is validated.

    Lone surrogates (JSON's ``"\\ud800"`` decodes to one) cannot be strict
    UTF-8 and would raise; they are passed through as their 3-byte form
    instead, so every digest and rate-limit key takes any string. Valid text
    gives exactly its UTF-8 bytes: digests already stored keep matching.
    """
    return text.encode("utf-8", "surrogatepass")
