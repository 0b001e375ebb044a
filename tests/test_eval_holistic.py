"""The holistic authentication protocol: building samples, the CSV, fused decisions."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from facelivenet.cli import cli
from facelivenet.errors import DatasetError, FaceLiveNetError, FileFormatError
from facelivenet.eval.holistic import (
    CELLS, AuthSample, evaluate_auth, fused_score, make_auth_protocol, parse_protocol, read_protocol,
    write_protocol,
)

from conftest import shared_data

CK = r"^(?P<subject>S\d+)_\d+_\d+"


def write(root: Path, cls: str, name: str, value: int = 0) -> None:
    (root / cls).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((48, 48, 3), value, np.uint8)).save(root / cls / name)


def ck_like(root: Path, neutral: bool) -> Path:
    """Subjects S001-S003: anger (seq 1), happy (seq 2), surprise (seq 3); S003 lacks surprise;
    with ``neutral``, each also has a neutral image (seq 9). Two frames per sequence."""
    for s in (1, 2, 3):
        classes = ["anger", "happy"] + (["surprise"] if s != 3 else []) + (["neutral"] if neutral else [])
        for c in classes:
            seq = {"anger": 1, "happy": 2, "surprise": 3, "neutral": 9}[c]
            for f in (1, 2):
                write(root, c, f"S{s:03d}_{seq:03d}_{f:08d}.png")
    return root


def test_protocol_without_neutral_uses_another_expression_as_reference(tmp_path):
    proto = make_auth_protocol(ck_like(tmp_path / "d", neutral=False), CK, seed=0)
    assert "no neutral class" in proto.notes[0]
    for s in proto.samples:
        assert "/anger/" in s.reference                         # first non-required class
        assert Path(s.reference).name.endswith("_00000001.png")  # its first image
        assert Path(s.probe).parent.name != "anger" or not s.same_id  # own probes never from the ref class
        assert s.same_id == (s.probe_subject == s.reference_subject)
        assert s.required_expression in ("happy", "surprise")
    own_true = [s for s in proto.samples if s.cell == "id_true/ex_true"]
    # S001, S002: happy + surprise; S003: happy only; probes are the peak (last) frames
    assert len(own_true) == 5 and all(Path(s.probe).name.endswith("_00000002.png") for s in own_true)
    counts = proto.cell_counts()
    assert set(counts) == set(CELLS) and counts["id_false/ex_true"] == 6 and counts["id_false/ex_false"] == 6
    assert counts["id_true/ex_false"] == 5           # S003 has no other probe class when happy is required
    assert proto.samples == make_auth_protocol(tmp_path / "d", CK, seed=0).samples   # seeded


def test_protocol_with_neutral_uses_it(tmp_path):
    proto = make_auth_protocol(ck_like(tmp_path / "d", neutral=True), CK)
    assert proto.notes[0].startswith("reference = the subject's first neutral")
    assert all("/neutral/" in s.reference for s in proto.samples)
    assert not any("/neutral/" in s.probe for s in proto.samples if s.same_id)


def test_protocol_errors(tmp_path):
    ck_like(tmp_path / "d", neutral=False)
    with pytest.raises(DatasetError, match="required expression 'fear'"):
        make_auth_protocol(tmp_path / "d", CK, required=("fear",))
    with pytest.raises(DatasetError, match="does not match|no subject"):
        make_auth_protocol(tmp_path / "d", r"^X(\d+)")


def test_csv_round_trip(tmp_path):
    proto = make_auth_protocol(ck_like(tmp_path / "d", neutral=False), CK)
    out = tmp_path / "sub" / "protocol.csv"
    out.parent.mkdir()
    write_protocol(out, proto, header=["built for a test"])
    text = out.read_text()
    assert text.startswith("# built for a test\n# no neutral class")
    assert "../d/" in text                                      # paths relative to the CSV
    back = read_protocol(out)
    assert [(Path(s.probe).resolve(), s.same_id, s.cell) for s in back] == \
           [(Path(s.probe).resolve(), s.same_id, s.cell) for s in proto.samples]
    with pytest.raises(FileFormatError, match="none.csv: no such file"):
        read_protocol(tmp_path / "none.csv")


HEADER = "probe,reference,same_id,required_expression,probe_expression\n"


@pytest.mark.parametrize("text, message", [
    ("# c\n" + HEADER + "a.png,b.png,maybe,happy,happy\n", r"bad.csv:3: same_id must be true or false"),
    ("probe,reference,same_id\n", r"bad.csv:1: missing column\(s\) required_expression, probe_expression"),
    (HEADER + "a.png,b.png,true,happy\n", r"bad.csv:2: expected 5 fields, got 4"),
    (HEADER + "a.png,,true,happy,happy\n", r"bad.csv:2: empty reference"),
    ("# only a comment\n", r"bad.csv: no header line"),
    (HEADER + '"a.png,b.png,true,happy,happy\n', r"bad.csv:2: malformed CSV line"),
    (HEADER, r"bad.csv: no samples"),
])
def test_protocol_parser_errors_name_the_line(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(FileFormatError, match=message):
        read_protocol(tmp_path / "bad.csv")


_cell = st.one_of(st.sampled_from(["a.png", "b.png", "true", "false", "happy", "", '"', "#", "x,y"]),
                  st.text(max_size=6))
_row = st.lists(_cell, max_size=6).map(",".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_row, max_size=6).map(lambda rows: "\n".join([HEADER.strip(), *rows])) | st.text(max_size=120))
def test_protocol_parser_total(text):
    try:
        samples = parse_protocol(text, "fuzz.csv")
    except FaceLiveNetError as exc:
        assert "fuzz.csv" in str(exc) and "\n" not in str(exc).strip()
        return
    assert samples and all(isinstance(s.same_id, bool) and s.probe and s.reference for s in samples)


def test_fused_score_is_the_fused_decision():
    d = np.array([0.0, 1.0, 0.5, 1.5, 0.2])
    p = np.array([1.0, 0.9, 0.4, 0.9, 0.5])
    s = fused_score(d, p, 1.0, 0.5)
    np.testing.assert_allclose(s, [1.0, 0.0, -0.2, -0.5, 0.0])
    np.testing.assert_array_equal(s >= 0, (d <= 1.0) & (p >= 0.5))


class ScriptedModel:
    """Fake FaceModel: each image's grey value v in {0..255} sets its embedding (identity = v // 10)
    and its expressions (happy probability = (v % 10) / 9)."""

    def __init__(self):
        self.config = SimpleNamespace(expression_classes=("happy", "surprise", "angry"), embedding_size=2,
                                      image_size=48, verification_threshold=1.0, expression_threshold=0.5)
        self.source = None

    def analyze(self, faces):
        v = np.array([int(np.asarray(f)[0, 0, 0]) for f in faces])
        angle = (v // 10) * 1.2
        e = np.stack([np.cos(angle), np.sin(angle)], axis=1)
        happy = (v % 10) / 9.0
        p = np.stack([happy, (1 - happy) * 0.5, (1 - happy) * 0.5], axis=1)
        return SimpleNamespace(embeddings=e.astype(np.float32), expressions=p.astype(np.float32))


def test_evaluate_auth_hand_example(tmp_path):
    def img(name, v):
        write(tmp_path, "x", name, v)
        return str(tmp_path / "x" / name)

    ref_a, ref_b = img("ra.png", 10), img("rb.png", 20)            # identities 1 and 2, not smiling
    a_smile, a_still = img("as.png", 19), img("an.png", 11)        # identity 1: happy p=1, p=1/9
    b_smile = img("bs.png", 28)                                    # identity 2: p=8/9
    samples = [
        AuthSample(a_smile, ref_a, True, "happy", "happy"),         # genuine, accepted
        AuthSample(a_still, ref_a, True, "happy", "angry"),         # id ok, no smile: rejected (right)
        AuthSample(b_smile, ref_a, False, "happy", "happy"),        # impostor smiling: rejected (right)
        AuthSample(a_smile, ref_b, False, "Happy", "happy"),        # impostor: rejected (right)
        AuthSample(a_still, ref_a, True, "surprise", "surprise"),   # genuine, but p(surprise)=4/9: rejected (wrong)
        AuthSample(a_still, ref_a, True, "happy", "contempt"),      # expression unknown to the model
    ]
    d = evaluate_auth(ScriptedModel(), samples)
    assert d["images"] == 5
    assert d["acc_verif"] == 1.0              # identities 1.2 rad apart: squared distance 1.28 > 1
    assert d["acc_live"] == pytest.approx(5 / 6)
    assert d["acc_auth"] == pytest.approx(5 / 6)
    # top class: as -> happy (right), an -> surprise/angry tie -> surprise (x2: one right), bs -> happy (right)
    assert d["expre_samples"] == 5 and d["acc_expre"] == pytest.approx(4 / 5)
    assert d["decisions"] == {"true_accept": 1, "false_accept": 0, "true_reject": 4, "false_reject": 1}
    assert d["cells"]["id_true/ex_true"] == {"samples": 2, "accepted": 1}
    assert d["cells"]["id_false/ex_true"] == {"samples": 2, "accepted": 0}
    assert 0.0 <= d["auc"] <= 1.0 and d["_roc"].tpr[-1] == 1.0
    d = evaluate_auth(ScriptedModel(), samples, expression_threshold=0.4)
    assert d["acc_auth"] == 1.0 and d["expression_threshold"] == 0.4
    with pytest.raises(DatasetError, match="'fear' is not a class"):
        evaluate_auth(ScriptedModel(), [AuthSample(a_smile, ref_a, True, "fear", "fear")])


def test_cli_make_and_evaluate(runner, tmp_path, tiny_model_path):
    ck_like(tmp_path / "d", neutral=False)
    csv_path = tmp_path / "protocol.csv"
    res = runner.invoke(cli, ["make-auth-protocol", "--data", str(tmp_path / "d"), "--out", str(csv_path), "--json"])
    assert res.exit_code == 0, res.output
    made = json.loads(res.stdout)
    assert made["samples"] == sum(made["cells"].values()) and csv_path.exists()
    roc = tmp_path / "auth.png"
    res = runner.invoke(cli, ["evaluate-auth", "--protocol", str(csv_path), "--model", str(tiny_model_path),
                              "--roc", str(roc), "--json", "-q"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert {"acc_auth", "acc_verif", "acc_expre", "acc_live", "cells", "auc", "eer"} <= set(d)
    assert d["samples"] == made["samples"] and roc.read_bytes()[:4] == b"\x89PNG"
    human = runner.invoke(cli, ["evaluate-auth", "--protocol", str(csv_path), "--model", str(tiny_model_path), "-q"])
    assert human.exit_code == 0 and "Acc_auth" in human.stdout


def test_cli_errors(runner, tmp_path):
    ck_like(tmp_path / "d", neutral=False)
    res = runner.invoke(cli, ["make-auth-protocol", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "p.txt")])
    assert res.exit_code == 2 and ".csv" in res.stderr
    (tmp_path / "bad.csv").write_text("probe,reference\n")
    res = runner.invoke(cli, ["evaluate-auth", "--protocol", str(tmp_path / "bad.csv")])
    assert res.exit_code == 2 and "bad.csv:1" in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.realdata
def test_real_ckplus48_protocol_has_no_neutral(runner, tmp_path):
    data = shared_data("ckplus48")
    csv_path = tmp_path / "ck.csv"
    res = runner.invoke(cli, ["make-auth-protocol", "--data", str(data), "--out", str(csv_path), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert "no neutral class" in d["notes"][0] and d["subjects"] == 118
    assert all(n > 100 for n in d["cells"].values())
    samples = read_protocol(csv_path)
    assert len(samples) == d["samples"]
    classes_of: dict[str, set[str]] = {}
    for p in data.glob("*/*.png"):
        classes_of.setdefault(p.name.split("_")[0], set()).add(p.parent.name)
    for s in samples:
        ref, probe = Path(s.reference), Path(s.probe)
        assert ref.exists() and probe.exists()
        if ref.parent.name in ("happy", "surprise"):      # only for subjects with nothing else
            assert classes_of[s.reference_subject] <= {"happy", "surprise"}
        if s.same_id:
            assert probe.parent.name != ref.parent.name  # never the reference's class, so never its sequence
