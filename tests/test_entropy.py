"""dsar.entropy: the system's CSPRNG unless a test seeds it, values in the
shapes their readers expect, the seeded fixture repeatable and put back."""

from __future__ import annotations

import random
import re

import pytest

from dsar import entropy
from dsar.models.request import is_request_id, new_request_id
from dsar.workflow import verification
from tests.support.app import SEED


def test_production_draws_from_the_system_csprng() -> None:
    assert type(entropy.source) is random.SystemRandom
    assert len({entropy.hex_id() for _ in range(100)}) == 100


def test_values_keep_their_shapes() -> None:
    for _ in range(200):
        request_id = new_request_id()
        assert is_request_id(request_id) and request_id[12] == "4"  # a version 4 UUID
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", entropy.token_urlsafe(32))
        assert re.fullmatch(r"\d{6}", verification.new_code())
        assert re.fullmatch(r"[0-9a-f]{12}", entropy.hex_id(6))


class _Fixed(random.Random):
    """Draws the same number and bytes every time."""

    def randrange(self, *_args: object, **_kwargs: object) -> int:  # type: ignore[override]
        return 42

    def randbytes(self, n: int) -> bytes:
        return bytes(n)


def test_a_small_code_is_zero_padded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(entropy, "source", _Fixed())
    assert verification.new_code() == "000042"
    assert entropy.hex_id(6) == "000000000000"


def _draws() -> list[str]:
    return [new_request_id(), entropy.token_urlsafe(32), verification.new_code(),
            entropy.hex_id(6)]


def test_the_seeded_fixture_repeats(seeded: random.Random,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    first = _draws()
    monkeypatch.setattr(entropy, "source", random.Random(SEED))  # noqa: S311 - test-only
    assert _draws() == first


def test_the_seed_is_gone_after_the_test() -> None:
    assert type(entropy.source) is random.SystemRandom
