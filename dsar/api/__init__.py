"""The JSON API for integrators, under /api/v1: token-authenticated, CSRF-exempt."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import errors, views  # noqa: E402,F401  (registers the routes on bp)

errors.register(bp)
