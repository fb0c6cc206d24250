"""Pagination of a search endpoint: offset, cursor or next link.

Each function yields one page at a time (the result list), so ``find``
streams. Every kind stops after ``max_pages`` pages with a
:class:`PermanentError` rather than loop forever on a misbehaving API.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urljoin

from dsar.connector import PermanentError

from .http import HttpClient, Response
from .templates import dig, link_header_next, same_origin


def results(response: Response, search: Mapping[str, Any], label: str) -> list[Any]:
    """The result list of one page; a missing list is a configuration error
    (finding nothing there would be reported as "no data", which it is not)."""
    found = dig(response.data, search["results"])
    if not isinstance(found, list):
        where = search["results"] or "the top level"
        raise PermanentError(f"{label}: the answer has no result list at {where!r}")
    return found


def pages(http: HttpClient, search: Mapping[str, Any], label: str, url: str,
          query: dict[str, str], body: Any, base_url: str) -> Iterator[list[Any]]:
    """Every page of one search, following ``search["paging"]``."""
    paging = search.get("paging")
    method = search["method"]
    if paging is None:
        yield results(http.call(method, url, label, query=query, body=body), search, label)
        return
    if paging["kind"] == "offset":
        yield from _offset(http, search, label, url, query, body)
    elif paging["kind"] == "cursor":
        yield from _cursor(http, search, label, url, query, body)
    else:
        yield from _next_link(http, search, label, url, query, body, base_url)


def _place(paging: Mapping[str, Any], query: dict[str, str], body: Any,
           params: dict[str, Any]) -> tuple[dict[str, str], Any]:
    """Paging parameters into the JSON body (``location`` body, or auto with
    a table body) or else into the query."""
    location = paging["location"]
    if location == "body" or (location == "auto" and isinstance(body, dict)):
        return query, {**(body or {}), **params}
    return {**query, **{name: str(value) for name, value in params.items()}}, body


def _too_many(label: str, paging: Mapping[str, Any]) -> PermanentError:
    return PermanentError(f"{label}: more than {paging['max_pages']} pages (max_pages); "
                          "is the paging configuration right?")


def _offset(http: HttpClient, search: Mapping[str, Any], label: str, url: str,
            query: dict[str, str], body: Any) -> Iterator[list[Any]]:
    paging = search["paging"]
    size, offset = paging["page_size"], 0
    for _ in range(paging["max_pages"]):
        params = {paging["limit_param"]: size, paging["offset_param"]: offset}
        page_query, page_body = _place(paging, query, body, params)
        page = results(http.call(search["method"], url, label, query=page_query, body=page_body),
                       search, label)
        yield page
        if len(page) < size:
            return
        offset += len(page)
    raise _too_many(label, paging)


def _cursor(http: HttpClient, search: Mapping[str, Any], label: str, url: str,
            query: dict[str, str], body: Any) -> Iterator[list[Any]]:
    paging = search["paging"]
    cursor: Any = None
    for _ in range(paging["max_pages"]):
        params = {} if cursor is None else {paging["param"]: cursor}
        page_query, page_body = _place(paging, query, body, params)
        response = http.call(search["method"], url, label, query=page_query, body=page_body)
        yield results(response, search, label)
        following = dig(response.data, paging["next"])
        if following is None or following == "":
            return
        if following == cursor:
            raise PermanentError(f"{label}: the next cursor repeats; paging would never end")
        cursor = following
    raise _too_many(label, paging)


def _next_link(http: HttpClient, search: Mapping[str, Any], label: str, url: str,
               query: dict[str, str], body: Any, base_url: str) -> Iterator[list[Any]]:
    """Follows next URLs (GET) only while they stay on ``base_url``'s origin:
    the credential must not be sent anywhere else."""
    paging = search["paging"]
    response = http.call(search["method"], url, label, query=query, body=body)
    for _ in range(paging["max_pages"]):
        yield results(response, search, label)
        if paging["next"]:
            link = dig(response.data, paging["next"])
        else:
            link = link_header_next(response.headers.get("Link"))
        if not link or not isinstance(link, str):
            return
        target = urljoin(response.url, link)
        if not same_origin(target, base_url):
            raise PermanentError(f"{label}: a next link leads outside the origin of base_url; "
                                 "refused (the credential is only sent to base_url)")
        response = http.call("GET", target, f"{label} (next page)")
    raise _too_many(label, paging)
