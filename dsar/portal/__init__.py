"""The requester portal: submit, verify, follow, download. HTML, no JavaScript needed."""

from flask import Blueprint

bp = Blueprint("portal", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/portal")

from . import errors, views  # noqa: E402,F401  (registers handlers and routes on bp)
