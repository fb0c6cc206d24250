"""A real SMTP server for the mail tests (aiosmtpd on 127.0.0.1), and the dev outbox.

``smtp_server`` is a fixture: an :class:`SmtpServer` listening on a free port.
Tests stop and start it on the same port (an SMTP outage), make it hold a
message before answering (``hold()``: a slow server, released by ``release()``)
or refuse a recipient for good (``refuse``). ``received`` lists what it
accepted, in order. ``deliver(rt)`` hands over every due mail of the outbox
table, for tests that read codes before a worker has run.

``make_smtp_server(...)`` starts servers a production client must cope with:
STARTTLS (``tls=``) or TLS from the start (``implicit_tls=True``) with a
certificate from ``smtp_certificates`` (a throwaway CA made at test time, for
127.0.0.1), and AUTH PLAIN/LOGIN (``auth=True``) for :data:`USER` and
:data:`PASSWORD` only. ``deliveries`` says for each accepted message whether
it came over TLS and who had logged in; ``auth_commands`` records every AUTH
command, with or without TLS, so a test can prove a password never went in
clear.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import func, select

from dsar import outbox
from dsar.database import utcnow
from dsar.models import OutboxMail
from dsar.runtime import Runtime
from tests.support.servers import free_port

__all__ = ["PASSWORD", "USER", "Certificates", "SmtpServer", "deliver", "make_certificates",
           "make_smtp_server", "smtp_certificates", "smtp_server"]

#: the only account of a server started with ``auth=True``
USER, PASSWORD = "dsar-mailer", "s3cret p@ss:word/for-the-test"
#: the SMTP conversation's idle timeout on the server side (seconds)
SERVER_TIMEOUT = 30


def deliver(*runtimes: Runtime) -> int:
    """Send (or write) every due mail of each runtime's outbox; how many went.
    A mail a running executor's mailer holds right now is waited for (up to
    10 s), so a test reading the outbox next finds it there."""
    sent = 0
    for rt in runtimes:
        while (batch := outbox.deliver_due(rt)) > 0:
            sent += batch
        deadline = time.monotonic() + 10
        while _held_elsewhere(rt) and time.monotonic() < deadline:
            time.sleep(0.02)
    return sent


def _held_elsewhere(rt: Runtime) -> bool:
    """Is a due mail being sent by someone else (claimed, not yet recorded)?"""
    with rt.transaction() as session:
        return bool(session.scalar(select(func.count()).select_from(OutboxMail).where(
            OutboxMail.status == "pending", OutboxMail.lease_owner.is_not(None),
            OutboxMail.lease_expires_at > utcnow())))


@dataclass(frozen=True)
class Certificates:
    """A throwaway CA and the server certificate it signed (PEM files)."""

    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_certificates(folder: Path, names: tuple[str, ...] = ("127.0.0.1", "localhost"),
                      ) -> Certificates:
    """A new CA and a server certificate for ``names`` (IP addresses or DNS
    names), valid for a day, with the extensions strict verifiers ask for."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"dsar test CA {folder.name}")])
    ca = (_builder(ca_name, ca_name, ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_usage(cert_sign=True), critical=True)
          .sign(ca_key, hashes.SHA256()))
    sans = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n)
            for n in names]
    leaf = (_builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]), ca_name,
                     key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    made = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    made.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    made.cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    made.key.touch(mode=0o600)
    made.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return made


def _builder(subject: x509.Name, issuer: x509.Name,
             public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                           critical=False))


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=False, data_encipherment=False,
                         key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


@dataclass(frozen=True)
class Delivery:
    """A message the server accepted, with how it came: the TLS version
    (None: in clear) and the user logged in (None: no AUTH)."""

    message: EmailMessage
    tls: str | None
    login: str | None


@dataclass(frozen=True)
class AuthCommand:
    """An AUTH command the server received: its mechanism, and whether the
    connection was encrypted at that point."""

    mechanism: str
    tls: bool


def _tls_version(server: Any) -> str | None:
    """The TLS version of the SMTP session ``server`` (STARTTLS or implicit)."""
    transport = server.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    return None if ssl_object is None else str(ssl_object.version())


@dataclass
class _Handler:
    server: SmtpServer

    async def handle_RCPT(self, _server: Any, _session: Any, envelope: Any, address: str,
                          _options: list[str]) -> str:
        if address in self.server.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_AUTH(self, server: Any, _session: Any, _envelope: Any,
                          args: list[str]) -> Any:
        """Record the command, then let aiosmtpd's PLAIN/LOGIN run."""
        with self.server.lock:
            self.server.auth_commands.append(
                AuthCommand(args[0].upper(), _tls_version(server) is not None))
        return MISSING

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.server.entered.set()
        gate = self.server.gate
        if gate is not None:  # a slow server: the message waits for the test
            await asyncio.get_running_loop().run_in_executor(None, gate.wait, 60)
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        login = session.auth_data.login.decode() if session.authenticated else None
        with self.server.lock:
            self.server.received.append(message)  # type: ignore[arg-type]
            self.server.deliveries.append(Delivery(message, _tls_version(server), login))
        return "250 OK"


@dataclass
class SmtpServer:
    """aiosmtpd on 127.0.0.1: plain by default; with ``tls`` it offers
    STARTTLS (or, with ``implicit_tls``, speaks TLS from the start); with
    ``auth`` it takes :data:`USER`/:data:`PASSWORD`, over TLS only unless
    ``auth_in_clear`` (a careless server, for tests of the client's care)."""

    port: int = field(default_factory=free_port)
    received: list[EmailMessage] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    gate: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    tls: Certificates | None = None
    implicit_tls: bool = False
    auth: bool = False
    auth_in_clear: bool = False
    mechanisms: tuple[str, ...] = ("LOGIN", "PLAIN")
    deliveries: list[Delivery] = field(default_factory=list)
    auth_commands: list[AuthCommand] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)
    _controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"{'smtps' if self.implicit_tls else 'smtp'}://127.0.0.1:{self.port}"

    def login_url(self, password: str = PASSWORD, user: str = USER, query: str = "") -> str:
        """The URL with credentials (quoted) and an optional ``?query``."""
        scheme, _, rest = self.url.partition("://")
        url = f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"
        return f"{url}?{query}" if query else url

    def start(self) -> None:
        if self._controller is None:
            self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                          ready_timeout=10, timeout=SERVER_TIMEOUT,
                                          **self._options())
            self._controller.start()

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.tls is not None:
            key = "ssl_context" if self.implicit_tls else "tls_context"
            options[key] = self.tls.server_context()
        if self.auth:
            # aiosmtpd counts only STARTTLS as TLS: with implicit TLS every AUTH is encrypted
            options.update(authenticator=self._authenticate,
                           auth_require_tls=not (self.auth_in_clear or self.implicit_tls),
                           auth_exclude_mechanism=[m for m in ("LOGIN", "PLAIN")
                                                   if m not in self.mechanisms])
        return options

    def _authenticate(self, _server: Any, _session: Any, _envelope: Any, _mechanism: str,
                      data: Any) -> AuthResult:
        """PLAIN and LOGIN hand over a LoginPassword; a refusal answers 535."""
        assert isinstance(data, LoginPassword)
        ok = (data.login, data.password) == (USER.encode(), PASSWORD.encode())
        with self.lock:
            self.logins.append((data.login.decode(), ok))
        return AuthResult(success=ok, handled=ok, auth_data=data if ok else None)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def hold(self) -> None:
        """From now on every message waits in DATA until :meth:`release`."""
        self.gate, self.entered = threading.Event(), threading.Event()

    def release(self) -> None:
        if self.gate is not None:
            self.gate.set()

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.received if str(m["To"]) == address]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.release()
    server.stop()


@pytest.fixture(scope="session")
def smtp_certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A throwaway CA and its certificate for 127.0.0.1, made once per run."""
    return make_certificates(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def make_smtp_server() -> Iterator[Callable[..., SmtpServer]]:
    """Start an :class:`SmtpServer` with the given options; stopped at the end."""
    started: list[SmtpServer] = []

    def factory(**options: Any) -> SmtpServer:
        server = SmtpServer(**options)
        started.append(server)
        server.start()
        return server

    yield factory
    for server in started:
        server.release()
        server.stop()
