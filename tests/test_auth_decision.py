"""Decision reports and the offline flow token → engine → report (no TensorFlow)."""

from __future__ import annotations

import json

import pytest

from facelivenet.auth.challenge import (
    Challenge, ChallengeSettings, Decision, FaceObservation, FrameObservation, ReasonCode, run_challenge,
)
from facelivenet.auth.decision import decision_report, format_decision
from facelivenet.auth.nonces import NonceStore
from facelivenet.auth.tokens import issue_token, verify_token

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
KEY = b"k" * 32
REQUIRED = {"decision", "reasons", "challenge", "identity", "liveness", "frames_analyzed", "fps"}


def obs(i, expr, distance=0.3, fps=25.0):
    probs = {c: (0.9 if c == expr else 0.1 / 6) for c in CLASSES}
    return FrameObservation(i / fps, [FaceObservation((10, 10, 60, 60), distance, probs)], index=i)


def frames(*parts, stride=1):
    out, i = [], 0
    for n, expr in parts:
        for _ in range(n):
            if i % stride == 0:
                out.append(obs(i, expr))
            i += 1
    return out


def test_accept_report_has_the_verify_video_keys():
    d = run_challenge(Challenge.for_clip(("surprise",), 10.0),
                      frames((20, "neutral"), (5, "sad"), (10, "surprise")))
    r = decision_report(d, fps=25.0, reference={"identity": "alice", "gallery": "g.json"}, include_trace=True)
    assert REQUIRED <= set(r)
    assert r["decision"] == "accept" and r["reasons"][0]["code"] == ReasonCode.COMPLETED
    assert r["challenge"]["expressions"] == ["surprise"] and r["challenge"]["prompt"] == "neutral, then surprise"
    assert r["frames_analyzed"] == 35 and r["fps"] == 25.0
    phases = r["liveness"]["phases"]
    assert [(p["name"], p["first_frame"], p["last_frame"]) for p in phases] == [("neutral", 0, 19), ("surprise", 25, 33)]
    assert r["liveness"]["required"] == ["neutral", "surprise"] and r["liveness"]["completed_steps"] == 2
    ident = r["identity"]
    assert ident["threshold"] == ChallengeSettings().identity_threshold
    assert ident["reference"]["identity"] == "alice"
    assert ident["counted_frames"]["max"] == pytest.approx(0.3)
    assert ident["matched_frames"] == ident["frames_with_face"] == 35
    assert len(r["trace"]) == 35 and "trace" not in decision_report(d)
    json.loads(json.dumps(r))
    text = format_decision(d)
    assert text.startswith("ACCEPT:") and "neutral frames 0-19" in text


def test_strided_frames_keep_source_frame_numbers():
    d = run_challenge(Challenge.for_clip(("happy",), 10.0), frames((30, "neutral"), (12, "happy"), stride=3))
    assert d.accepted
    # 0.3 s of happy at 25 fps, every third frame analysed: frames 30, 33, 36, 39
    assert d.phases[1].first_frame == 30 and d.phases[1].last_frame == 39 and d.phases[1].frames == 4


def test_reject_report_and_text():
    d = run_challenge(Challenge.for_clip(("happy",), 10.0), frames((20, "neutral"), (10, "surprise")))
    r = decision_report(d, frames_analyzed=30, fps=25.0)
    assert r["decision"] == "reject" and [x["code"] for x in r["reasons"]] == [ReasonCode.WRONG_EXPRESSION]
    assert format_decision(d).startswith("REJECT:")
    with pytest.raises(ValueError):
        decision_report(d, extra={"decision": "accept"})
    assert decision_report(d, extra={"timing": {"detect_ms": 1.0}})["timing"] == {"detect_ms": 1.0}


def test_offline_flow_token_once(tmp_path):
    """What verify-video --token does: check the token, run the clip, consume the nonce once."""
    store = NonceStore(tmp_path / "nonces.db")
    token, claims = issue_token(KEY, ("happy",), 1, ttl=180, clock=lambda: 1000)
    clip = frames((20, "neutral"), (10, "happy"))

    def verify(now):
        check = verify_token(token, KEY, nonces=store, now=now)
        if not check.ok:
            return Decision.rejected(check.claims.challenge_for_clip(10.0), [check.reason], at=0.0)
        return run_challenge(check.claims.challenge_for_clip(10.0), clip)

    first = verify(1010)
    assert first.accepted and first.challenge.nonce == claims.nonce
    replay = verify(1020)
    assert not replay.accepted and replay.codes == (ReasonCode.TOKEN_REUSED,)
    r = decision_report(replay, frames_analyzed=0, fps=None, token=claims.to_dict())
    assert REQUIRED <= set(r) and r["challenge"]["token"]["nonce"] == claims.nonce
    assert r["liveness"]["phases"] == [] and r["identity"]["counted_frames"] is None
    assert format_decision(replay).startswith("REJECT: the challenge token was already used")


def test_replayed_clip_for_another_challenge_is_rejected():
    """A genuine Surprise answer replayed for a Happy challenge."""
    surprise_clip = frames((20, "neutral"), (10, "surprise"), (10, "neutral"))
    assert run_challenge(Challenge.for_clip(("surprise",), 10.0), surprise_clip).accepted
    d = run_challenge(Challenge.for_clip(("happy",), 10.0), surprise_clip)
    assert not d.accepted and ReasonCode.WRONG_EXPRESSION in d.codes


def test_still_photo_is_rejected():
    """A photo never changes expression: Neutral is met, the expression never comes."""
    still = frames((100, "neutral"))
    d = run_challenge(Challenge.for_clip(("happy",), 10.0), still)
    assert not d.accepted and d.codes[:2] == (ReasonCode.INCOMPLETE, ReasonCode.EXPRESSION_NOT_SHOWN)


# ------------------------------------------------------------------------------ offline mode


def test_prepare_offline_challenge_from_expressions():
    from facelivenet.auth.offline import prepare_offline_challenge

    s = ChallengeSettings(time_limit=9.0)
    oc = prepare_offline_challenge(expressions="Happy, surprise", settings=s)
    assert oc.challenge.expressions == ("happy", "surprise") and oc.challenge.deadline == 9.0
    assert oc.claims is None and oc.rejection is None and oc.consume(None) is None
    assert prepare_offline_challenge(expressions=["surprise"]).challenge.expressions == ("surprise",)
    from facelivenet.errors import ChallengeError

    for kwargs in ({}, {"expressions": "happy", "token": "x"}, {"expressions": "happy,,surprise"},
                   {"expressions": "neutral"}, {"token": "a.b"}):
        with pytest.raises(ChallengeError):
            prepare_offline_challenge(**kwargs)


def test_prepare_offline_challenge_from_token_consumes_once(tmp_path):
    from facelivenet.auth.offline import prepare_offline_challenge

    store = NonceStore(tmp_path / "n.db")
    token, claims = issue_token(KEY, ("surprise",), clock=lambda: 1000)
    oc = prepare_offline_challenge(token=token, key=KEY, nonces=store, clock=lambda: 1001)
    assert oc.rejection is None and oc.challenge.nonce == claims.nonce
    assert oc.challenge.expressions == ("surprise",) and oc.challenge.issued_at == 0.0
    assert not store.is_used(claims.nonce)  # not consumed before the clip is read
    assert oc.consume(store, now=1002) is None
    assert oc.consume(store, now=1003).code == ReasonCode.TOKEN_REUSED
    again = prepare_offline_challenge(token=token, key=KEY, nonces=store, clock=lambda: 1004)
    assert again.rejection.code == ReasonCode.TOKEN_REUSED
    d = again.rejected_decision()
    assert d.codes == (ReasonCode.TOKEN_REUSED,) and d.trace == ()
    expired = prepare_offline_challenge(token=token, key=KEY, nonces=store, clock=lambda: 5000)
    assert expired.rejection.code == ReasonCode.TOKEN_EXPIRED
    # A token that does not parse is refused like a tampered one, not an error.
    garbage = prepare_offline_challenge(token="garbage", key=KEY)
    assert garbage.rejection.code == ReasonCode.TOKEN_MALFORMED and garbage.challenge is None
    assert garbage.rejected_decision().codes == (ReasonCode.TOKEN_MALFORMED,)


# --- the score and the contract ----------------------------------------------------------------------

from conftest import assert_contract  # noqa: E402

from facelivenet.auth.decision import SCHEMA_VERSION, decision_scores, rounded  # noqa: E402


def test_accept_score_from_the_margins():
    # Neutral frames at p=0.9 (threshold 0.5 -> margin 0.4, share 0.8), surprise also 0.9;
    # counted distances 0.3 against the 1.1 threshold -> identity 1 - 0.3 / 2.2.
    d = run_challenge(Challenge.for_clip(("surprise",), 10.0), frames((20, "neutral"), (10, "surprise")))
    sc = decision_scores(d)
    assert d.accepted
    assert sc["margins"]["identity"] == pytest.approx(1.1 - 0.3)
    assert sc["margins"]["expressions"] == {"neutral": pytest.approx(0.4), "surprise": pytest.approx(0.4)}
    assert sc["scores"]["identity"] == pytest.approx(1 - 0.3 / 2.2)
    assert sc["scores"]["liveness"] == pytest.approx(0.5 + 0.5 * 0.8)
    assert sc["score"] == pytest.approx(min(1 - 0.3 / 2.2, 0.9))


def test_reject_scores_stay_below_one_half():
    # Neutral done, the expression never shown: liveness 0.5 * (1 + 0) / 2.
    short = run_challenge(Challenge.for_clip(("happy",), 2.0), frames((20, "neutral"), (40, "neutral")))
    assert not short.accepted
    assert decision_scores(short)["scores"]["liveness"] == pytest.approx(0.25)
    assert decision_scores(short)["score"] == pytest.approx(0.25)
    # Neutral done and two of three happy frames: partial credit for the awaited step.
    partial = run_challenge(Challenge.for_clip(("happy",), 1.0), frames((20, "neutral"), (2, "happy")))
    assert not partial.accepted
    assert decision_scores(partial)["scores"]["liveness"] == pytest.approx(0.5 * (1 + 2 / 3) / 2)
    # A rule (a wrong guarded expression) rejects outright: liveness 0.
    wrong = run_challenge(Challenge.for_clip(("happy",), 10.0), frames((20, "neutral"), (10, "surprise")))
    assert decision_scores(wrong)["scores"]["liveness"] == 0.0 and decision_scores(wrong)["score"] == 0.0
    # A stranger: no frame counts, identity from the median distance over the frames.
    stranger = run_challenge(
        Challenge.for_clip(("happy",), 2.0),
        [FrameObservation(i / 25, [FaceObservation((10, 10, 60, 60), 1.65, {c: (0.9 if c == "neutral" else 0.01)
                                                                            for c in CLASSES})], index=i)
         for i in range(60)])
    sc = decision_scores(stranger)
    assert not stranger.accepted and sc["scores"]["identity"] == pytest.approx(0.25)
    assert sc["margins"]["identity"] == pytest.approx(1.1 - 1.65) and sc["score"] < 0.5


def test_reports_follow_the_schema_with_rounded_floats():
    d = run_challenge(Challenge.for_clip(("surprise",), 10.0), frames((20, "neutral"), (10, "surprise")))
    r = assert_contract(decision_report(d, fps=25.0, reference={"ref": "me.jpg"}, clip="c.mp4",
                                        processing={"frames_per_second": 1 / 3}, include_trace=True))
    assert r["schema_version"] == SCHEMA_VERSION and r["processing"]["frames_per_second"] == 0.3333
    assert r["clip"] == "c.mp4" and r["audit"] is None

    def floats(x):
        if isinstance(x, float):
            yield x
        elif isinstance(x, dict):
            for v in x.values():
                yield from floats(v)
        elif isinstance(x, list):
            for v in x:
                yield from floats(v)

    assert all(round(f, 4) == f for f in floats(r))
    assert rounded({"a": [0.18999999999999995, float("nan")], "b": True}) == {"a": [0.19, None], "b": True}
    bad = dict(r, score=1.5)
    with pytest.raises(Exception, match="1.5"):
        assert_contract(bad)
    rejected = Decision.rejected(None, [d.reasons[0].__class__(ReasonCode.TOKEN_MALFORMED, "malformed")], at=0.0)
    r = assert_contract(decision_report(rejected, frames_analyzed=0))
    assert r["challenge"] is None and r["score"] == 0.0 and r["liveness"]["required"] == ["neutral"]
    assert format_decision(rejected).startswith("REJECT: malformed")
