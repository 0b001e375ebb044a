"""Fuzzing the text parsers a user can feed: any input parses or raises our own error.

(Token strings and gallery files are fuzzed beside their own tests.)
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facelivenet.data.pairs import PairsFile, parse_pairs
from facelivenet.data.schedule import parse_lr_schedule
from facelivenet.errors import FaceLiveNetError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Lines built from the pieces real files are made of, so the fuzzer reaches deep states.
_token = st.one_of(
    st.text(alphabet="AbcXyz_-.' ", min_size=1, max_size=8),
    st.integers(-3, 12).map(str),
    st.sampled_from(["0", "1", "10", "300", "0.1", "1e-3", ":", "nan", "inf", "-1", "\t", "#"]),
)
_line = st.lists(_token, min_size=0, max_size=5).map(" ".join)
_structured = st.lists(_line, max_size=12).map("\n".join)
_anything = st.one_of(_structured, st.text(max_size=200))


@FUZZ
@given(_anything)
def test_pairs_parser_total(text):
    try:
        parsed = parse_pairs(text, "fuzz.txt")
    except FaceLiveNetError as exc:
        assert "fuzz.txt" in str(exc)
        return
    assert isinstance(parsed, PairsFile)
    assert len(parsed.pairs) == 2 * parsed.folds * parsed.pairs_per_fold
    assert all(p.index1 >= 1 and p.index2 >= 1 for p in parsed.pairs)


@FUZZ
@given(st.integers(1, 3), st.integers(1, 3), st.data())
def test_well_formed_pairs_always_parse(folds, per_fold, data):
    lines = [f"{folds} {per_fold}"]
    for _ in range(folds):
        lines += [f"A{data.draw(st.integers(0, 9))} {data.draw(st.integers(1, 99))} {data.draw(st.integers(1, 99))}"
                  for _ in range(per_fold)]
        lines += [f"A {data.draw(st.integers(1, 9))} B {data.draw(st.integers(1, 9))}" for _ in range(per_fold)]
    parsed = parse_pairs("\n".join(lines))
    assert parsed.issame.sum() == folds * per_fold


@FUZZ
@given(_anything)
def test_lr_schedule_parser_total(text):
    try:
        parse_lr_schedule(text, "fuzz.txt")
    except FaceLiveNetError as exc:
        assert "fuzz.txt" in str(exc)
