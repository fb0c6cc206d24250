"""The rest connector and its HubSpot profile against a local HubSpot-shaped server."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from marshmallow import ValidationError

from connectors.rest import RestConnector
from connectors.rest.config import merge, shipped_profiles
from connectors.rest.templates import fill, fill_path, link_header_next, retry_after_seconds
from dsar.connector import Action, PermanentError, RetryableError, Stopped, Subject, stop_scope
from dsar.registry import available_types
from dsar.testing import ConnectorContract
from tests.support.crm_server import CrmServer

ALICE = Subject({"email": {"Alice@Example.org"}, "phone": {"+49 151 1234 5678"}})
BOB = Subject({"email": {"bob@example.org"}})
ODD_EMAIL = 'o"brien\\{field}@example.org'  # a quote, a backslash and a placeholder
FAST = {"timeout": 5, "backoff": 0.01, "retry_after_cap": 1.0}


def seed(crm: CrmServer) -> dict[str, str]:
    """Alice has two contacts (one found by email, one by phone), four
    tickets (three on one contact: two pages) and a deal; Bob and Carol
    have their own."""
    ids = {
        "alice": crm.add("contacts", {"email": "Alice@Example.org", "firstname": "Alice",
                                      "lastname": "Andersen", "city": "Aarhus Centrum",
                                      "mobilephone": "+491605550101"}),
        "alice_work": crm.add("contacts", {"email": "a.andersen@work.example",
                                           "phone": "+4915112345678", "company": "Nordwerk"}),
        "bob": crm.add("contacts", {"email": "bob@example.org", "phone": "+4917000000001",
                                    "firstname": "Bob"}),
        "carol": crm.add("contacts", {"email": "carol@example.org", "firstname": "Carol",
                                      "phone": "+44 20 7946 0000"}),
    }
    for n in range(3):
        ids[f"t{n}"] = crm.add("tickets", {"subject": f"Refund question {n}",
                                           "content": "Where is my refund, please?"},
                               contacts=[ids["alice"]])
    ids["t_work"] = crm.add("tickets", {"subject": "Invoice address change"},
                            contacts=[ids["alice_work"]])
    ids["t_bob"] = crm.add("tickets", {"subject": "Bob's delivery problem"}, contacts=[ids["bob"]])
    ids["t_carol"] = crm.add("tickets", {"subject": "Carol asks"}, contacts=[ids["carol"]])
    ids["deal"] = crm.add("deals", {"dealname": "Andersen annual plan", "amount": "1200"},
                          contacts=[ids["alice"]])
    ids["deal_bob"] = crm.add("deals", {"dealname": "Bob monthly"}, contacts=[ids["bob"]])
    return ids


def hubspot(crm: CrmServer | str, **overrides: Any) -> RestConnector:
    """The shipped HubSpot profile pointed at the test server (or any URL)."""
    url = crm if isinstance(crm, str) else crm.url
    raw = merge({"profile": "hubspot_contacts", "base_url": url,
                 "auth": {"kind": "bearer", "token": "test-token"}, **FAST}, overrides)
    return RestConnector("hubspot", RestConnector.load_config(raw))


def refs(records: Any) -> set[tuple[str, str]]:
    return {r.ref for r in records}


@pytest.fixture
def crm() -> Iterator[CrmServer]:
    with CrmServer(page_cap=2) as server:
        yield server


@pytest.fixture
def ids(crm: CrmServer) -> dict[str, str]:
    return seed(crm)


@pytest.fixture
def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


class TestHubSpotContract(ConnectorContract):
    @pytest.fixture
    def connector(self, crm: CrmServer, ids: dict[str, str]) -> RestConnector:
        return hubspot(crm)

    @pytest.fixture
    def subject(self) -> Subject:
        return ALICE

    @pytest.fixture
    def other_subject(self) -> Subject:
        return BOB

    @pytest.fixture
    def unreachable_connector(self, closed_url: str) -> RestConnector:
        return hubspot(closed_url)


# ------------------------------------------------------------------ find
def test_find_contacts_and_their_tickets_and_deals(crm: CrmServer, ids: dict[str, str]) -> None:
    records = {r.ref: r for r in hubspot(crm).find(ALICE)}
    assert set(records) == {("contacts", ids["alice"]), ("contacts", ids["alice_work"]),
                            *(("tickets", ids[f"t{n}"]) for n in range(3)),
                            ("tickets", ids["t_work"]), ("deals", ids["deal"])}
    alice = records[("contacts", ids["alice"])]
    assert alice.category == "profile"
    assert alice.fields["properties"]["city"] == "Aarhus Centrum", "read fetched the full record"
    assert records[("tickets", ids["t0"])].category == "support"
    deal = records[("deals", ids["deal"])]
    assert deal.fields["properties"]["dealname"] == "Andersen annual plan"


def test_cursor_paging_reads_every_page(crm: CrmServer, ids: dict[str, str]) -> None:
    found = refs(hubspot(crm).find(Subject({"email": {"alice@example.org"}})))
    assert {("tickets", ids[f"t{n}"]) for n in range(3)} <= found
    ticket_searches = crm.requests_to("/crm/v3/objects/tickets/search")
    assert [s.body.get("after") for s in ticket_searches] == [None, "2"]
    assert all(s.status == 200 for s in crm.seen)


def test_search_sends_the_identifier_as_json_safely(crm: CrmServer) -> None:
    odd = crm.add("contacts", {"email": ODD_EMAIL, "firstname": "Odd"})
    found = refs(hubspot(crm).find(Subject({"email": {ODD_EMAIL}})))
    assert ("contacts", odd) in found
    sent = crm.requests_to("/crm/v3/objects/contacts/search")[0].body
    assert sent["filterGroups"] == [{"filters": [
        {"propertyName": "email", "operator": "EQ", "value": ODD_EMAIL.lower()}]}]


def test_match_drops_results_that_are_not_the_subject(crm: CrmServer, ids: dict[str, str]) -> None:
    greedy = {"filterGroups": [{"filters": [
        {"propertyName": "{field}", "operator": "HAS_PROPERTY", "value": "{value}"}]}]}
    connector = hubspot(crm, objects={"contacts": {"search": {"body": greedy}},
                                      "tickets": {"erase": "keep", "hold": "h", "reason": "r"}})
    contacts = {r.key for r in connector.find(ALICE) if r.collection == "contacts"}
    assert contacts == {ids["alice"], ids["alice_work"]}


def test_discover_reports_the_other_identifiers_of_found_contacts(
    crm: CrmServer, ids: dict[str, str]
) -> None:
    connector = hubspot(crm)
    found = connector.discover(Subject({"email": {"alice@example.org"}}))
    assert found == {"email": ["alice@example.org"], "phone": ["+491605550101"]}
    by_mobile = refs(connector.find(Subject({"phone": found["phone"]})))
    assert ("contacts", ids["alice"]) in by_mobile, "the discovered number finds the contact"
    crm.seen.clear()
    assert connector.discover(ALICE) == {
        "email": ["a.andersen@work.example", "alice@example.org"],
        "phone": ["+4915112345678", "+491605550101"]}
    assert not crm.requests_to("/crm/v3/objects/tickets/"), "discovery searches contacts only"
    carol = connector.discover(Subject({"email": {"carol@example.org"}}))
    assert carol["phone"] == ["+442079460000"], "discovered values are normalised"


def test_find_nothing_sends_no_request_for_an_empty_subject(crm: CrmServer) -> None:
    assert list(hubspot(crm).find(Subject({"customer_id": {"c-1"}}))) == []
    assert crm.seen == []


# ------------------------------------------------------------------ erase
def test_erase_deletes_contacts_and_tickets_and_keeps_deals(
    crm: CrmServer, ids: dict[str, str]
) -> None:
    connector = hubspot(crm)
    plan = connector.plan_erasure(ALICE)
    actions = {item.ref: item for item in plan.items}
    deal = actions[("deals", ids["deal"])]
    assert deal.action is Action.KEEP and deal.detail.startswith("hold commercial-records: ")
    assert actions[("contacts", ids["alice"])].action is Action.DELETE
    result = connector.erase(plan)
    assert (result.deleted, result.masked, result.kept) == (6, 0, 1)
    gdpr = crm.requests_to("/crm/v3/objects/contacts/gdpr-delete")
    assert sorted(s.body["objectId"] for s in gdpr) == sorted([ids["alice"], ids["alice_work"]])
    assert set(crm.objects["contacts"]) == {ids["bob"], ids["carol"]}
    assert set(crm.objects["tickets"]) == {ids["t_bob"], ids["t_carol"]}
    assert set(crm.objects["deals"]) == {ids["deal"], ids["deal_bob"]}, "the held deal stays"
    deletes = [s for s in crm.seen if s.method in ("DELETE", "POST") and "search" not in s.path]
    assert deletes[-1].path.endswith("gdpr-delete"), "children are erased before their contact"


def test_erase_is_idempotent_when_records_are_already_gone(
    crm: CrmServer, ids: dict[str, str]
) -> None:
    connector = hubspot(crm)
    plan = connector.plan_erasure(ALICE)
    crm.archive("contacts", ids["alice_work"])  # deleted by someone else meanwhile
    crm.archive("tickets", ids["t0"])
    assert connector.erase(plan).deleted == 4
    assert crm.requests_to("/crm/v3/objects/tickets/")[-1].status in (204, 404)
    again = connector.erase(plan)
    assert (again.deleted, again.kept) == (0, 1)
    assert list(connector.find(ALICE)) == []


def test_anonymise_strategy(crm: CrmServer, ids: dict[str, str]) -> None:
    connector = hubspot(crm, objects={"contacts": {"erase": "anonymise"}})
    plan = connector.plan_erasure(ALICE)
    masked = [i for i in plan.items if i.collection == "contacts"]
    assert {i.action for i in masked} == {Action.MASK}
    assert masked[0].detail.startswith(
        "fixed values written by PATCH /crm/v3/objects/contacts/{id}: properties.email, ")
    result = connector.erase(plan)
    assert (result.masked, result.deleted) == (2, 4)
    stored = crm.objects["contacts"][ids["alice"]]["properties"]
    assert stored["email"] == f"erased-{ids['alice']}@invalid.example"
    assert stored["firstname"] == "" and stored["city"] == ""
    assert crm.objects["contacts"][ids["alice_work"]]["properties"]["phone"] == ""
    assert list(connector.find(ALICE)) == []
    assert connector.erase(plan).masked == 2, "masking again is harmless"


def test_keep_strategy_reports_the_hold(crm: CrmServer, ids: dict[str, str]) -> None:
    connector = hubspot(crm, objects={"contacts": {"erase": "keep", "hold": "litigation",
                                                   "reason": "open court case 12 O 34/24"}})
    items = {i.ref: i for i in connector.plan_erasure(BOB).items}
    assert items[("contacts", ids["bob"])].action is Action.KEEP
    assert items[("contacts", ids["bob"])].detail == "hold litigation: open court case 12 O 34/24"
    assert items[("contacts", ids["bob"])].holds == ("litigation",)
    result = connector.erase(connector.plan_erasure(BOB))
    assert (result.deleted, result.kept) == (1, 2)
    assert ids["bob"] in crm.objects["contacts"]


def test_erase_refuses_a_plan_the_configuration_cannot_carry_out(
    crm: CrmServer, ids: dict[str, str]
) -> None:
    plan = hubspot(crm).plan_erasure(BOB)
    keep_all = {name: {"erase": "keep", "hold": "h", "reason": "r", "delete": None}
                for name in ("contacts", "tickets", "deals")}
    with pytest.raises(PermanentError, match="no delete endpoint"):
        hubspot(crm, objects=keep_all).erase(plan)


# ------------------------------------------------------------------ http faults
def test_429_waits_the_retry_after(crm: CrmServer, ids: dict[str, str]) -> None:
    crm.fail(429, times=2, retry_after="0.05")
    assert len(list(hubspot(crm).find(BOB))) == 3
    first = crm.seen[:3]
    assert [s.status for s in first] == [429, 429, 200]
    gaps = [b.at - a.at for a, b in zip(first, first[1:], strict=False)]
    assert all(gap >= 0.05 for gap in gaps), gaps


def test_429_asking_more_than_the_cap_is_retryable_at_once(
    crm: CrmServer, ids: dict[str, str]
) -> None:
    crm.fail(429, times=1, retry_after="120")
    started = time.monotonic()
    with pytest.raises(RetryableError, match="rate limited"):
        list(hubspot(crm).find(BOB))
    assert time.monotonic() - started < 1


def test_429_with_an_http_date(crm: CrmServer, ids: dict[str, str]) -> None:
    crm.fail(429, times=1, retry_after="Thu, 01 Jan 1970 00:00:00 GMT")  # in the past: no wait
    assert len(list(hubspot(crm).find(BOB))) == 3


def test_a_burst_of_500s_is_retried(crm: CrmServer, ids: dict[str, str]) -> None:
    crm.fail(500, times=3)
    assert len(list(hubspot(crm).find(BOB))) == 3
    assert [s.status for s in crm.seen[:4]] == [500, 500, 500, 200]


def test_a_longer_500_burst_is_retryable(crm: CrmServer, ids: dict[str, str]) -> None:
    crm.fail(503, times=10)
    with pytest.raises(RetryableError, match=r"answered HTTP 503 after 4 tries"):
        list(hubspot(crm).find(BOB))
    assert len(crm.seen) == 4


def test_a_timeout_is_retried(crm: CrmServer, ids: dict[str, str]) -> None:
    crm.fail(200, times=1, delay=0.4)
    assert len(list(hubspot(crm, timeout=0.1).find(BOB))) == 3


def test_a_redirect_is_not_followed(crm: CrmServer, ids: dict[str, str]) -> None:
    elsewhere = f"http://localhost:{crm.port}/crm/v3/objects/contacts/search"
    crm.fail(307, headers={"Location": elsewhere})
    with pytest.raises(PermanentError, match="answered HTTP 307"):
        list(hubspot(crm).find(BOB))
    assert len(crm.seen) == 1


def test_unreachable_api_is_retryable(closed_url: str) -> None:
    with pytest.raises(RetryableError, match="cannot reach http://127.0.0.1"):
        list(hubspot(closed_url).find(BOB))


def test_other_4xx_is_permanent_and_names_the_endpoint(crm: CrmServer) -> None:
    wrong = {"contacts": {"search": {"path": "/crm/v3/objects/nope/search"}}}
    connector = hubspot(crm, objects=wrong)
    with pytest.raises(PermanentError) as caught:
        list(connector.find(ALICE))
    assert str(caught.value).startswith("POST /crm/v3/objects/nope/search answered HTTP 404")
    assert "alice" not in str(caught.value).lower()


# ------------------------------------------------------------------ auth
def oauth(crm: CrmServer, **auth: Any) -> RestConnector:
    return hubspot(crm, auth={"kind": "oauth2_client_credentials", "token": None,
                              "token_url": f"{crm.url}/oauth/token", "client_id": "dsar-client",
                              "client_secret": "dsar-secret", "scope": "crm", **auth})


def test_oauth_token_is_cached_and_refreshed_once_on_401(
    crm: CrmServer, ids: dict[str, str]
) -> None:
    connector = oauth(crm)
    assert len(list(connector.find(BOB))) == 3
    assert crm.tokens_issued == 1, "one token for all the calls"
    crm.expire_tokens()
    assert len(list(connector.find(BOB))) == 3
    assert crm.tokens_issued == 2
    assert [s.status for s in crm.seen].count(401) == 1


def test_oauth_refreshes_only_once_then_gives_up(crm: CrmServer, ids: dict[str, str]) -> None:
    crm.fail(401, times=5)
    with pytest.raises(PermanentError, match=r"credentials refused \(HTTP 401\)"):
        list(oauth(crm).find(BOB))
    assert crm.tokens_issued == 2, "the first token and one refresh"
    assert len(crm.requests_to("/crm/")) == 2


def test_oauth_client_secret_in_the_form_body(crm: CrmServer, ids: dict[str, str]) -> None:
    assert len(list(oauth(crm, client_auth="body").find(BOB))) == 3
    token_request = crm.requests_to("/oauth/token")[0]
    assert token_request.body["client_id"] == "dsar-client"
    assert token_request.authorization is None


def test_refused_oauth_client_is_permanent(crm: CrmServer, ids: dict[str, str]) -> None:
    connector = oauth(crm, client_secret="wrong")
    with pytest.raises(PermanentError, match="token endpoint refused"):
        list(connector.find(BOB))
    result = connector.check()
    assert not result.ok and "token endpoint refused" in result.message


def test_refused_bearer_token_is_permanent(crm: CrmServer, ids: dict[str, str]) -> None:
    connector = hubspot(crm, auth={"token": "revoked"})
    with pytest.raises(PermanentError, match=r"credentials refused \(HTTP 401\)"):
        list(connector.find(BOB))
    assert len(crm.seen) == 1, "no retries, no refresh for a static token"
    assert connector.check().message.endswith("credentials refused (HTTP 401)")


def test_api_key_header(crm: CrmServer, ids: dict[str, str]) -> None:
    crm.api_key = "k-123"
    connector = hubspot(crm, auth={"kind": "api_key", "token": None, "header": "X-Api-Key",
                                   "key": "k-123"})
    assert len(list(connector.find(BOB))) == 3


def test_nothing_identifying_or_secret_is_logged(
    crm: CrmServer, ids: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    crm.fail(429, times=1, retry_after="0.01")
    crm.fail(500, times=1)
    connector = oauth(crm)
    list(connector.find(ALICE))
    crm.expire_tokens()
    connector.erase(connector.plan_erasure(ALICE))
    assert caplog.records, "retries and counts are logged"
    assert crm.tokens_issued == 2
    banned = {"alice", "4915112345678", "andersen", "aarhus", "dsar-secret", "test-token",
              "refund", *crm.issued}
    for record in caplog.records:
        text = (record.getMessage() + (record.exc_text or "")).lower()
        assert not [b for b in banned if b.lower() in text], record.getMessage()


# ------------------------------------------------------------------ other paginations
def helpdesk(crm: CrmServer, path: str, paging: dict[str, Any]) -> RestConnector:
    config = {"base_url": crm.url, "auth": {"kind": "bearer", "token": "test-token"}, **FAST,
              "objects": {"tickets": {
                  "category": "support", "identity": {"email": "requester"},
                  "erase": "keep", "hold": "support-history", "reason": "kept for 2 years",
                  "search": {"path": path, "query": {"{field}": "{value}"}, "results": "tickets",
                             "paging": paging}}}}
    return RestConnector("helpdesk", RestConnector.load_config(config))


@pytest.fixture
def helpdesk_tickets(crm: CrmServer) -> list[str]:
    crm.add_helpdesk_ticket("bob@example.org", "Bob's")
    return [crm.add_helpdesk_ticket("alice@example.org", f"Alice {n}") for n in range(5)]


@pytest.mark.parametrize(("path", "paging", "requests"), [
    ("/helpdesk/offset/tickets", {"kind": "offset", "page_size": 2}, 3),
    ("/helpdesk/pages/tickets", {"kind": "next_link", "next": "next_page"}, 3),
    ("/helpdesk/linked/tickets", {"kind": "next_link"}, 3),
])
def test_every_pagination_returns_every_record(
    crm: CrmServer, helpdesk_tickets: list[str], path: str, paging: dict, requests: int
) -> None:
    found = [r.key for r in helpdesk(crm, path, paging).find(ALICE)]
    assert sorted(found) == sorted(helpdesk_tickets)
    assert len(crm.requests_to("/helpdesk/")) == requests


def test_offset_parameters_go_in_the_query(crm: CrmServer, helpdesk_tickets: list[str]) -> None:
    list(helpdesk(crm, "/helpdesk/offset/tickets", {"kind": "offset", "page_size": 2}).find(ALICE))
    offsets = [s.query["offset"] for s in crm.requests_to("/helpdesk/")]
    assert offsets == [["0"], ["2"], ["4"]]
    assert crm.seen[0].query["requester"] == ["alice@example.org"]


@pytest.mark.parametrize("paging", [{"kind": "next_link", "next": "next_page"},
                                    {"kind": "next_link"}])
def test_next_link_to_another_origin_is_refused(
    crm: CrmServer, helpdesk_tickets: list[str], paging: dict
) -> None:
    crm.next_link_host = "localhost"  # same server, another origin
    path = "/helpdesk/pages/tickets" if "next" in paging else "/helpdesk/linked/tickets"
    with pytest.raises(PermanentError, match="outside the origin of base_url"):
        list(helpdesk(crm, path, paging).find(ALICE))
    assert len(crm.seen) == 1, "the foreign link was not followed"


def test_a_repeating_cursor_stops(crm: CrmServer, helpdesk_tickets: list[str]) -> None:
    connector = helpdesk(crm, "/helpdesk/pages/tickets",
                         {"kind": "cursor", "param": "page", "next": "count"})
    with pytest.raises(PermanentError, match="cursor repeats"):
        list(connector.find(ALICE))


# ------------------------------------------------------------------ check
def test_check_uses_the_check_endpoint(crm: CrmServer) -> None:
    result = hubspot(crm).check()
    assert result.ok and result.message == "GET /crm/v3/objects/contacts answered HTTP 200"
    assert crm.seen[0].query == {"limit": ["1"]}


def test_check_without_endpoint_probes_a_search(crm: CrmServer) -> None:
    result = hubspot(crm, check=None).check()
    assert result.ok and result.message == "search of contacts answered HTTP 200"
    assert crm.seen[0].path == "/crm/v3/objects/contacts/search"


def test_check_reports_a_rate_limit_without_waiting(crm: CrmServer) -> None:
    crm.fail(429, times=1, retry_after="0.5")
    result = hubspot(crm).check()
    assert not result.ok and "rate limited" in result.message


# ------------------------------------------------------------------ configuration
BASE = {"base_url": "https://crm.example", "auth": {"kind": "bearer", "token": "t"}}
SEARCH = {"method": "POST", "path": "/search", "body": {"q": "{value}"}}


def load(**objects: Any) -> dict[str, Any]:
    return RestConnector.load_config({**BASE, "objects": objects})


@pytest.mark.parametrize(("spec", "message"), [
    ({"identity": {"email": "email"}, "erase": "delete", "search": {"path": "/all"},
      "delete": {"path": "/c/{id}"}}, "must use {value}"),
    ({"identity": {"email": "email"}, "erase": "delete", "search": SEARCH,
      "delete": {"path": "/contacts"}}, "must use {id}"),
    ({"identity": {"email": "email"}, "erase": "delete", "search": SEARCH}, "needs a delete"),
    ({"identity": {"email": "email"}, "erase": "keep", "search": SEARCH}, "needs hold and reason"),
    ({"identity": {"email": "email"}, "erase": "anonymise", "search": SEARCH,
      "anonymise": {"path": "/c/{id}"}}, "Missing data"),
    ({"erase": "keep", "hold": "h", "reason": "r", "search": SEARCH}, "exactly one of"),
    ({"identity": {"fax": "fax"}, "erase": "keep", "hold": "h", "reason": "r",
      "search": SEARCH}, "Must be one of"),
    ({"identity": {"email": "e"}, "match": {"phone": "p"}, "erase": "keep", "hold": "h",
      "reason": "r", "search": SEARCH}, "only kinds listed"),
])
def test_config_mistakes_are_named(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        load(contacts=spec)
    assert message in str(caught.value.messages)


def test_config_parent_must_exist_and_not_cycle() -> None:
    keep = {"erase": "keep", "hold": "h", "reason": "r", "search": SEARCH}
    with pytest.raises(ValidationError, match="unknown object type 'nope'"):
        load(contacts={**keep, "identity": {"email": "e"}}, tickets={**keep, "parent": "nope"})
    with pytest.raises(ValidationError, match="cycle"):
        load(a={**keep, "parent": "b"}, b={**keep, "parent": "a"})


@pytest.mark.parametrize(("auth", "message"), [
    ({"kind": "bearer"}, "required for this auth kind"),
    ({"kind": "api_key", "key": "k"}, "required for this auth kind"),
    ({"kind": "bearer", "token": "t", "client_secret": "s"}, "not used by auth kind"),
    ({"kind": "oauth2_client_credentials", "token_url": "ftp://x", "client_id": "c",
      "client_secret": "s"}, "Not a valid URL"),
])
def test_auth_config_mistakes(auth: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RestConnector.load_config({**BASE, "auth": auth, "objects": {}})
    assert message in str(caught.value.messages)


def test_a_credential_with_a_line_break_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as caught:
        RestConnector.load_config({**BASE, "auth": {"kind": "bearer", "token": "t0k\r\nX: y"},
                                   "objects": {}})
    assert "control characters" in str(caught.value.messages)
    assert "t0k" not in str(caught.value.messages)


@pytest.mark.parametrize("where", ["base_url", "token_url"])
def test_a_url_with_credentials_is_refused_without_echoing_it(where: str) -> None:
    url = "https://crm-user:pw-in-the-url@crm.example/api"
    auth = {"kind": "oauth2_client_credentials", "token_url": "https://crm.example/token",
            "client_id": "c", "client_secret": "s"}
    raw = {**BASE, "auth": auth, "objects": {}}
    raw = {**raw, "base_url": url} if where == "base_url" else {
        **raw, "auth": {**auth, "token_url": url}}
    with pytest.raises(ValidationError) as caught:
        RestConnector.load_config(raw)
    assert "must not hold a user or password" in str(caught.value.messages)
    assert "pw-in-the-url" not in str(caught.value.messages)


def test_secrets_are_flagged() -> None:
    auth = RestConnector.config_schema().fields["auth"].schema.fields  # type: ignore[attr-defined]
    assert {n for n, f in auth.items() if f.metadata.get("secret")} == {
        "key", "token", "password", "client_secret"}


def test_profile_is_shipped_registered_and_overridable() -> None:
    assert "hubspot_contacts" in shipped_profiles()
    assert available_types()["rest"].value == "connectors.rest:RestConnector"
    config = RestConnector.load_config({"profile": "hubspot_contacts",
                                        "auth": {"kind": "bearer", "token": "t"},
                                        "objects": {"deals": {"erase": "delete", "delete": {
                                            "path": "/crm/v3/objects/deals/{id}"}}}})
    assert config["base_url"] == "https://api.hubapi.com"
    assert config["objects"]["deals"]["erase"] == "delete"
    assert config["objects"]["deals"]["search"]["path"] == "/crm/v3/objects/deals/search"
    with pytest.raises(ValidationError, match="unknown profile"):
        RestConnector.load_config({"profile": "../../etc/passwd"})


# ------------------------------------------------------------------ helpers
def test_templates_encode_values_not_splice_them() -> None:
    assert fill({"v": "{value}", "k": ["x-{id}"]}, {"value": 'a"b', "id": "7"}) == {
        "v": 'a"b', "k": ["x-7"]}
    assert fill("{value}", {"value": "{id}"}) == "{id}", "a value is not filled again"
    assert fill_path("/c/{id}/x", {"id": "../admin?x=1"}) == "/c/..%2Fadmin%3Fx%3D1/x"


@pytest.mark.parametrize(("header", "seconds"), [
    ("3", 3.0), ("0.05", 0.05), ("-2", 0.0), ("nan", None), ("soon", None), (None, None),
    ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
])
def test_retry_after_parsing(header: str | None, seconds: float | None) -> None:
    now = dt.datetime(2015, 10, 21, 7, 28, tzinfo=dt.UTC)
    assert retry_after_seconds(header, now) == seconds


def test_link_header() -> None:
    header = '<https://a.example/x?page=1>; rel="prev", <https://a.example/x?page=3>; rel="next"'
    assert link_header_next(header) == "https://a.example/x?page=3"
    assert link_header_next('<https://a.example/x>; rel="last"') is None


# ------------------------------------------------------------------ stop
def _changes(seen: Any) -> bool:
    return seen.method == "DELETE" or seen.path.endswith("gdpr-delete")


def test_erase_stopped_after_one_delete_reports_it_and_resumes(
    crm: CrmServer, ids: dict[str, str]
) -> None:
    connector = hubspot(crm)
    plan = connector.plan_erasure(ALICE)
    stop = threading.Event()
    crm.on_answered = lambda seen: stop.set() if _changes(seen) else None
    with stop_scope(stop), pytest.raises(Stopped) as stopped:
        connector.erase(plan)
    crm.on_answered = None
    assert stopped.value.done is not None
    assert (stopped.value.done.deleted, stopped.value.done.masked) == (1, 0)
    assert len([s for s in crm.seen if _changes(s)]) == 1, "no call after the stop"
    assert connector.erase(plan).deleted == 5, "the rerun does the rest"
    assert refs(connector.find(ALICE)) <= plan.kept()


def test_find_stops_before_the_next_request(crm: CrmServer, ids: dict[str, str]) -> None:
    connector = hubspot(crm)
    with stop_scope(threading.Event()) as stop:
        records = connector.find(ALICE)
        next(records)
        asked = len(crm.seen)
        stop.set()
        with pytest.raises(Stopped):
            next(records)
    assert len(crm.seen) == asked, "no request after the stop"


def test_discover_stops_when_asked(crm: CrmServer, ids: dict[str, str]) -> None:
    connector = hubspot(crm)
    with stop_scope(threading.Event()) as stop, pytest.raises(Stopped):
        stop.set()
        connector.discover(ALICE)
    assert crm.seen == [], "stopped before the first request"
