"""Every setting dsar reads, with its default and meaning, in one place.

Settings come from ``DSAR_*`` environment variables; ``create_app(config=...)``
may override them (keys without the ``DSAR_`` prefix, as they appear in
``app.config``). :func:`load_settings` parses and validates them; a bad value
stops the start with a message naming the variable.
"""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import private_folder
from .mail import parse_smtp_url, tls_context


class ConfigError(Exception):
    """A setting is missing or wrong; the message names it."""


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("expected a positive whole number")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError("expected a positive number")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("expected zero or a positive whole number")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError("expected zero or a positive number")
    return value


#: values of EXPORT_COMPRESSION: zip members stored as they are, or deflated at a zlib level
EXPORT_COMPRESSIONS = ("stored", *(f"deflate-{level}" for level in range(1, 10)))


def _compression(raw: str) -> str:
    if raw not in EXPORT_COMPRESSIONS:
        raise ValueError("expected stored or deflate-1 ... deflate-9")
    return raw


def _executor(raw: str) -> str:
    if raw not in {"inprocess", "celery"}:
        raise ValueError("expected inprocess or celery")
    return raw


def _env(raw: str) -> str:
    if raw not in {"development", "production"}:
        raise ValueError("expected development or production")
    return raw


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str


SETTINGS: tuple[Setting, ...] = (
    Setting("ENV", "development", "development or production. Production refuses a "
            "development secret and a missing SMTP_URL.", _env),
    Setting("SECRET_KEY", None, "Master secret (32+ random characters). Encryption, "
            "identifier hashing, the audit seal and sessions use keys derived from it. "
            "Development generates one into the instance folder."),
    Setting("AUDIT_KEY", None, "Optional separate key for sealing the audit chain, so "
            "its custody can differ from SECRET_KEY's. Default: derived from SECRET_KEY."),
    Setting("AUDIT_FULL_CHECK_HOURS", 24.0, "Hours between two full checks of the audit "
            "chain, run by the housekeeper (0: never on its own). A check asked for from the "
            "console starts where the last intact one ended, so only a full check can find "
            "an edit to events already checked.", _non_negative_float),
    Setting("DATABASE_URL", None, "SQLAlchemy URL. Default: SQLite file dsar.db in the "
            "instance folder. Production: postgresql+psycopg://..."),
    Setting("CONNECTORS", None, "Path of the connector TOML file. Default: "
            "connectors.toml in the instance folder, when present."),
    Setting("SMTP_URL", None, "smtp://[user:password@]host[:port][?starttls=auto|required|off] "
            "or smtps://[user:password@]host[:port] (TLS from the start, port 465). smtp:// "
            "upgrades with STARTTLS when the server offers it (auto) and requires it when a "
            "user is given: a password is never sent in clear (?starttls=off with a user stops "
            "the start). The certificate is always verified (see SMTP_CA_FILE). Unset in "
            "development: mails are written as .eml files to instance/outbox."),
    Setting("SMTP_CA_FILE", None, "PEM file of the CA(s) the mail server's certificate is "
            "checked against instead of the system's (a private CA). Verification cannot be "
            "turned off."),
    Setting("MAIL_FROM", "privacy@localhost", "Sender address of notices and codes."),
    Setting("MAIL_RETRY_WINDOW_HOURS", 24.0, "How long the workers keep retrying a mail the "
            "SMTP server does not take (down, refusing for now) before it is marked failed "
            "and logged. Mail waits in the outbox table meanwhile; requests go on.",
            _positive_float),
    Setting("EXPORT_DIR", None, "Folder for export bundles. Default: instance/exports."),
    Setting("ERASURE_REVIEW", True, "Erasure requests wait for an officer's approval.",
            _bool),
    Setting("WORKERS", 2, "Worker threads of the in-process executor.", _positive_int),
    Setting("EXECUTOR", "inprocess", "What carries tasks to workers: inprocess (worker threads "
            "of dsar worker / dsar run polling the tasks table) or celery (a message per task "
            "on DSAR_BROKER_URL; run dsar worker or celery -A dsar.celery_executor worker; pip "
            "install 'dsar-toolkit[celery]'). The task rows stay the truth either way.",
            _executor),
    Setting("BROKER_URL", None, "Celery's broker when DSAR_EXECUTOR=celery: redis://host:6379/0 "
            "or amqp://user:password@host:5672/vhost (RabbitMQ)."),
    Setting("CELERY_QUEUE", "dsar", "The Celery queue dsar's messages go to (one per "
            "deployment sharing a broker)."),
    Setting("TASK_LEASE_SECONDS", 10.0, "How long a task stays a worker's without news from "
            "it. A live worker renews the lease every quarter of it, also while a connector "
            "call runs; a task whose worker died is taken up by another once it runs out.",
            _positive_float),
    Setting("TASK_MAX_SECONDS", 6 * 3600.0, "Longest a task may run. Past it the connector "
            "is asked to stop and the task fails for an officer (never renewed forever).",
            _positive_float),
    Setting("TASK_MAX_RECLAIMS", 10, "Times a task may be taken back from a worker that died "
            "while running it before it fails (a task that kills its worker). Counted apart "
            "from retries.", _positive_int),
    Setting("TASK_RETRY_SECONDS", 5.0, "First retry delay after a retryable error (store "
            "down, timeout); doubles each attempt, with jitter, up to "
            "TASK_RETRY_MAX_DELAY_SECONDS.",
            _positive_float),
    Setting("TASK_RETRY_MAX_DELAY_SECONDS", 300.0, "Longest wait between two retries.",
            _positive_float),
    Setting("TASK_RETRY_WINDOW_HOURS", 48.0, "How long a task keeps retrying a store that "
            "stays down before it fails for an officer. Permanent errors and connector bugs "
            "fail at once.", _positive_float),
    Setting("TASK_RETRY_DUE_MARGIN_DAYS", 3.0, "Retries also stop this long before the "
            "request's due date, to leave an officer time to act.", _non_negative_float),
    Setting("DISCOVERY_MAX_IDENTIFIERS", 20, "Identity expansion stops adding identifiers "
            "to a request beyond this many.", _positive_int),
    Setting("LOG_LEVEL", "INFO", "Logging level of the dsar loggers."),
    Setting("BASE_URL", "http://127.0.0.1:5000", "Public address of the portal, for links "
            "in mails."),
    Setting("HTTPS", None, "Do people reach dsar over HTTPS (directly, or through a proxy "
            "that ends TLS)? Then every cookie is Secure and every answer carries "
            "Strict-Transport-Security. Default: on in production, otherwise on when "
            "BASE_URL is https.", _bool),
    Setting("HSTS_SECONDS", 31_536_000, "max-age of Strict-Transport-Security while HTTPS "
            "is on (a year; 0: not sent).", _non_negative_int),
    Setting("CODE_TTL_SECONDS", 900.0, "How long a verification code is valid.",
            _positive_float),
    Setting("CODE_MAX_ATTEMPTS", 5, "Wrong codes allowed before a new code is needed.",
            _positive_int),
    Setting("CODE_RESEND_SECONDS", 60.0, "Cooldown between the first two codes for one "
            "request; it doubles with each code sent, up to an hour.",
            _positive_float),
    Setting("UNVERIFIED_EXPIRY_DAYS", 7, "A request never verified expires after this many "
            "days.", _positive_int),
    Setting("EXPORT_COMPRESSION", "deflate-1", "How the export zip's members are "
            "compressed: deflate-1 (fastest) ... deflate-9 (smallest), or stored (none). The "
            "default is chosen by measurement (bench/export_large.py): far faster than zlib's "
            "usual level 6 for a zip about a tenth larger.",
            _compression),
    Setting("EXPORT_LINK_DAYS", 7, "Days a download link stays valid.", _positive_int),
    Setting("EXPORT_MAX_DOWNLOADS", 3, "Downloads allowed per export.", _positive_int),
    Setting("RATELIMIT_STORAGE_URI", "memory://", "Where rate-limit counters live: memory:// "
            "(one process, lost on restart) or Redis, shared by every process: "
            "redis://[:password@]host:6379/0, rediss:// (TLS), redis+unix://, "
            "redis+sentinel://, redis+cluster:// (pip install 'dsar-toolkit[redis]'). Another "
            "scheme, or Redis without the redis package, stops the start. Nothing connects at "
            "start; while Redis cannot be reached (2 s connect/read timeout, override with "
            "?socket_timeout=N) submit, verify and resend answer 503 and the error is logged: "
            "limits fail closed, never skipped nor kept per process. Other pages keep working."),
    Setting("RATE_LIMIT_SUBMIT", "10 per hour", "Submissions per IP address (never per email "
            "address: a stranger could use up its owner's; a submission for an address whose "
            "request of that kind waits for its code joins it instead)."),
    Setting("RATE_LIMIT_VERIFY", "20 per hour", "Code entries per IP address and per holder "
            "of a status token of the request."),
    Setting("RATE_LIMIT_RESEND", "5 per hour", "Code resends per IP address and per holder "
            "of a status token of the request."),
    Setting("OFFICER_SETUP_HOURS", 24.0, "How long an officer's one-time set-up link is valid.",
            _positive_float),
    Setting("OFFICER_IDLE_MINUTES", 30.0, "A console session ends after this long without a "
            "request.", _positive_float),
    Setting("OFFICER_SESSION_HOURS", 12.0, "A console session ends this long after sign-in, "
            "however busy.", _positive_float),
    Setting("TEXTS", None, "A TOML file overriding the texts requesters read (wording, "
            "language); keys as in dsar/texts.py."),
)

_DEV_SECRET_FILE = "secret_key"  # noqa: S105 - a file name, not a secret


def load_settings(environ: Mapping[str, str], overrides: Mapping[str, Any] | None,
                  instance_path: str) -> dict[str, Any]:
    """Parse every setting from ``environ`` (``DSAR_<NAME>``), then apply
    ``overrides`` (already typed), fill instance-folder defaults and validate.

    Raises :class:`ConfigError` naming the variable on a bad value.
    """
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(f"DSAR_{setting.name}")
        if raw is None or raw == "":
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"DSAR_{setting.name}: {exc}") from None
    values.update(overrides or {})
    _fill_defaults(values, Path(instance_path))
    _validate(values)
    return values


def _fill_defaults(values: dict[str, Any], instance: Path) -> None:
    """The instance folder's defaults; the folder is made private (0700) when
    the database, the exports or the development secret live in it."""
    needs_secret = not values.get("SECRET_KEY") and values["ENV"] == "development"
    if needs_secret or not values.get("DATABASE_URL") or not values.get("EXPORT_DIR"):
        private_folder(instance)
    if not values.get("DATABASE_URL"):
        values["DATABASE_URL"] = f"sqlite:///{instance / 'dsar.db'}"
    if not values.get("EXPORT_DIR"):
        values["EXPORT_DIR"] = str(instance / "exports")
    if not values.get("CONNECTORS"):
        default = instance / "connectors.toml"
        values["CONNECTORS"] = str(default) if default.exists() else None
    values.setdefault("OUTBOX_DIR", str(instance / "outbox"))
    if values.get("HTTPS") is None:
        values["HTTPS"] = (values["ENV"] == "production"
                           or str(values.get("BASE_URL", "")).startswith("https://"))
    if needs_secret:
        values["SECRET_KEY"] = _development_secret(instance)
        values["SECRET_IS_DEVELOPMENT"] = True


def _development_secret(instance: Path) -> str:
    """A per-instance random secret, kept in the instance folder (mode 0600)."""
    path = instance / _DEV_SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(secret)
    return secret


def _validate(values: Mapping[str, Any]) -> None:
    secret = values.get("SECRET_KEY")
    if not secret or len(str(secret)) < 32:
        raise ConfigError("DSAR_SECRET_KEY: set a random secret of at least 32 characters")
    if values["ENV"] == "production":
        if values.get("SECRET_IS_DEVELOPMENT"):
            raise ConfigError("DSAR_SECRET_KEY: production refuses the development secret")
        if not values.get("SMTP_URL"):
            raise ConfigError("DSAR_SMTP_URL: production needs an SMTP server for notices")
    _check_smtp(values)
    _check_ratelimit_storage(str(values.get("RATELIMIT_STORAGE_URI") or ""))
    if values.get("EXECUTOR") == "celery":
        _check_broker(str(values.get("BROKER_URL") or ""))


def _check_smtp(values: Mapping[str, Any]) -> None:
    """SMTP_URL parses (its password never quoted); SMTP_CA_FILE loads as CAs."""
    if values.get("SMTP_URL"):
        try:
            parse_smtp_url(str(values["SMTP_URL"]))
        except ValueError as exc:
            raise ConfigError(f"DSAR_SMTP_URL: {exc}") from None
    if values.get("SMTP_CA_FILE"):
        try:
            tls_context(str(values["SMTP_CA_FILE"]))
        except (OSError, ValueError) as exc:  # missing, unreadable, no certificate in it
            raise ConfigError(f"DSAR_SMTP_CA_FILE: cannot load {values['SMTP_CA_FILE']} as "
                              f"CA certificates ({type(exc).__name__})") from None


#: broker schemes dsar's Celery executor is tested with
BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")


def _check_broker(url: str) -> None:
    """DSAR_EXECUTOR=celery: a broker URL of a known scheme, Celery installed."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in BROKER_SCHEMES:
        raise ConfigError("DSAR_BROKER_URL: DSAR_EXECUTOR=celery needs a broker: "
                          "redis://host:6379/0 or amqp://user:password@host:5672//")
    if importlib.util.find_spec("celery") is None:
        raise ConfigError("DSAR_EXECUTOR: celery needs the Python package celery: "
                          "pip install 'dsar-toolkit[celery]'")


#: rate-limit storages dsar supports (schemes of the ``limits`` package); all but
#: memory:// use the ``redis`` client
RATELIMIT_SCHEMES = ("memory", "redis", "rediss", "redis+unix", "redis+sentinel",
                     "redis+cluster")


def _check_ratelimit_storage(uri: str) -> None:
    """The scheme is one dsar supports and its client is installed (no connection)."""
    scheme, sep, _ = uri.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in RATELIMIT_SCHEMES:
        what = f"unknown scheme {scheme!r}" if sep else "not a URI"
        raise ConfigError(f"DSAR_RATELIMIT_STORAGE_URI: {what}; expected "
                          + ", ".join(f"{s}://" for s in RATELIMIT_SCHEMES))
    if scheme != "memory" and importlib.util.find_spec("redis") is None:
        raise ConfigError(f"DSAR_RATELIMIT_STORAGE_URI: {scheme}:// needs the Python package "
                          "redis: pip install 'dsar-toolkit[redis]'")


def describe() -> str:
    """Every setting with its default, for ``dsar config`` and the docs."""
    lines = []
    for s in SETTINGS:
        lines.append(f"DSAR_{s.name} (default: {s.default!r})\n    {s.help}")
    return "\n".join(lines)
