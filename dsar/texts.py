"""Every text a requester reads, in one place.

A company changes wording or language by pointing ``DSAR_TEXTS`` at a TOML
file with the keys to override (``[texts]`` table, same keys as below).
Placeholders use ``str.format`` names.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import ConfigError

DEFAULTS: dict[str, str] = {
    # verification mail
    "mail.code.subject": "Your verification code: {code}",
    "mail.code.body": (
        "Hello,\n\n"
        "We received a {kind_label} request for this email address.\n"
        "To confirm it is you, enter this code on the request page:\n\n"
        "    {code}\n\n"
        "The code is valid for {minutes} minutes.\n"
        "Follow your request here: {status_url}\n\n"
        "If you did not make this request, ignore this mail: nothing will happen.\n"
    ),
    "kind.access": "access (a copy of your data)",
    "kind.erasure": "erasure (deletion of your data)",
    # verification outcomes (portal and API)
    "verify.wrong_code": "That code is not right. {left} attempts left.",
    "verify.expired": "This code has expired. Ask for a new code.",
    "verify.too_many": "Too many wrong codes. Ask for a new code.",
    "verify.not_waiting": "This request is not waiting for a code.",
    "resend.cooldown": "A code was sent a moment ago. You can ask again in {seconds} seconds.",
    "resend.sent": "We sent a new code.",
    # downloads
    "download.expired": "This download link has expired.",
    "download.exhausted": "This file has been downloaded the maximum number of times.",
    "download.not_ready": "Your data is not ready yet.",
}


def load_texts(path: str | None) -> dict[str, str]:
    """The defaults with the overrides of the TOML file at ``path``."""
    texts = dict(DEFAULTS)
    if not path:
        return texts
    try:
        data: Mapping[str, Any] = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"DSAR_TEXTS: cannot read {path}: {exc}") from None
    overrides = data.get("texts", {})
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"DSAR_TEXTS: {path}: unknown keys {', '.join(unknown)}")
    texts.update({k: str(v) for k, v in overrides.items()})
    return texts
