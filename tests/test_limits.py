"""Attempt limits (issue 18 item 7): failures per identity in a window lock it, with a fake clock."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from facelivenet.auth.challenge import ChallengeSettings, ReasonCode
from facelivenet.auth.limits import AttemptLimiter, LimitPolicy, client_key, identity_key
from facelivenet.auth.offline import authenticate_clip
from facelivenet.errors import ConfigError

from conftest import assert_contract
from test_verify_video import ScriptedAnalyzer, _script_clip, face_clip  # noqa: F401 (fixture)


class FakeClock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def limiter(tmp_path, clock):
    return AttemptLimiter(tmp_path / "attempts.sqlite3", clock=clock)


def test_five_failures_in_ten_minutes_lock_the_identity_for_fifteen(limiter, clock):
    key = identity_key("alice")
    for i in range(4):
        assert limiter.record([key], success=False) is None
        clock.t += 60
    assert limiter.check([key]) is None and limiter.failures(key) == 4
    started = limiter.record([key], success=False)
    assert started is not None and started.key == key and started.seconds_left == 900
    clock.t += 300
    lock = limiter.check([key, identity_key("bob")])
    assert lock.key == key and lock.seconds_left == pytest.approx(600) and lock.retry_after == 600
    reason = lock.reason(limiter.policy)
    assert reason.code == ReasonCode.LOCKED_OUT == "locked_out"
    assert "600 s" in reason.message and "5 failed attempts within 10 min" in reason.message
    assert limiter.check([identity_key("bob")]) is None  # another identity is not affected
    clock.t += 600
    assert limiter.check([key]) is None  # the lock ran out
    assert limiter.failures(key) == 0  # and it starts over


def test_failures_outside_the_window_do_not_count(limiter, clock):
    key = identity_key("alice")
    for _ in range(10):
        assert limiter.record([key], success=False) is None
        clock.t += 150  # 4 failures per 10 minutes at most
    # 150 s after the last one: 3 failures are less than 10 minutes old.
    assert limiter.check([key]) is None and limiter.failures(key) == 3


def test_a_success_clears_the_failures(limiter, clock):
    key = identity_key("alice")
    for _ in range(4):
        limiter.record([key], success=False)
    limiter.record([key], success=True)
    assert limiter.failures(key) == 0
    for _ in range(4):
        assert limiter.record([key], success=False) is None


def test_client_and_identity_keys_count_apart(limiter):
    ident, client = identity_key("alice"), client_key("10.0.0.7")
    for name in ("a", "b", "c", "d"):
        limiter.record([identity_key(name), client], success=False)
    assert limiter.record([ident, client], success=False).key == client
    assert limiter.check([ident]) is None and limiter.check([client]).key == client


def test_the_count_is_shared_by_processes_and_lands_in_wal_mode(tmp_path, clock):
    path = tmp_path / "attempts.sqlite3"
    key = identity_key("alice")
    threads = [threading.Thread(target=lambda: AttemptLimiter(path, clock=clock).record([key], success=False))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert AttemptLimiter(path, clock=clock).failures(key) == 4
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("kwargs", [dict(max_failures=0), dict(window=0), dict(lockout=float("nan"))])
def test_bad_policies_are_refused(kwargs):
    with pytest.raises(ConfigError):
        LimitPolicy(**kwargs)


def test_authenticate_clip_locks_out_an_identity_after_five_rejects(tmp_path, clock):
    """On main, a sixth, seventh ... attempt on an identity was analysed like the first."""
    ref = np.eye(4, dtype=np.float32)[:1]
    impostor = [("neutral", False)] * 8 + [("surprise", False)] * 6
    genuine = [("neutral", True)] * 8 + [("surprise", True)] * 6
    clip = _script_clip(tmp_path, len(genuine))
    limiter = AttemptLimiter(tmp_path / "attempts.sqlite3", clock=clock)
    keys = (identity_key("alice"),)

    def attempt(script):
        analyzer = ScriptedAnalyzer(script, ref)
        outcome = authenticate_clip(clip, analyzer, ref, settings=ChallengeSettings(), challenge="surprise",
                                    limits=limiter, limit_keys=keys)
        return outcome, analyzer.k

    for _ in range(5):
        outcome, _ = attempt(impostor)
        assert not outcome.accepted and "locked_out" not in outcome.decision.codes
    outcome, frames_read = attempt(genuine)
    assert outcome.decision.codes == ("locked_out",) and frames_read == 0 and outcome.clip is None
    report = assert_contract(outcome.report())
    assert report["decision"] == "reject" and report["reasons"][0]["code"] == "locked_out"
    clock.t += 901
    outcome, _ = attempt(genuine)
    assert outcome.accepted  # the lock ran out; the success clears the count
    assert limiter.failures(keys[0]) == 0


def test_the_facade_counts_attempts_only_for_a_named_identity(tmp_path, clock, tiny_model, face_clip):
    from facelivenet.facade import FaceAuth

    auth = FaceAuth(tiny_model)
    limiter = AttemptLimiter(tmp_path / "a.sqlite3", policy=LimitPolicy(max_failures=1), clock=clock)
    ref = np.eye(tiny_model.config.embedding_size, dtype=np.float32)[:1]
    first = auth.authenticate(face_clip, ref, challenge="surprise", identity="alice", limits=limiter)
    assert not first.accepted
    second = auth.authenticate(face_clip, ref, challenge="surprise", identity="alice", limits=limiter)
    assert second.decision.codes == ("locked_out",)
    # No identity named: nothing to count against.
    third = auth.authenticate(face_clip, ref, challenge="surprise", limits=limiter)
    assert "locked_out" not in third.decision.codes


@pytest.mark.slow
def test_verify_video_attempts_db_locks_the_identity_out(tiny_model_path, face_clip, tmp_path):
    import json

    import cv2

    from facelivenet.cli import cli
    from test_verify_video import _face_frame, _runner

    photo, gallery, db = tmp_path / "me.png", tmp_path / "g.json", tmp_path / "attempts.sqlite3"
    cv2.imwrite(str(photo), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    assert _runner().invoke(cli, ["enroll", "astro", str(photo), "--gallery", str(gallery), "--model",
                                  str(tiny_model_path)]).exit_code == 0
    limiter = AttemptLimiter(db)
    for _ in range(4):
        limiter.record([identity_key("astro")], success=False)
    args = ["verify-video", str(face_clip), "--model", str(tiny_model_path), "--gallery", str(gallery),
            "--identity", "astro", "--challenge", "surprise", "--attempts-db", str(db), "--json", "--quiet"]
    first = _runner().invoke(cli, args)  # the photo attack: the fifth failure
    assert first.exit_code == 1 and json.loads(first.stdout)["reasons"][0]["code"] != "locked_out"
    second = _runner().invoke(cli, args)
    assert second.exit_code == 1
    report = assert_contract(json.loads(second.stdout))
    assert [r["code"] for r in report["reasons"]] == ["locked_out"] and report["frames_analyzed"] == 0
