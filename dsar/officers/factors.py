"""An officer's two factors: something known (a password, hashed with
argon2) and something held (a TOTP app, or one of ten recovery codes).

A TOTP code is accepted once: the time step of the last accepted code is
stored, and a code of that step or an earlier one is refused (RFC 6238 §5.2).
Recovery codes are random (50 bits), stored as keyed hashes, each good once.
"""

from __future__ import annotations

import base64
from datetime import datetime

import pyotp
from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from .. import entropy
from ..crypto import Crypto, constant_time_equal
from ..models import Officer

#: TOTP codes one step early or late are accepted too (clock drift)
TOTP_DRIFT_STEPS = 1
RECOVERY_CODES = 10
PASSWORD_MIN, PASSWORD_MAX = 12, 256
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


def default_hasher() -> PasswordHasher:
    """RFC 9106's second recommended profile (64 MiB, 3 passes); tests swap a
    cheap one onto the runtime (``rt.password_hasher``)."""
    return PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY)


def password_problem(password: str, email: str) -> str | None:
    """Why ``password`` is refused, or ``None``: NIST SP 800-63B's rules
    (length, not the address), no composition rules."""
    if len(password) < PASSWORD_MIN:
        return f"Use at least {PASSWORD_MIN} characters."
    if len(password) > PASSWORD_MAX:
        return f"Use at most {PASSWORD_MAX} characters."
    if password.strip().lower() == email.strip().lower():
        return "Do not use your email address as your password."
    return None


def hash_password(hasher: PasswordHasher, password: str) -> str:
    return hasher.hash(password)


def password_matches(hasher: PasswordHasher, stored: str | None, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` hashes; with nothing stored
    (no such officer, not set up) the same work is done, so the time taken
    does not tell which addresses are officers'."""
    if stored is None:
        hasher.hash(password)
        return False
    try:
        return hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def new_totp_secret() -> str:
    """A 160-bit secret (RFC 4226's recommended length), base32 as apps read it."""
    return base64.b32encode(entropy.token_bytes(20)).decode("ascii")


def totp_uri(secret: str, email: str, issuer: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def totp_step(secret: str, code: str, now: datetime, last_step: int | None) -> int | None:
    """The time step ``code`` belongs to if it is right for ``now`` (give or
    take :data:`TOTP_DRIFT_STEPS`) and later than ``last_step``; else ``None``."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if (last_step is None or step > last_step) and constant_time_equal(
                totp.generate_otp(step), code):
            return step
    return None


def totp_secret(crypto: Crypto, officer: Officer) -> str | None:
    if officer.totp_secret_ct is None:
        return None
    return crypto.decrypt_text(officer.totp_secret_ct, f"officer-totp:{officer.id}")


def new_recovery_codes() -> list[str]:
    """Ten codes of ten characters, shown once as ``xxxxx-xxxxx``."""
    return ["-".join("".join(entropy.source.choice(_RECOVERY_ALPHABET) for _ in range(5))
                     for _ in range(2)) for _ in range(RECOVERY_CODES)]


def recovery_digest(crypto: Crypto, officer_id: str, code: str) -> str:
    """The stored form of a recovery code (any spacing, dash or case)."""
    plain = "".join(c for c in code.lower() if c.isalnum())
    return crypto.token_digest(f"officer-recovery:{officer_id}:{plain}")
