"""dsar: answer GDPR data-subject requests properly."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response

__version__ = "0.1.0"


def create_app(config: Mapping[str, Any] | None = None, *,
               load_connectors: bool | None = None,
               connector_types: Mapping[str, Any] | None = None) -> Flask:
    """Build the application.

    ``config`` overrides settings read from ``DSAR_*`` variables (keys without
    the prefix). ``load_connectors``: validate the connector file now; default
    only in production, so CLI commands like ``dsar db upgrade`` work before a
    connector file exists. ``connector_types`` adds connector classes by type
    name without entry points (tests). Raises :class:`dsar.config.ConfigError`.
    Starts no threads (with ``DSAR_EXECUTOR=celery`` it installs the task
    publisher, which connects to the broker on first use).
    """
    from .config import load_settings
    from .runtime import Runtime, close_request_session

    app = Flask(__name__, instance_path=os.environ.get("DSAR_INSTANCE_PATH") or None)
    settings = load_settings(os.environ, config, app.instance_path)
    rt = Runtime(settings, connector_types)
    app.config.update(settings)
    app.config["SECRET_KEY"] = rt.crypto.session_key
    app.extensions["dsar"] = rt
    app.teardown_appcontext(close_request_session)
    logging.getLogger("dsar").setLevel(settings["LOG_LEVEL"])
    if load_connectors if load_connectors is not None else settings["ENV"] == "production":
        _ = rt.connectors
    if settings["EXECUTOR"] == "celery":  # every process publishes its runnable tasks
        from .celery_executor import install_publisher

        install_publisher(rt)
    _register_web(app)
    return app


def _register_web(app: Flask) -> None:
    from .api import bp as api_bp
    from .console import bp as console_bp
    from .extensions import csrf, init_extensions, rate_limits
    from .logfilter import install as install_log_filter
    from .portal import bp as portal_bp

    init_extensions(app)
    install_log_filter()
    csrf.exempt(api_bp)
    app.register_blueprint(portal_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(console_bp)
    rate_limits.apply(app)  # this app's limiter on the views that declare limits
    hsts = int(app.config["HSTS_SECONDS"])
    if app.config["HTTPS"] and hsts:
        @app.after_request
        def strict_transport(response: Response) -> Response:
            """Over HTTPS, browsers are told to come back only over HTTPS."""
            response.headers["Strict-Transport-Security"] = f"max-age={hsts}"
            return response
