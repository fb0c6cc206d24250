"""A local HTTP server with the shape of HubSpot's CRM v3 API, for the ``rest`` connector.

HubSpot cannot run here, so this serves its documented shape from memory, on
127.0.0.1 with real sockets and real HTTP/1.1 (``ThreadingHTTPServer`` in a
thread):

* ``POST /crm/v3/objects/{type}/search``: ``filterGroups`` (OR of ANDed
  filters; EQ, NEQ, IN, NOT_IN, HAS_PROPERTY, NOT_HAS_PROPERTY, CONTAINS_TOKEN;
  string comparison ignores case), the ``associations.{type}`` pseudo-property,
  ``properties``, ``limit`` (capped at ``page_cap``, HubSpot's 200 unless a
  test lowers it), cursor ``after``; answers ``{total, results, paging.next.after}``;
* ``GET /crm/v3/objects/{type}`` (list), ``GET/PATCH/DELETE .../{type}/{id}``
  (``DELETE`` archives: gone from search and reads), ``POST
  .../contacts/gdpr-delete`` (``objectId``, optional ``idProperty``);
  errors as ``{status: "error", message, correlationId, category}``;
* bearer tokens: the static ``token`` and OAuth2 tokens from ``POST
  /oauth/token`` (client credentials, HTTP Basic or form body); an
  ``X-Api-Key`` header when ``api_key`` is set;
* helpdesk-shaped ticket lists for the other paginations, by requester email:
  ``/helpdesk/offset/tickets`` (limit/offset), ``/helpdesk/pages/tickets``
  (``next_page`` URL in the body, Zendesk style) and
  ``/helpdesk/linked/tickets`` (``Link: <...>; rel="next"``);
  ``next_link_host`` sets the host of the links it hands out;
* fault injection: :meth:`CrmServer.fail` (N answers with a status, e.g.
  429 with ``Retry-After`` or a burst of 500s, or slow answers) and
  :meth:`CrmServer.expire_tokens` (OAuth tokens stop working: one 401).

Every request is recorded in ``seen`` (method, path, query, JSON body,
status, arrival time) for assertions.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

DEFAULT_PROPERTIES = {
    "contacts": ["email", "firstname", "lastname"],
    "tickets": ["subject", "content", "hs_pipeline", "hs_pipeline_stage"],
    "deals": ["dealname", "amount", "closedate", "pipeline", "dealstage"],
}
SINGULAR = {"contacts": "contact", "tickets": "ticket", "deals": "deal"}
PLURAL = {v: k for k, v in SINGULAR.items()}
STAMP = "2024-05-06T10:00:00.000Z"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int
    at: float
    authorization: str | None


@dataclass
class Fault:
    status: int
    times: int
    retry_after: str | None = None
    path: str = "/crm/"
    delay: float = 0.0  # seconds to sleep before answering (then 200 as usual)
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    def __init__(self, status: int, category: str, message: str) -> None:
        super().__init__(message)
        self.status, self.category, self.message = status, category, message


@dataclass
class CrmServer:
    """The server and its in-memory CRM; a context manager."""

    page_cap: int = 200
    token: str = "test-token"
    client_id: str = "dsar-client"
    client_secret: str = "dsar-secret"
    token_lifetime: int = 3600
    api_key: str | None = None  # also accepted in an ``X-Api-Key`` header when set
    helpdesk_page: int = 2
    next_link_host: str = "127.0.0.1"
    objects: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {name: {} for name in SINGULAR})
    associations: set[tuple[str, str, str, str]] = field(default_factory=set)
    helpdesk: list[dict[str, Any]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    oauth_tokens: set[str] = field(default_factory=set)
    issued: list[str] = field(default_factory=list)  # every OAuth2 token handed out
    blocklist: set[str] = field(default_factory=set)
    #: called with each request once it is carried out, before the answer is sent:
    #: the test's hook for "the moment right after the server changed something"
    on_answered: Callable[[Seen], None] | None = None

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self._ids = itertools.count(101)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> CrmServer:
        handler = type("Handler", (_Handler,), {"crm": self})
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,),
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()  # joins the handler threads
        self._thread.join()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ seeding
    def add(self, kind: str, properties: dict[str, Any], **associated: list[str]) -> str:
        """Add a record of ``kind`` (contacts, tickets, deals); keyword
        arguments associate it, e.g. ``contacts=["101"]``. Returns the id."""
        with self.lock:
            object_id = str(next(self._ids))
            self.objects[kind][object_id] = {"properties": dict(properties)}
            for other_kind, ids in associated.items():
                for other in ids:
                    self.associate(kind, object_id, other_kind, other)
            return object_id

    def associate(self, kind: str, object_id: str, other_kind: str, other_id: str) -> None:
        self.associations |= {(kind, object_id, other_kind, other_id),
                              (other_kind, other_id, kind, object_id)}

    def add_helpdesk_ticket(self, requester: str, subject: str) -> str:
        with self.lock:
            ticket_id = str(next(self._ids))
            self.helpdesk.append({"id": int(ticket_id), "requester": requester,
                                  "subject": subject})
            return ticket_id

    # ------------------------------------------------------------ faults
    def fail(self, status: int, times: int = 1, retry_after: str | None = None,
             path: str = "/crm/", delay: float = 0.0, headers: dict[str, str] | None = None
             ) -> None:
        """The next ``times`` requests under ``path`` answer ``status``
        (with ``Retry-After`` and ``headers`` if given), or are answered
        normally after ``delay`` seconds."""
        with self.lock:
            self.faults.append(Fault(status, times, retry_after, path, delay, headers or {}))

    def expire_tokens(self) -> None:
        """Every OAuth2 token issued so far stops working (answers 401)."""
        with self.lock:
            self.oauth_tokens.clear()

    @property
    def tokens_issued(self) -> int:
        return len(self.issued)

    def requests_to(self, path_prefix: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path.startswith(path_prefix)]

    def _fault_for(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and path.startswith(fault.path):
                    fault.times -= 1
                    return fault
            return None

    # ------------------------------------------------------------ records
    def view(self, kind: str, object_id: str, names: list[str] | None) -> dict[str, Any]:
        stored = self.objects[kind][object_id]["properties"]
        wanted = names if names is not None else DEFAULT_PROPERTIES[kind]
        props = {name: _text(stored.get(name)) for name in wanted}
        props.update(hs_object_id=object_id, createdate=STAMP, lastmodifieddate=STAMP)
        return {"id": object_id, "properties": props, "createdAt": STAMP,
                "updatedAt": STAMP, "archived": False}

    def archive(self, kind: str, object_id: str) -> None:
        if object_id not in self.objects[kind]:
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
        del self.objects[kind][object_id]
        self.associations = {a for a in self.associations
                             if (a[0], a[1]) != (kind, object_id)
                             and (a[2], a[3]) != (kind, object_id)}


def _text(value: Any) -> str | None:
    """HubSpot returns every property value as a string (or null)."""
    if value is None or value == "":
        return None
    return str(value)


# ---------------------------------------------------------------- search
def _matches(crm: CrmServer, kind: str, object_id: str, flt: dict[str, Any]) -> bool:
    name, op = flt.get("propertyName"), flt.get("operator", "EQ")
    if not isinstance(name, str):
        raise ApiError(400, "VALIDATION_ERROR", "filter without propertyName")
    if name.startswith("associations."):
        other = PLURAL.get(name.split(".", 1)[1])
        linked = {a[3] for a in crm.associations
                  if a[0] == kind and a[1] == object_id and a[2] == other}
        wanted = {str(flt.get("value"))} if op == "EQ" else set(map(str, flt.get("values", [])))
        return bool(linked & wanted)
    stored = _text(crm.objects[kind][object_id]["properties"].get(name))
    low = stored.lower() if stored is not None else None
    value = str(flt.get("value", "")).lower()
    values = [str(v).lower() for v in flt.get("values", [])]
    tests = {
        "EQ": lambda: low == value, "NEQ": lambda: low != value,
        "IN": lambda: low in values, "NOT_IN": lambda: low not in values,
        "HAS_PROPERTY": lambda: low is not None, "NOT_HAS_PROPERTY": lambda: low is None,
        "CONTAINS_TOKEN": lambda: low is not None and value in low.replace(";", " ").split(),
    }
    if op not in tests:
        raise ApiError(400, "VALIDATION_ERROR", f"unknown operator {op}")
    return bool(tests[op]())


def search(crm: CrmServer, kind: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "VALIDATION_ERROR", "Invalid input JSON")
    groups = body.get("filterGroups") or []
    if len(groups) > 5 or any(len(g.get("filters", [])) > 6 for g in groups):
        raise ApiError(400, "VALIDATION_ERROR", "too many filterGroups or filters")
    found = [object_id for object_id in sorted(crm.objects[kind], key=int)
             if not groups or any(all(_matches(crm, kind, object_id, f) for f in g["filters"])
                                  for g in groups)]
    limit = min(int(body.get("limit") or 10), crm.page_cap)
    start = int(body.get("after") or 0)
    page = found[start:start + limit]
    answer: dict[str, Any] = {"total": len(found),
                              "results": [crm.view(kind, i, body.get("properties")) for i in page]}
    if start + limit < len(found):
        after = str(start + limit)
        answer["paging"] = {"next": {"after": after, "link": f"?after={after}"}}
    return answer


# ---------------------------------------------------------------- the handler
class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up is fine
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    crm: CrmServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read crm.seen

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = _parse(raw, self.headers.get("Content-Type", ""))
        seen = Seen(self.command, parts.path, query, body, 0, time.monotonic(),
                    self.headers.get("Authorization"))
        with self.crm.lock:
            self.crm.seen.append(seen)
        status, payload, headers = self._answer(parts.path, query, body)
        seen.status = status
        if self.crm.on_answered is not None:
            self.crm.on_answered(seen)
        self._send(status, payload, headers)

    do_GET = do_POST = do_PATCH = do_DELETE = _dispatch

    def _answer(self, path: str, query: dict[str, list[str]],
                body: Any) -> tuple[int, Any, dict[str, str]]:
        fault = self.crm._fault_for(path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        elif fault is not None:
            headers = dict(fault.headers)
            if fault.retry_after:
                headers["Retry-After"] = fault.retry_after
            return fault.status, _error(fault.status, "RATE_LIMITS" if fault.status == 429
                                        else "INTERNAL_ERROR", "injected fault"), headers
        if path == "/oauth/token" and self.command == "POST":
            return self._token(body)
        if not self._authorised():
            return 401, _error(401, "INVALID_AUTHENTICATION",
                               "Authentication credentials not found."), {}
        try:
            with self.crm.lock:
                if path.startswith("/helpdesk/"):
                    return self._helpdesk(path, query)
                return self._crm(path, query, body)
        except ApiError as exc:
            return exc.status, _error(exc.status, exc.category, exc.message), {}

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        with self.crm.lock:
            valid = {self.crm.token, *self.crm.oauth_tokens}
        if self.crm.api_key and self.headers.get("X-Api-Key") == self.crm.api_key:
            return True
        return scheme.lower() == "bearer" and token in valid

    def _token(self, form: Any) -> tuple[int, Any, dict[str, str]]:
        form = form if isinstance(form, dict) else {}
        client = (form.get("client_id"), form.get("client_secret"))
        basic = self.headers.get("Authorization") or ""
        if basic.startswith("Basic "):
            user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
            client = (user, password)
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}, {}
        if client != (self.crm.client_id, self.crm.client_secret):
            return 401, {"error": "invalid_client"}, {"WWW-Authenticate": 'Basic realm="oauth"'}
        token = secrets.token_urlsafe(16)
        with self.crm.lock:
            self.crm.oauth_tokens.add(token)
            self.crm.issued.append(token)
        return 200, {"access_token": token, "token_type": "bearer",
                     "expires_in": self.crm.token_lifetime, "scope": form.get("scope", "")}, {}

    def _crm(self, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any, dict]:
        steps = path.strip("/").split("/")
        if steps[:3] != ["crm", "v3", "objects"] or len(steps) < 4 or steps[3] not in SINGULAR:
            raise ApiError(404, "OBJECT_NOT_FOUND", "unknown path")
        kind, rest, crm = steps[3], steps[4:], self.crm
        names = ",".join(query.get("properties", [])).split(",") if "properties" in query else None
        if rest == ["search"] and self.command == "POST":
            return 200, search(crm, kind, body), {}
        if rest == ["gdpr-delete"] and self.command == "POST" and kind == "contacts":
            return self._gdpr_delete(body)
        if not rest and self.command == "GET":
            answer = search(crm, kind, {"limit": int(query.get("limit", ["10"])[0]),
                                        "after": query.get("after", ["0"])[0],
                                        "properties": names})
            answer.pop("total")
            return 200, answer, {}
        if len(rest) != 1:
            raise ApiError(404, "OBJECT_NOT_FOUND", "unknown path")
        object_id = rest[0]
        if object_id not in crm.objects[kind]:
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
        if self.command == "GET":
            return 200, crm.view(kind, object_id, names), {}
        if self.command == "DELETE":
            crm.archive(kind, object_id)
            return 204, None, {}
        if self.command == "PATCH":
            return 200, self._patch(kind, object_id, body), {}
        raise ApiError(405, "METHOD_NOT_ALLOWED", "method not allowed")

    def _patch(self, kind: str, object_id: str, body: Any) -> dict[str, Any]:
        changes = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(changes, dict):
            raise ApiError(400, "VALIDATION_ERROR", "properties required")
        email = str(changes.get("email") or "").lower()
        if kind == "contacts" and email and any(
                str(o["properties"].get("email") or "").lower() == email
                for i, o in self.crm.objects[kind].items() if i != object_id):
            raise ApiError(409, "CONFLICT", "A contact with this email already exists")
        self.crm.objects[kind][object_id]["properties"].update(changes)
        return self.crm.view(kind, object_id, sorted(changes))

    def _gdpr_delete(self, body: Any) -> tuple[int, Any, dict]:
        body = body if isinstance(body, dict) else {}
        object_id, by = str(body.get("objectId") or ""), body.get("idProperty")
        if by == "email":
            hits = [i for i, o in self.crm.objects["contacts"].items()
                    if str(o["properties"].get("email") or "").lower() == object_id.lower()]
            if not hits:
                self.crm.blocklist.add(object_id.lower())
                return 204, None, {}
            object_id = hits[0]
        self.crm.archive("contacts", object_id)
        return 204, None, {}

    def _helpdesk(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any, dict]:
        style = path.split("/")[2]
        requester = query.get("requester", [""])[0].lower()
        tickets = [t for t in self.crm.helpdesk if t["requester"].lower() == requester]
        if style == "offset":
            limit, offset = int(query["limit"][0]), int(query["offset"][0])
            return 200, {"tickets": tickets[offset:offset + limit]}, {}
        size, page = self.crm.helpdesk_page, int(query.get("page", ["1"])[0])
        chunk = tickets[(page - 1) * size:page * size]
        more = page * size < len(tickets)
        link = (f"http://{self.crm.next_link_host}:{self.crm.port}{path}?"
                + urlencode({"requester": requester, "page": page + 1})) if more else None
        if style == "pages":
            return 200, {"tickets": chunk, "next_page": link, "count": len(tickets)}, {}
        return 200, {"tickets": chunk}, ({"Link": f'<{link}>; rel="next"'} if link else {})

    def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _parse(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if content_type.startswith("application/x-www-form-urlencoded"):
        return {k: v[0] for k, v in parse_qs(raw.decode()).items()}
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _error(status: int, category: str, message: str) -> dict[str, Any]:
    return {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
            "category": category}
