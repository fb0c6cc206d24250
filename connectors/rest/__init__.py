"""``rest``: a person's records in a SaaS CRM's HTTP/JSON API, declared in TOML.

A shipped profile does most of the work (see ``connectors/profiles/``)::

    [connectors.hubspot]
    type = "rest"
    profile = "hubspot_contacts"
    auth = { kind = "bearer", token = "pat-eu1-..." }

Or everything by hand; per object type: how to search it by identifier
(``identity``) or from a parent record (``parent``), where results and ids
are (dotted paths), an optional ``read`` of the full record, and erasure
(``delete``, ``anonymise`` with fixed values, or ``keep`` under a hold)::

    type = "rest"
    base_url = "https://crm.example.com"
    auth = { kind = "oauth2_client_credentials", token_url = "https://crm.example.com/oauth/token",
             client_id = "dsar", client_secret = "...", scope = "contacts" }
    [objects.contacts]
    identity = { email = "email" }                 # kind = the API's field, as {field}
    erase = "delete"
    search = { method = "GET", path = "/api/contacts", query = { "{field}" = "{value}" },
               results = "data", id = "id", paging = { kind = "next_link", next = "links.next" } }
    delete = { path = "/api/contacts/{id}" }

Templates hold ``{value}`` (the identifier, or the parent's id), ``{field}``
and ``{id}``; they are filled in the parsed structure and encoded afterwards,
never spliced into JSON or URLs. HTTP policy: ``timeout``, ``max_tries``,
``backoff``, ``retry_after_cap`` (see :mod:`connectors.rest.http`). Full
reference: ``docs/connectors.md``, section ``rest``.
"""

from .connector import RestConnector

__all__ = ["RestConnector"]
