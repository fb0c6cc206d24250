"""The compliance officer's console under ``/console``: sign-in with two
factors, the queue, a request's page and its actions. HTML, no JavaScript.

Every route declares the roles that may use it (:mod:`.access`); a route
without a declaration refuses to run, and a test walks the URL map.
"""

from flask import Blueprint

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")

from . import (  # noqa: E402,F401  (registers on bp)
    account,
    actions,
    admin,
    dashboard,
    errors,
    request_views,
    trail,
    views,
)
