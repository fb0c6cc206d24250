"""One master secret, one key per purpose: a key that leaks, or is handed to
someone for one job (the audit seal's custodian, a cookie), opens nothing else.

Keys are told apart by what they produce (a MAC of the same message, a
ciphertext that opens or not), never read from Crypto's private fields.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dsar import create_app
from dsar import crypto as crypto_module
from dsar.crypto import Crypto, DecryptionError

#: 32 characters: usable as an AES-256 key as it is, so a data key that *is*
#: the master secret (or the audit key) would show
MASTER, OTHER_MASTER, AUDIT_KEY = "m" * 32, "n" * 32, "a" * 32
MESSAGE = "head:7:" + "ab" * 32
EMAIL = "alice@example.org"


def mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def opens(key: bytes, blob: bytes) -> bool:
    """Does ``blob`` (from Crypto.encrypt, context "c") decrypt under ``key``?"""
    try:
        AESGCM(key).decrypt(blob[1:13], blob[13:], b"c")
    except Exception:  # a wrong key (InvalidTag) or not an AES key's length
        return False
    return True


def keys_in_use(monkeypatch: pytest.MonkeyPatch, secret: str,
                audit_key: str | None) -> tuple[dict[str, bytes], list[bytes]]:
    """The key behind each purpose of ``Crypto(secret, audit_key)``, and every
    key it derived. Candidates are the keys it derived (recorded from
    derive_key), the master secret and the audit key; each purpose's key is
    the candidate that reproduces its output."""
    derived: list[bytes] = []
    real = crypto_module.derive_key

    def recording(material: str | bytes, purpose: str) -> bytes:
        derived.append(real(material, purpose))
        return derived[-1]

    with monkeypatch.context() as patch:
        patch.setattr(crypto_module, "derive_key", recording)
        crypto = Crypto(secret, audit_key)
    candidates = [*derived, secret.encode(), *([audit_key.encode()] if audit_key else [])]
    blob = crypto.encrypt(b"probe", "c")

    def which(purpose: str, produces: Callable[[bytes], bool]) -> bytes:
        found = [key for key in candidates if produces(key)]
        assert found, f"the {purpose} key is neither derived nor a secret given to Crypto"
        return found[0]

    in_use = {
        "data encryption": which("data encryption", lambda key: opens(key, blob)),
        "identifier digests": which("identifier digest", lambda key: mac(
            key, f"email:{EMAIL}") == crypto.identifier_digest("email", EMAIL)),
        "audit seal": which("audit seal", lambda key: mac(key, MESSAGE)
                            == crypto.audit_mac(MESSAGE)),
        "session cookies": bytes.fromhex(crypto.session_key),
    }
    return in_use, derived


@pytest.mark.parametrize("audit_key", [None, AUDIT_KEY],
                         ids=["master secret only", "with DSAR_AUDIT_KEY"])
def test_every_key_differs_from_every_other_and_from_the_secrets(
        monkeypatch: pytest.MonkeyPatch, audit_key: str | None) -> None:
    """Each purpose uses a key of its own, derived (never a secret as given),
    and every subkey Crypto derives, including any added later, is unique."""
    in_use, derived = keys_in_use(monkeypatch, MASTER, audit_key)
    secrets = {"the master secret": MASTER.encode()}
    if audit_key:
        secrets["DSAR_AUDIT_KEY"] = audit_key.encode()
    for purpose, key in in_use.items():
        assert key in derived, f"the {purpose} key was not derived"
        for name, secret in secrets.items():
            assert key != secret, f"the {purpose} key is {name}"
    for (one, one_key), (other, other_key) in combinations(in_use.items(), 2):
        assert one_key != other_key, f"{one} and {other} share a key"
    assert len(set(derived)) == len(derived), "two derived keys are the same"
    assert not set(derived) & set(secrets.values()), "a derived key is a secret as given"


def test_the_same_master_gives_the_same_keys() -> None:
    """Stable: what one process encrypted, hashed or sealed, the next reads."""
    first, second = Crypto(MASTER), Crypto(MASTER)
    assert second.decrypt(first.encrypt(b"x", "c"), "c") == b"x"
    assert first.identifier_digest("email", EMAIL) == second.identifier_digest("email", EMAIL)
    assert first.token_digest("t") == second.token_digest("t")
    assert first.audit_mac(MESSAGE) == second.audit_mac(MESSAGE)
    assert first.session_key == second.session_key


def test_another_master_gives_other_keys() -> None:
    ours, theirs = Crypto(MASTER), Crypto(OTHER_MASTER)
    with pytest.raises(DecryptionError):
        theirs.decrypt(ours.encrypt(b"x", "c"), "c")
    assert ours.identifier_digest("email", EMAIL) != theirs.identifier_digest("email", EMAIL)
    assert ours.token_digest("t") != theirs.token_digest("t")
    assert ours.audit_mac(MESSAGE) != theirs.audit_mac(MESSAGE)
    assert ours.session_key != theirs.session_key


def test_dsar_audit_key_changes_only_the_audit_seal() -> None:
    """Its custodian seals the chain; data, digests and cookies stay the
    master secret's. The seal then depends on DSAR_AUDIT_KEY alone: holding
    the master secret does not let anyone seal."""
    plain, separate = Crypto(MASTER), Crypto(MASTER, audit_key=AUDIT_KEY)
    assert separate.decrypt(plain.encrypt(b"x", "c"), "c") == b"x"
    assert plain.decrypt(separate.encrypt(b"x", "c"), "c") == b"x"
    assert separate.identifier_digest("email", EMAIL) == plain.identifier_digest("email", EMAIL)
    assert separate.token_digest("t") == plain.token_digest("t")
    assert separate.session_key == plain.session_key
    assert separate.audit_mac(MESSAGE) != plain.audit_mac(MESSAGE)
    assert Crypto(OTHER_MASTER, audit_key=AUDIT_KEY).audit_mac(MESSAGE) == \
        separate.audit_mac(MESSAGE)


def test_the_app_takes_its_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    """DSAR_AUDIT_KEY reaches the seal, and Flask signs cookies with the
    session key, not with the master secret."""
    monkeypatch.setenv("DSAR_SECRET_KEY", MASTER)
    monkeypatch.setenv("DSAR_AUDIT_KEY", AUDIT_KEY)
    monkeypatch.setenv("DSAR_INSTANCE_PATH", str(tmp_path))
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'dsar.sqlite3'}"})
    try:
        crypto = app.extensions["dsar"].crypto
        assert crypto.audit_mac(MESSAGE) == Crypto(MASTER, AUDIT_KEY).audit_mac(MESSAGE)
        assert crypto.audit_mac(MESSAGE) != Crypto(MASTER).audit_mac(MESSAGE)
        assert app.secret_key == Crypto(MASTER).session_key != MASTER
    finally:
        app.extensions["dsar"].close()


#: what MASTER (and AUDIT_KEY) gave when these tests were written
KNOWN = {
    "ciphertext": "013aafc42da8bae4d73322ac87772aadde75747bff55eb0ba56d588369014b5edd35",
    "identifier_digest": "84ab438acb3f0e5aa82ae32bedce440be6cfedad1e9ecf4dcee54c5234d46c10",
    "token_digest": "b90f7541a1c0c94e60b043db5f204f80a5d6fc5f8656fd0414b5a0ba10579434",
    "audit_mac": "79e6df51f0e76e67993c8469877bcbb71b8a72fbf76d5ad6910e23309b2f0712",
    "audit_mac_with_audit_key": "2660aaa9dbb5404ed7a4b4062dc3a4728084ef5c16ce5f6f489649f2b87b1730",
    "session_key": "a7dd63267f78d87cf48755b8280a74980bef68c33d7417f89155fb1889f2bec0",
}


def test_the_derivation_never_changes() -> None:
    """Known answers for one master secret: identifiers stored, digests
    indexed and chains sealed by an earlier release must still open, match
    and verify after an upgrade."""
    crypto = Crypto(MASTER)
    assert crypto.decrypt(bytes.fromhex(KNOWN["ciphertext"]), "c") == b"probe"
    assert crypto.identifier_digest("email", EMAIL) == KNOWN["identifier_digest"]
    assert crypto.token_digest("t") == KNOWN["token_digest"]
    assert crypto.audit_mac(MESSAGE) == KNOWN["audit_mac"]
    assert Crypto(MASTER, AUDIT_KEY).audit_mac(MESSAGE) == KNOWN["audit_mac_with_audit_key"]
    assert crypto.session_key == KNOWN["session_key"]

