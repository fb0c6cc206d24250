"""HTTP for the ``rest`` connector: authentication, retries, rate limits.

Standard library only (``urllib.request``): one request per connection, no
redirects followed (a redirect could carry the credential to another host).

Error policy, per call:

* connection errors, timeouts, 408 and 5xx are retried with exponential
  backoff (``backoff`` × 2^n seconds) up to ``max_tries`` tries, then
  :class:`RetryableError`;
* 429 waits ``Retry-After`` (seconds, fractions accepted, or an HTTP date;
  backoff when absent) and counts as a try; a wait longer than
  ``retry_after_cap`` is not slept through but raised as ``RetryableError``
  so the engine comes back later;
* 401 with OAuth2: the token is fetched again once; 401/403 otherwise is a
  :class:`PermanentError` ("credentials refused");
* statuses the caller allows (404 on delete) are returned; any other 4xx or
  3xx is a ``PermanentError`` naming the status and the endpoint *template*.

Logs and messages name the endpoint template and the status, never a filled
URL, a body, an identifier or a credential.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from importlib import metadata
from typing import Any
from urllib.parse import urlencode

from dsar.connector import PermanentError, RetryableError

from .templates import origin, retry_after_seconds

log = logging.getLogger(__name__)

_TRANSIENT = frozenset({408, 500, 502, 503, 504}) | frozenset(range(505, 600))
_NETWORK_ERRORS = (urllib.error.URLError, OSError, http.client.HTTPException)
#: a cached OAuth2 token is renewed this many seconds before it expires
TOKEN_MARGIN = 30.0


def _user_agent() -> str:
    # read from the installed distribution: a connector imports nothing of dsar
    # but dsar.connector (connectors/ruff.toml)
    try:
        return f"dsar-toolkit/{metadata.version('dsar-toolkit')}"
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "dsar-toolkit"


USER_AGENT = _user_agent()


@dataclass(frozen=True, repr=False)
class Response:
    status: int
    headers: Message
    data: Any  # the decoded JSON body, None when empty
    url: str   # as sent: may hold an identifier in its query

    def __repr__(self) -> str:  # never the URL or the data
        return f"Response({self.status})"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


class HttpClient:
    """Sends JSON requests for one connector instance; thread-safe."""

    def __init__(self, name: str, config: Mapping[str, Any],
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = name
        self.auth: dict[str, Any] = dict(config["auth"])
        self.timeout = float(config["timeout"])
        self.max_tries = int(config["max_tries"])
        self.backoff = float(config["backoff"])
        self.retry_after_cap = float(config["retry_after_cap"])
        self._sleep = sleep
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock = threading.Lock()

    # ------------------------------------------------------------ public
    def call(self, method: str, url: str, label: str, *, query: Mapping[str, str] | None = None,
             body: Any = None, allow: frozenset[int] = frozenset(), tries: int | None = None,
             authenticate: bool = True, form: Mapping[str, str] | None = None,
             headers: Mapping[str, str] | None = None) -> Response:
        """Send one request, retrying as the module docstring says.

        ``label`` (``"POST /crm/v3/objects/contacts/search"``) names the call
        in logs and errors. ``body`` is JSON-encoded, ``form`` form-encoded;
        ``headers`` are added to this call only. Returns 2xx responses and
        those whose status is in ``allow``.
        """
        if query:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(query)}"
        payload, content_type = _payload(body, form)
        tries = tries or self.max_tries
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            sent = {**self._headers(content_type, authenticate), **(headers or {})}
            try:
                status, reply_headers, raw = self._send(method, url, payload, sent)
            except _NETWORK_ERRORS as exc:
                self._retry_or_raise(attempt, tries, label,
                                     f"cannot reach {_origin_text(url)} ({_reason(exc)})")
                continue
            log.debug("rest %s: %s answered %d (try %d)", self.name, label, status, attempt)
            if status == 401 and authenticate and self._refreshable() and not refreshed:
                refreshed = True
                attempt -= 1  # a token refresh is not a failed try
                self._forget_token()
                continue
            if status in (401, 403):
                raise PermanentError(f"{label}: credentials refused (HTTP {status})")
            if status == 429:
                self._wait_for_rate_limit(attempt, tries, label, reply_headers)
                continue
            if status in _TRANSIENT:
                self._retry_or_raise(attempt, tries, label, f"answered HTTP {status}")
                continue
            if 200 <= status < 300 or status in allow:
                return Response(status, reply_headers, _json(raw, label), url)
            raise PermanentError(f"{label} answered HTTP {status}; check the endpoint "
                                 "configuration and the API's documentation")

    # ------------------------------------------------------------ retries
    def _retry_or_raise(self, attempt: int, tries: int, label: str, what: str) -> None:
        if attempt >= tries:
            raise RetryableError(f"{label}: {what} after {attempt} tries")
        delay = self.backoff * 2 ** (attempt - 1)
        log.info("rest %s: %s %s; retrying in %.2fs", self.name, label, what, delay)
        self._sleep(delay)

    def _wait_for_rate_limit(self, attempt: int, tries: int, label: str, headers: Message) -> None:
        asked = retry_after_seconds(headers.get("Retry-After"))
        delay = self.backoff * 2 ** (attempt - 1) if asked is None else asked
        if attempt >= tries:
            raise RetryableError(f"{label}: rate limited (HTTP 429) after {attempt} tries")
        if delay > self.retry_after_cap:
            raise RetryableError(f"{label}: rate limited (HTTP 429); the API asks to wait "
                                 f"{delay:.0f}s, more than retry_after_cap")
        log.info("rest %s: %s rate limited; waiting %.2fs", self.name, label, delay)
        self._sleep(delay)

    # ------------------------------------------------------------ auth
    def _headers(self, content_type: str | None, authenticate: bool) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if content_type:
            headers["Content-Type"] = content_type
        if authenticate:
            headers.update(self._auth_header())
        return headers

    def _auth_header(self) -> dict[str, str]:
        kind = self.auth["kind"]
        if kind == "api_key":
            return {self.auth["header"]: self.auth["key"]}
        if kind == "bearer":
            return {"Authorization": f"Bearer {self.auth['token']}"}
        if kind == "basic":
            return {"Authorization": _basic(self.auth["username"], self.auth["password"])}
        return {"Authorization": f"Bearer {self._access_token()}"}

    def _refreshable(self) -> bool:
        return bool(self.auth["kind"] == "oauth2_client_credentials")

    def _forget_token(self) -> None:
        with self._lock:
            self._token = None

    def _access_token(self) -> str:
        """The cached OAuth2 token, fetched when missing or about to expire."""
        with self._lock:
            if self._token is None or time.monotonic() >= self._token_expires:
                self._token, lifetime = self._fetch_token()
                margin = min(TOKEN_MARGIN, lifetime / 10)
                self._token_expires = time.monotonic() + lifetime - margin
            return self._token

    def _fetch_token(self) -> tuple[str, float]:
        auth = self.auth
        form = {"grant_type": "client_credentials"}
        if auth.get("scope"):
            form["scope"] = auth["scope"]
        label = "POST token_url"
        if auth.get("client_auth") == "body":
            form.update(client_id=auth["client_id"], client_secret=auth["client_secret"])
            extra = {}
        else:
            extra = {"Authorization": _basic(auth["client_id"], auth["client_secret"])}
        try:
            response = self.call("POST", auth["token_url"], label, form=form,
                                 authenticate=False, headers=extra)
        except PermanentError:
            raise PermanentError("the OAuth2 token endpoint refused the client credentials "
                                 "or the request; check client_id, client_secret and scope"
                                 ) from None
        data = response.data if isinstance(response.data, dict) else {}
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise PermanentError("the OAuth2 token endpoint answered without an access_token")
        lifetime = data.get("expires_in")
        return token, float(lifetime) if isinstance(lifetime, int | float) else 3600.0

    # ------------------------------------------------------------ transport
    def _send(self, method: str, url: str, payload: bytes | None,
              headers: dict[str, str]) -> tuple[int, Message, bytes]:
        request = urllib.request.Request(url, data=payload, headers=headers,  # noqa: S310 - http(s) only, validated
                                         method=method)
        try:
            with self._opener.open(request, timeout=self.timeout) as reply:
                return reply.status, reply.headers, reply.read()
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, exc.headers, exc.read()
            finally:
                exc.close()


def _payload(body: Any, form: Mapping[str, str] | None) -> tuple[bytes | None, str | None]:
    if form is not None:
        return urlencode(form).encode("ascii"), "application/x-www-form-urlencoded"
    if body is None:
        return None, None
    return json.dumps(body, ensure_ascii=False).encode("utf-8"), "application/json"


def _json(raw: bytes, label: str) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise PermanentError(f"{label} did not answer JSON") from None


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _origin_text(url: str) -> str:
    scheme, host, port = origin(url)
    return f"{scheme}://{host}:{port}"


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, BaseException):
        return getattr(reason, "strerror", None) or type(reason).__name__
    return "connection failed"
