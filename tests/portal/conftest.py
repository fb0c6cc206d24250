"""Portal fixtures: apps that write mail to a per-test outbox and propagate errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.portal.journey import Browser


@pytest.fixture
def portal_app(make_app: Callable[..., Flask], tmp_path: Path) -> Callable[..., Flask]:
    """``make_app`` with the outbox in tmp and ``TESTING`` on (exceptions propagate)."""

    def factory(**config: Any) -> Flask:
        config.setdefault("OUTBOX_DIR", str(tmp_path / "outbox"))
        return make_app(TESTING=True, **config)

    return factory


@pytest.fixture
def browser(portal_app: Callable[..., Flask]) -> Browser:
    return Browser(portal_app())
