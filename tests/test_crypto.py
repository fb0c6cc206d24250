"""Encryption at rest and keyed hashes."""

import pytest

from dsar.crypto import Crypto, DecryptionError

SECRET = "s" * 40


def test_round_trip_and_context_binding() -> None:
    crypto = Crypto(SECRET)
    blob = crypto.encrypt_text("alice@example.org", "identifier:email")
    assert b"alice" not in blob
    assert crypto.decrypt_text(blob, "identifier:email") == "alice@example.org"
    with pytest.raises(DecryptionError):
        crypto.decrypt_text(blob, "identifier:phone")
    with pytest.raises(DecryptionError):
        Crypto("t" * 40).decrypt_text(blob, "identifier:email")


def test_ciphertexts_differ_each_time() -> None:
    crypto = Crypto(SECRET)
    assert crypto.encrypt_text("x", "c") != crypto.encrypt_text("x", "c")


def test_identifier_digest_normalises_and_is_keyed() -> None:
    crypto = Crypto(SECRET)
    assert crypto.identifier_digest("email", " Alice@Example.org ") == \
        crypto.identifier_digest("email", "alice@example.org")
    assert crypto.identifier_digest("phone", "+44 20 7946-0000") == \
        crypto.identifier_digest("phone", "+442079460000")
    assert crypto.identifier_digest("email", "a@x.org") != \
        Crypto("t" * 40).identifier_digest("email", "a@x.org")


def test_audit_key_is_separate_when_given() -> None:
    assert Crypto(SECRET).audit_mac("m") != Crypto(SECRET, audit_key="k" * 40).audit_mac("m")
    assert Crypto(SECRET).audit_mac("m") != Crypto(SECRET).identifier_digest("email", "m")
