"""dsar/crypto.py pinned where `make mutate` found it loose: the keys each purpose derives
(data already stored depends on them never changing), the ciphertext's format check, the
exact errors, the token digest's prefix and text_bytes for lone surrogates."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dsar.crypto import Crypto, DecryptionError, constant_time_equal, derive_key, text_bytes

MASTER = "m" * 32
#: derive_key(MASTER, purpose) for each purpose Crypto uses: stored ciphertexts, digests and
#: audit seals were made with these, so a change to the derivation loses them all
KEYS = {
    "data-encryption": "09401f410cf3f2ae1acf0605ed3507d6cbe141673ccea4ded97898ed7bbe4531",
    "identifier-hmac": "73864fa057f349e142a91200d650b231176b32730a721f9a38ffff2ddfcba70e",
    "flask-session": "a7dd63267f78d87cf48755b8280a74980bef68c33d7417f89155fb1889f2bec0",
}


def hkdf(secret: bytes, purpose: str) -> bytes:
    """HKDF-SHA256 as the module's docstring states it: 32 bytes, salt ``dsar-v1``."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"dsar-v1",
                info=purpose.encode()).derive(secret)


@pytest.mark.parametrize("purpose", [*KEYS, "audit-seal"])
def test_derive_key_is_hkdf_sha256_with_the_dsar_salt(purpose: str) -> None:
    key = derive_key(MASTER, purpose)
    assert key == hkdf(MASTER.encode(), purpose)
    assert len(key) == 32
    assert derive_key(MASTER.encode(), purpose) == key  # bytes and str secrets alike
    if purpose in KEYS:
        assert key.hex() == KEYS[purpose]


def test_each_purpose_uses_its_own_derived_key() -> None:
    crypto = Crypto(MASTER)
    blob = crypto.encrypt(b"probe", "ctx")
    data_key = bytes.fromhex(KEYS["data-encryption"])
    assert AESGCM(data_key).decrypt(blob[1:13], blob[13:], b"ctx") == b"probe"
    identifier_key = bytes.fromhex(KEYS["identifier-hmac"])
    assert crypto.identifier_digest("email", " Alice@Example.org") == hmac.new(
        identifier_key, b"email:alice@example.org", hashlib.sha256).hexdigest()
    assert crypto.token_digest("abc") == hmac.new(
        identifier_key, b"token:abc", hashlib.sha256).hexdigest()
    assert crypto.audit_mac("head:7") == hmac.new(
        hkdf(MASTER.encode(), "audit-seal"), b"head:7", hashlib.sha256).hexdigest()
    assert crypto.session_key == KEYS["flask-session"]


def test_the_audit_key_when_given_seals_and_nothing_else_changes() -> None:
    plain, custodied = Crypto(MASTER), Crypto(MASTER, "a" * 32)
    assert custodied.audit_mac("head:7") == hmac.new(
        hkdf(b"a" * 32, "audit-seal"), b"head:7", hashlib.sha256).hexdigest()
    assert custodied.token_digest("abc") == plain.token_digest("abc")
    assert custodied.session_key == plain.session_key
    assert plain.decrypt(custodied.encrypt(b"x", "c"), "c") == b"x"


def test_a_ciphertext_is_version_nonce_and_sealed_text() -> None:
    blob = Crypto(MASTER).encrypt(b"abc", "c")
    assert blob[:1] == b"\x01"
    assert len(blob) == 1 + 12 + 3 + 16  # version, nonce, text, GCM tag


def test_the_shortest_ciphertext_an_empty_value_decrypts() -> None:
    crypto = Crypto(MASTER)
    blob = crypto.encrypt(b"", "c")
    assert len(blob) == 29
    assert crypto.decrypt(blob, "c") == b""
    assert crypto.decrypt_text(crypto.encrypt_text("", "c"), "c") == ""


@pytest.mark.parametrize("blob", [
    b"\x02" + bytes(40),  # another version byte, long enough
    b"",
    b"\x01" + bytes(27),  # the version, one byte short of a nonce and a tag
])
def test_a_blob_not_of_this_format_is_refused_as_such(blob: bytes) -> None:
    with pytest.raises(DecryptionError) as refused:
        Crypto(MASTER).decrypt(blob, "c")
    assert str(refused.value) == "unknown ciphertext format"


def test_the_wrong_context_or_key_says_so() -> None:
    blob = Crypto(MASTER).encrypt(b"x", "c")
    for crypto, context in ((Crypto(MASTER), "other"), (Crypto("n" * 32), "c")):
        with pytest.raises(DecryptionError) as refused:
            crypto.decrypt(blob, context)
        assert str(refused.value) == "ciphertext does not match key or context"
        assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_text_is_utf8_both_ways() -> None:
    crypto = Crypto(MASTER)
    blob = crypto.encrypt_text("Zoë 🙂", "c")
    assert crypto.decrypt(blob, "c") == "Zoë 🙂".encode()
    assert crypto.decrypt_text(crypto.encrypt("é".encode(), "c"), "c") == "é"


def test_text_bytes_passes_lone_surrogates_through() -> None:
    assert text_bytes("a\ud800") == b"a\xed\xa0\x80"
    assert text_bytes("Zoë") == "Zoë".encode()
    assert constant_time_equal("a\ud800", "a\ud800")
    assert not constant_time_equal("a\ud800", "a\ud801")
    assert not constant_time_equal("abc", "abd")
