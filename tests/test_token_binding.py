"""Issue 18 items 3-4: tokens bound to a session, a key id, one signature spelling,
expiry at consume time, and a nonce store tied to its key (no TensorFlow)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from facelivenet.auth import tokens
from facelivenet.auth.challenge import ReasonCode
from facelivenet.auth.nonces import NonceStore, NonceStores, key_nonce_stores, nonce_db_for_key
from facelivenet.auth.offline import prepare_offline_challenge
from facelivenet.auth.tokens import TokenBinding, issue_token, key_id, template_fingerprint, verify_token
from facelivenet.errors import NonceStoreError

KEY = bytes(range(32))
NEW_KEY = bytes(range(1, 33))
T0 = 1_800_000_000
MODEL = "sha256:" + "a" * 64
OTHER_MODEL = "sha256:" + "b" * 64


def clock(t=T0):
    return lambda: t


def unit(rows, seed):
    e = np.random.default_rng(seed).normal(size=(rows, 8)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


ALICE, BOB = unit(2, 0), unit(1, 1)
ALICE_BINDING = TokenBinding.for_reference(MODEL, "alice", ALICE)


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch):
    d = tmp_path / "config"
    monkeypatch.setenv(tokens.CONFIG_ENV, str(d))
    return d


def bound_token(binding=ALICE_BINDING, key=KEY, **kw):
    return issue_token(key, ("happy",), binding=binding, clock=clock(), **kw)


# --------------------------------------------------------------------------- binding


def test_bound_token_carries_identity_template_model_and_key_id():
    token, claims = bound_token()
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert payload["identity"] == "alice" and payload["model"] == MODEL
    assert payload["gallery"] == template_fingerprint(MODEL, "alice", ALICE) and payload["kid"] == key_id(KEY)
    assert claims.binding == ALICE_BINDING
    assert verify_token(token, KEY, binding=ALICE_BINDING, now=T0).ok


@pytest.mark.parametrize("binding, code", [
    (TokenBinding.for_reference(MODEL, "bob", BOB), ReasonCode.TOKEN_IDENTITY_MISMATCH),
    (TokenBinding.for_reference(MODEL), ReasonCode.TOKEN_IDENTITY_MISMATCH),   # a --ref photo
    (None, ReasonCode.TOKEN_IDENTITY_MISMATCH),                                # the verifier said nothing
    (TokenBinding.for_reference(MODEL, "alice", BOB), ReasonCode.TOKEN_GALLERY_MISMATCH),  # swapped template
    (TokenBinding.for_reference(MODEL, "alice", ALICE[:1]), ReasonCode.TOKEN_GALLERY_MISMATCH),  # other gallery
    (TokenBinding.for_reference(OTHER_MODEL, "alice", ALICE), ReasonCode.TOKEN_MODEL_MISMATCH),  # model first
    (TokenBinding("alice", ALICE_BINDING.gallery, OTHER_MODEL), ReasonCode.TOKEN_MODEL_MISMATCH),
])
def test_token_for_another_session_is_refused(binding, code):
    token, _ = bound_token()
    check = verify_token(token, KEY, binding=binding, check_binding=True, now=T0)
    assert not check.ok and check.reason.code == code
    offline = prepare_offline_challenge(token=token, key=KEY, binding=binding, clock=clock())
    assert offline.rejection.code == code
    assert offline.rejected_decision().reasons[0].code == code and not offline.rejected_decision().accepted


def test_unbound_token_answers_any_session_but_says_so():
    token, claims = issue_token(KEY, ("happy",), clock=clock())
    assert claims.identity is claims.gallery is claims.model is None
    for b in (ALICE_BINDING, TokenBinding.for_reference(MODEL), None):
        assert verify_token(token, KEY, binding=b, check_binding=True, now=T0).ok


def test_model_only_binding_refuses_another_model():
    token, _ = bound_token(TokenBinding.for_reference(MODEL))
    assert verify_token(token, KEY, binding=TokenBinding.for_reference(MODEL, "bob", BOB), now=T0).ok
    check = verify_token(token, KEY, binding=TokenBinding.for_reference(OTHER_MODEL), now=T0)
    assert check.reason.code == ReasonCode.TOKEN_MODEL_MISMATCH


def test_binding_is_signed():
    token, _ = bound_token()
    payload, sig = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["identity"], data["gallery"] = "bob", template_fingerprint(MODEL, "bob", BOB)
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=") + "." + sig
    check = verify_token(forged, KEY, binding=TokenBinding.for_reference(MODEL, "bob", BOB), now=T0)
    assert check.reason.code == ReasonCode.TOKEN_TAMPERED


# --------------------------------------------------------------------------- signature spelling


def test_only_the_canonical_signature_spelling_verifies():
    token, _ = bound_token()
    payload, sig = token.split(".")
    assert len(sig) == 43  # 32 bytes: the last character carries 4 bits and 2 unused ones
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    i = alphabet.index(sig[-1])
    spellings = [sig[:-1] + alphabet[(i & ~3) | low] for low in range(4)]
    assert sig in spellings
    decoded = {base64.urlsafe_b64decode(s + "=") for s in spellings}
    assert len(decoded) == 1  # four spellings of the same MAC bytes
    for s in spellings:
        check = verify_token(f"{payload}.{s}", KEY, now=T0)
        if s == sig:
            assert check.ok
        else:
            assert check.reason.code == ReasonCode.TOKEN_TAMPERED and "canonical" in check.reason.message


# --------------------------------------------------------------------------- key id and rotation


def test_rotated_key_is_unknown_key_not_tampered_and_previous_key_verifies():
    token, _ = bound_token()
    check = verify_token(token, NEW_KEY, binding=ALICE_BINDING, now=T0)
    assert check.reason.code == ReasonCode.TOKEN_UNKNOWN_KEY
    assert key_id(KEY) in check.reason.message and key_id(NEW_KEY) in check.reason.message
    assert verify_token(token, NEW_KEY, previous_keys=(KEY,), binding=ALICE_BINDING, now=T0).ok
    new_token, claims = bound_token(key=NEW_KEY)
    assert claims.kid == key_id(NEW_KEY) != key_id(KEY)
    assert verify_token(new_token, NEW_KEY, previous_keys=(KEY,), binding=ALICE_BINDING, now=T0).ok


def test_key_id_is_stable_short_and_reveals_nothing_obvious():
    assert key_id(KEY) == key_id(bytes(KEY)) and len(key_id(KEY)) == 16
    assert KEY.hex()[:16] != key_id(KEY)


# --------------------------------------------------------------------------- expiry at consume


def test_token_expiring_during_the_analysis_is_refused_at_consume(tmp_path):
    store = NonceStore(tmp_path / "n.db")
    token, claims = issue_token(KEY, ("happy",), ttl=60, clock=clock())
    offline = prepare_offline_challenge(token=token, key=KEY, nonces=store, clock=clock(T0 + 50))
    assert offline.rejection is None
    # The analysis took 14.6 s: the token expired 4.6 s before it would be consumed.
    reason = offline.consume(store, now=T0 + 64.6)
    assert reason is not None and reason.code == ReasonCode.TOKEN_EXPIRED and "during the analysis" in reason.message
    assert not store.is_used(claims.nonce)
    assert offline.consume(store, now=T0 + 59) is None and store.is_used(claims.nonce)


def test_expiry_at_consume_holds_without_a_nonce_store():
    token, _ = issue_token(KEY, ("happy",), ttl=60, clock=clock())
    offline = prepare_offline_challenge(token=token, key=KEY, clock=clock(T0 + 1))
    assert offline.consume(None, clock=clock(T0 + 61)).code == ReasonCode.TOKEN_EXPIRED


# --------------------------------------------------------------------------- nonce store and its key


def test_nonce_store_serves_one_key(tmp_path):
    store = NonceStore(tmp_path / "n.db")
    assert store.kid() is None
    a, claims_a = issue_token(KEY, ("happy",), clock=clock())
    assert verify_token(a, KEY, nonces=store, now=T0).ok
    assert store.kid() == key_id(KEY)
    b, _ = issue_token(NEW_KEY, ("happy",), clock=clock())
    with pytest.raises(NonceStoreError, match=f"serves key {key_id(KEY)}, not key {key_id(NEW_KEY)}"):
        verify_token(b, NEW_KEY, nonces=store, now=T0)
    with pytest.raises(NonceStoreError, match="serves key"):
        verify_token(b, NEW_KEY, nonces=store, consume=False, now=T0)
    assert len(store) == 1


def test_default_store_lives_beside_the_key(tmp_path, config_home):
    assert nonce_db_for_key(None) == config_home / "used-nonces.sqlite3"
    assert nonce_db_for_key(config_home / "challenge.key") == config_home / "used-nonces.sqlite3"
    assert nonce_db_for_key(tmp_path / "keys" / "k.key") == tmp_path / "keys" / "k.key.used-nonces.sqlite3"
    assert tokens.KEY_FILE_NAME == "challenge.key"


def test_another_config_dir_sharing_the_key_shares_its_store(tmp_path, monkeypatch):
    """The issue: a spent token passed again from another config dir using the same key."""
    first = tmp_path / "first"
    monkeypatch.setenv(tokens.CONFIG_ENV, str(first))
    key = tokens.load_key()
    token, _ = issue_token(key, ("happy",), clock=clock())
    assert verify_token(token, key, nonces=key_nonce_stores(None), now=T0).ok
    monkeypatch.setenv(tokens.CONFIG_ENV, str(tmp_path / "second"))
    again = verify_token(token, key, nonces=key_nonce_stores(first / "challenge.key"), now=T0 + 1)
    assert again.reason.code == ReasonCode.TOKEN_REUSED


def test_spent_token_does_not_pass_again_with_another_nonce_db(tmp_path):
    key_file = tmp_path / "k.key"
    token, _ = issue_token(KEY, ("happy",), clock=clock())
    first = key_nonce_stores(key_file, tmp_path / "one.db")
    assert verify_token(token, KEY, nonces=first, now=T0).ok
    fresh = key_nonce_stores(key_file, tmp_path / "two.db")  # an empty --nonce-db: the key's store remembers
    assert verify_token(token, KEY, nonces=fresh, now=T0 + 1).reason.code == ReasonCode.TOKEN_REUSED
    assert verify_token(token, KEY, nonces=key_nonce_stores(key_file), now=T0 + 2).reason.code == ReasonCode.TOKEN_REUSED
    assert nonce_db_for_key(key_file).is_file()


def test_nonce_stores_dedupe_the_same_file(tmp_path):
    p = tmp_path / "n.db"
    stores = NonceStores([NonceStore(p), NonceStore(tmp_path / "." / "n.db")])
    assert len(stores.stores) == 1
    assert stores.consume("x", T0 + 60, T0) and not stores.consume("x", T0 + 60, T0)


def test_challenge_for_an_identity_of_a_missing_gallery_is_one_line_before_the_model(tmp_path):
    """`challenge --identity N --gallery MISSING` fails at once, without loading the model."""
    import subprocess
    import sys

    code = ("import sys; from facelivenet.cli import cli\n"
            "try:\n    cli(sys.argv[1:], standalone_mode=True)\n"
            "except SystemExit as e:\n    print('keras' in sys.modules, file=sys.stderr); raise\n")
    out = subprocess.run([sys.executable, "-c", code, "challenge", "--identity", "bob", "--gallery",
                          str(tmp_path / "none.json"), "--key-file", str(tmp_path / "k" / "c.key"), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert json.loads(out.stdout) == {"error": {"code": "bad_gallery",
                                                "message": f"{tmp_path / 'none.json'}: no such gallery file"}}
    assert out.stderr.strip().splitlines() == [f"Error: {tmp_path / 'none.json'}: no such gallery file", "False"]
