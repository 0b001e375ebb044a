"""Signed single-use challenge tokens, the key file and the nonce database."""

from __future__ import annotations

import base64
import json
import os
import random
import sqlite3
import stat
import threading

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facelivenet.auth import tokens
from facelivenet.auth.challenge import ReasonCode
from facelivenet.auth.nonces import NonceStore
from facelivenet.auth.tokens import (
    TokenClaims, issue_token, load_key, parse_token, verify_token,
)
from facelivenet.errors import InputError, NonceStoreError, TokenError

KEY = bytes(range(32))
T0 = 1_800_000_000


OK_PAYLOAD = {"v": 2, "kid": tokens.key_id(KEY), "nonce": "0" * 32, "expressions": ["happy"], "issued": T0,
              "expiry": T0 + 60, "identity": None, "gallery": None, "model": None}


def clock(t=T0):
    return lambda: t


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(payload: dict | bytes, key=KEY) -> str:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    p = b64(raw)
    return f"{p}.{b64(tokens._sign(key, p))}"


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch):
    """Never touch the real user's config directory."""
    d = tmp_path / "config"
    monkeypatch.setenv(tokens.CONFIG_ENV, str(d))
    return d


# ------------------------------------------------------------------------------ tokens


def test_issue_and_verify_round_trip():
    token, claims = issue_token(KEY, ("happy", "surprise"), 2, ttl=180, clock=clock(), rng=random.Random(0))
    assert len(token) < 400 and token.count(".") == 1
    assert claims.issued == T0 and claims.expiry == T0 + 180
    assert set(claims.expressions) == {"happy", "surprise"}
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert set(payload) == {"v", "kid", "nonce", "expressions", "issued", "expiry", "identity", "gallery", "model"}
    assert payload["kid"] == tokens.key_id(KEY) and payload["identity"] is payload["model"] is None
    check = verify_token(token, KEY, now=T0 + 10)
    assert check.ok and check.claims == claims
    c = check.claims.challenge_for_clip(12.0)
    assert (c.expressions, c.issued_at, c.deadline, c.nonce) == (claims.expressions, 0.0, 12.0, claims.nonce)


def test_nonces_differ():
    assert issue_token(KEY)[1].nonce != issue_token(KEY)[1].nonce


def test_tampered_payload_rejects():
    token, claims = issue_token(KEY, ("happy",), clock=clock())
    payload, sig = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["expressions"] = ["surprise"]
    forged = f"{b64(json.dumps(data).encode())}.{sig}"
    check = verify_token(forged, KEY, now=T0)
    assert not check.ok and check.reason.code == ReasonCode.TOKEN_TAMPERED
    data["expressions"] = ["happy"]
    data["expiry"] = T0 + 10**6  # extend its life
    check = verify_token(f"{b64(json.dumps(data).encode())}.{sig}", KEY, now=T0)
    assert check.reason.code == ReasonCode.TOKEN_TAMPERED


def test_tampered_signature_and_other_key_reject():
    token, _ = issue_token(KEY, clock=clock())
    payload, sig = token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    assert verify_token(f"{payload}.{flipped}", KEY, now=T0).reason.code == ReasonCode.TOKEN_TAMPERED
    assert verify_token(f"{payload}.{sig[:10]}", KEY, now=T0).reason.code == ReasonCode.TOKEN_TAMPERED
    assert verify_token(token, bytes(32), now=T0).reason.code == ReasonCode.TOKEN_UNKNOWN_KEY  # a rotated key is not "tampered"


def test_expired_and_not_yet_valid():
    token, claims = issue_token(KEY, ttl=60, clock=clock())
    assert verify_token(token, KEY, now=T0 + 59).ok
    check = verify_token(token, KEY, now=T0 + 60)
    assert check.reason.code == ReasonCode.TOKEN_EXPIRED and "expired" in check.reason.message
    assert verify_token(token, KEY, now=T0 - 3600).reason.code == ReasonCode.TOKEN_NOT_YET_VALID


def test_reused_token_rejects(tmp_path):
    store = NonceStore(tmp_path / "nonces.db")
    token, _ = issue_token(KEY, clock=clock())
    assert verify_token(token, KEY, nonces=store, now=T0 + 1).ok
    check = verify_token(token, KEY, nonces=store, now=T0 + 2)
    assert check.reason.code == ReasonCode.TOKEN_REUSED
    # A fresh store object on the same file remembers it.
    assert verify_token(token, KEY, nonces=NonceStore(tmp_path / "nonces.db"), now=T0 + 3).reason.code == ReasonCode.TOKEN_REUSED


def test_expired_or_tampered_token_does_not_burn_its_nonce(tmp_path):
    store = NonceStore(tmp_path / "n.db")
    token, claims = issue_token(KEY, ttl=60, clock=clock())
    assert verify_token(token, KEY, nonces=store, now=T0 + 100).reason.code == ReasonCode.TOKEN_EXPIRED
    assert verify_token(token, bytes(32), nonces=store, now=T0).reason.code == ReasonCode.TOKEN_UNKNOWN_KEY
    assert not store.is_used(claims.nonce) and len(store) == 0


def test_check_without_consuming_then_consume(tmp_path):
    store = NonceStore(tmp_path / "n.db")
    token, claims = issue_token(KEY, clock=clock())
    assert verify_token(token, KEY, nonces=store, consume=False, now=T0).ok
    assert verify_token(token, KEY, nonces=store, consume=False, now=T0).ok
    assert store.consume(claims.nonce, claims.expiry, now=T0)
    assert verify_token(token, KEY, nonces=store, consume=False, now=T0).reason.code == ReasonCode.TOKEN_REUSED


@pytest.mark.parametrize("text", [
    "", "   ", "abc", "a.b.c", "not a token", "....", "é.é",
    "x" * 5000 + ".y",
    b64(b"not json") + "." + b64(b"sig"),
    b64(b"[1, 2]") + "." + b64(b"sig"),
    b64(b'{"v": 1}') + "." + b64(b"sig"),
    "A.B",  # base64 of a single char is invalid
])
def test_unparsable_tokens_raise_token_error(text):
    with pytest.raises(TokenError, match="malformed challenge token"):
        verify_token(text, KEY, now=T0)


@pytest.mark.parametrize("change", [
    {"v": 1}, {"v": True}, {"kid": "ABC"}, {"identity": ""}, {"identity": "x", "gallery": None},
    {"model": "md5:00"}, {"gallery": "sha256:" + "0" * 64}, {"nonce": "zz"}, {"issued": -1}, {"issued": 1.5}, {"expiry": T0},
    {"expressions": []}, {"expressions": ["neutral"]}, {"expressions": "happy"},
    {"expressions": ["happy", "happy"]}, {"expressions": [1]}, {"extra": 1},
])
def test_signed_but_malformed_payload_is_an_error(change):
    payload = dict(OK_PAYLOAD)
    payload.update(change)
    with pytest.raises(TokenError):
        verify_token(signed(payload), KEY, now=T0)
    assert verify_token(signed(OK_PAYLOAD), KEY, now=T0).ok


def test_token_error_is_an_input_error():
    assert issubclass(TokenError, InputError)
    with pytest.raises(TokenError):
        parse_token(None)  # type: ignore[arg-type]


def test_issue_validation():
    with pytest.raises(InputError):
        issue_token(KEY, ttl=0)
    with pytest.raises(InputError):
        issue_token(KEY, ("happy",), 2)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_fuzz_any_text_parses_or_raises_token_error(text):
    try:
        claims, _, _ = parse_token(text)
    except TokenError:
        return
    assert isinstance(claims, TokenClaims)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    _json,
    st.fixed_dictionaries({
        "v": _json | st.just(2), "kid": _json | st.just(tokens.key_id(KEY)), "nonce": _json | st.just("a" * 32),
        "identity": _json | st.just(None), "gallery": _json | st.just(None), "model": _json | st.just(None),
        "expressions": _json | st.lists(st.sampled_from(["happy", "surprise", "neutral", "x y"]), max_size=3),
        "issued": _json | st.integers(), "expiry": _json | st.integers(),
    }),
), st.binary(max_size=40))
def test_fuzz_signed_json_payloads_parse_or_raise(payload, sig):
    for token in (signed(json.dumps(payload).encode()), b64(json.dumps(payload).encode()) + "." + (b64(sig) or "A")):
        try:
            check = verify_token(token, KEY, now=T0)
        except TokenError:
            continue
        assert isinstance(check.claims, TokenClaims)
        assert check.claims.expiry > check.claims.issued


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200), st.binary(max_size=64))
def test_fuzz_binary_payloads(payload, sig):
    try:
        parse_token(f"{b64(payload) or 'A'}.{b64(sig) or 'A'}")
    except TokenError:
        pass


# ------------------------------------------------------------------------------ key


def test_default_key_created_with_0600_and_reused(config_home):
    key = load_key()
    path = config_home / tokens.KEY_FILE_NAME
    assert path.is_file() and len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_home.stat().st_mode) & 0o077 == 0
    assert load_key() == key
    assert [p.name for p in config_home.iterdir()] == [tokens.KEY_FILE_NAME]  # no temp files left


def test_explicit_key_file(tmp_path):
    p = tmp_path / "k" / "my.key"
    key = load_key(p)
    assert load_key(p) == key and stat.S_IMODE(p.stat().st_mode) == 0o600
    with pytest.raises(TokenError, match="no such key file"):
        load_key(tmp_path / "missing.key", create=False)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_key_readable_by_others_is_refused(tmp_path):
    p = tmp_path / "open.key"
    p.write_text("ab" * 32)
    p.chmod(0o644)
    with pytest.raises(TokenError, match="chmod 600"):
        load_key(p)


@pytest.mark.parametrize("content", ["", "xyz", "ab" * 8])
def test_bad_key_contents(tmp_path, content):
    p = tmp_path / "bad.key"
    p.write_text(content)
    p.chmod(0o600)
    with pytest.raises(TokenError):
        load_key(p)


def test_key_path_is_a_directory(tmp_path):
    with pytest.raises(TokenError, match="directory"):
        load_key(tmp_path)


# ------------------------------------------------------------------------------ nonce DB


def test_nonce_store_single_use_and_persistence(tmp_path):
    path = tmp_path / "sub" / "n.db"
    store = NonceStore(path)
    assert not store.is_used("a") and len(store) == 0
    assert store.consume("a", expiry=T0, now=T0 - 10)
    assert not store.consume("a", expiry=T0, now=T0 - 5)
    assert NonceStore(path).is_used("a") and len(NonceStore(path)) == 1


def test_nonce_store_prunes_long_expired(tmp_path):
    store = NonceStore(tmp_path / "n.db")
    store.consume("old", expiry=T0, now=T0 - 1)
    store.consume("new", expiry=T0 + 10**6, now=T0 + 2 * 86400)
    assert not store.is_used("old") and store.is_used("new")


def test_concurrent_consumers_only_one_wins(tmp_path):
    path = tmp_path / "n.db"
    NonceStore(path).consume("warm", expiry=T0, now=T0)
    results, barrier = [], threading.Barrier(6)

    def worker():
        barrier.wait()
        results.append(NonceStore(path).consume("same", expiry=T0 + 100, now=T0))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]


def test_failed_transaction_leaves_database_intact(tmp_path, monkeypatch):
    path = tmp_path / "n.db"
    store = NonceStore(path)
    store.consume("kept", expiry=T0 + 100, now=T0)

    class Boom(Exception):
        pass

    def fail_after_insert(self, write):  # a crash between the INSERT and the COMMIT
        import contextlib

        @contextlib.contextmanager
        def cm():
            with original(self, write) as conn:
                yield conn
                conn.execute("INSERT INTO used_nonces VALUES ('half', 0, 0)")
                raise Boom()
        return cm()

    original = NonceStore._connect
    monkeypatch.setattr(NonceStore, "_connect", fail_after_insert)
    with pytest.raises(Boom):
        store.consume("lost", expiry=T0 + 100, now=T0)
    monkeypatch.setattr(NonceStore, "_connect", original)
    rows = {r[0] for r in sqlite3.connect(path).execute("SELECT nonce FROM used_nonces")}
    assert rows == {"kept"}


def test_nonce_store_bad_files(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(NonceStoreError, match="junk.db"):
        NonceStore(junk).consume("a", expiry=T0)
    with pytest.raises(NonceStoreError, match="directory"):
        NonceStore(tmp_path).consume("a", expiry=T0)


def test_default_nonce_db_is_in_config_dir(config_home):
    store = NonceStore()
    store.consume("x", expiry=T0)
    assert (config_home / "used-nonces.sqlite3").is_file()


# ------------------------------------------------------------------------------ CLI


def _cli():
    from facelivenet.cli import cli

    return cli


def test_cli_challenge_prints_a_token_that_verifies(tmp_path):
    key_file = tmp_path / "k.key"
    r = CliRunner().invoke(_cli(), ["challenge", "--expressions", "happy", "--key-file", str(key_file)])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip()
    assert "\n" not in token
    check = verify_token(token, load_key(key_file))
    assert check.ok and check.claims.expressions == ("happy",)
    assert check.claims.expiry - check.claims.issued == 180


def test_cli_challenge_json_and_default_key(config_home):
    r = CliRunner().invoke(_cli(), ["challenge", "--length", "3", "--ttl", "60", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert set(d) == {"token", "nonce", "expressions", "issued", "expiry", "kid", "identity", "gallery", "model",
                      "entropy_bits", "possible_challenges"}
    assert len(d["expressions"]) == 3 and d["expiry"] - d["issued"] == 60
    assert d["identity"] is d["gallery"] is d["model"] is None and d["kid"] == tokens.key_id(load_key())
    assert verify_token(d["token"], load_key()).ok
    assert (config_home / tokens.KEY_FILE_NAME).exists()


@pytest.mark.parametrize("args", [
    ["--expressions", "neutral"], ["--expressions", ""], ["--expressions", "happy", "--length", "2"],
    ["--ttl", "0"], ["--length", "9"],
])
def test_cli_challenge_bad_options_exit_2(args):
    r = CliRunner().invoke(_cli(), ["challenge", *args])
    assert r.exit_code == 2
    assert "Traceback" not in r.output


def test_cli_challenge_open_key_file_exit_2(tmp_path):
    p = tmp_path / "open.key"
    p.write_text("ab" * 32)
    p.chmod(0o644)
    r = CliRunner().invoke(_cli(), ["challenge", "--key-file", str(p)])
    assert r.exit_code == 2 and "chmod 600" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_key_files_must_be_small_private_regular_files(tmp_path):
    fifo = tmp_path / "fifo.key"
    os.mkfifo(fifo)
    with pytest.raises(TokenError, match="not a regular file"):
        load_key(fifo)  # refused at once, never opened (a read would block forever)
    big = tmp_path / "big.key"
    big.write_text("ab" * 100_000)
    big.chmod(0o600)
    with pytest.raises(TokenError, match="at most 4096 bytes"):
        load_key(big)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    k = shared / "k.key"
    k.write_text("ab" * 32)
    k.chmod(0o600)
    with pytest.raises(TokenError, match="writable by everyone"):
        load_key(k)
    shared.chmod(0o1777)  # sticky, like /tmp: others cannot replace the file
    assert load_key(k) == bytes.fromhex("ab" * 32)
