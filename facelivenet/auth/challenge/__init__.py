"""The challenge-response engine: pure logic, clock and randomness injected.

A :class:`Challenge` asks for a random sequence of expressions. A
:class:`ChallengeEngine` is fed one :class:`FrameObservation` per analysed frame (the
faces in it, each with its box, its identity distance to the enrolled reference and
its expression probabilities by name) and decides, in the sense of the FaceLiveNet
papers, whether the *enrolled person* answered the challenge *live*:

1. after the challenge is issued, the tracked face shows Neutral (probability >=
   ``neutral_threshold``, no class more probable) for at least ``neutral_min_frames``
   consecutive frames spanning ``neutral_min_duration`` seconds;
2. then each requested expression, in order, for ``expression_min_frames``
   consecutive frames spanning ``expression_min_duration`` seconds with probability
   >= ``expression_threshold``;
3. all before the challenge's deadline;
4. identity matches the reference (squared L2 distance <= ``identity_threshold``) on
   every frame that counts for Neutral or for an expression;
5. it is the same face throughout: one face in view, no jump of the box between
   frames, no identity change after the identity was established;
6. no face for more than ``max_no_face`` seconds rejects; frames before the challenge
   was issued never count.

Time is whatever base the observations' ``timestamp`` uses: wall-clock seconds for a
live stream (the engine's ``clock``, ``time.time`` by default), seconds since the
start of the clip for an uploaded clip (see :meth:`Challenge.for_clip`). Nothing here
imports OpenCV or a deep-learning framework.

Every :class:`Decision` carries its reasons (stable machine-readable codes plus
text), the phases seen with their frame ranges, and a per-frame trace.

A step may also be a head move (``turn_left``, ``turn_right``, ``chin_up``): it is
shown when the landmark pose measure, relative to the median pose of the frames that
completed Neutral, passes the move's threshold (:mod:`.pose`), for the step's minimum
frames, with the identity matching, like an expression.

Modules: :mod:`.reasons` (codes), :mod:`.settings`, :mod:`.pose` (head moves),
:mod:`.sequences` (challenges and the one expression-name validator), :mod:`.observations` (per-frame input, tracking),
:mod:`.results` (decision, phases, trace), :mod:`.engine`. Everything is importable
from this package.
"""

from __future__ import annotations

from facelivenet.auth.challenge.reasons import Reason, ReasonCode
from facelivenet.auth.challenge.settings import (
    DEFAULT_EXPRESSIONS, DEFAULT_LENGTH, MAX_LENGTH, NEUTRAL, Box, ChallengeSettings, Clock,
)
from facelivenet.auth.challenge.pose import MOVES, Pose, is_move, median_pose, move_shown, pose_from_landmarks
from facelivenet.auth.challenge.sequences import (
    DEFAULT_CHALLENGE_CHOICES, DEFAULT_CHALLENGE_LENGTH, challenge_count, challenge_entropy, Challenge, ChoiceRng, check_expression_classes, check_expression_name, issue_challenge, parse_expression_list,
    random_sequence, step_instruction, STEP_INSTRUCTIONS, validate_expressions,
)
from facelivenet.auth.challenge.observations import FaceObservation, FrameObservation, box_iou, same_track
from facelivenet.auth.challenge.results import (
    ACCEPTED, AWAIT_EXPRESSION, AWAIT_NEUTRAL, REJECTED, WAITING, Decision, EngineStatus, FrameTrace, PhaseRecord,
)
from facelivenet.auth.challenge.engine import ChallengeEngine, run_challenge

__all__ = [
    "Reason", "ReasonCode", "DEFAULT_EXPRESSIONS", "DEFAULT_LENGTH", "MAX_LENGTH", "NEUTRAL", "Box",
    "ChallengeSettings", "Clock", "Challenge", "ChoiceRng", "check_expression_classes", "check_expression_name", "issue_challenge",
    "parse_expression_list", "random_sequence", "validate_expressions", "FaceObservation", "FrameObservation",
    "box_iou", "same_track", "ACCEPTED", "AWAIT_EXPRESSION", "AWAIT_NEUTRAL", "REJECTED", "WAITING", "Decision",
    "EngineStatus", "FrameTrace", "PhaseRecord", "ChallengeEngine", "run_challenge",
    "MOVES", "Pose", "is_move", "median_pose", "move_shown", "pose_from_landmarks", "DEFAULT_CHALLENGE_CHOICES",
    "DEFAULT_CHALLENGE_LENGTH", "challenge_count", "challenge_entropy", "step_instruction", "STEP_INSTRUCTIONS",
]
