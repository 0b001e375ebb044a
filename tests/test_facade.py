"""The facade (FaceAuth) and its CLI verbs on real photos: analyze, compare, identify, authenticate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import assert_contract, shared_data
from facelivenet.cli import cli
from facelivenet.errors import InputError


@pytest.fixture(scope="module")
def auth():
    from facelivenet import FaceAuth

    return FaceAuth()  # the bundled default model


@pytest.fixture(scope="module")
def astronaut():
    from facelivenet.auth.demo import astronaut_photo

    return astronaut_photo()


def test_analyze_finds_the_astronaut_in_an_array_a_pil_image_and_a_file(auth, astronaut, tmp_path):
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    from_array = auth.analyze(astronaut)
    from_pil = auth.analyze(Image.fromarray(astronaut))
    from_file = auth.analyze(str(path))
    assert len(from_array) == len(from_pil) == len(from_file) == 1
    face = from_array[0]
    x1, y1, x2, y2 = face.face.box
    assert 150 < (x1 + x2) / 2 < 260 and 50 < (y1 + y2) / 2 < 180        # her face, upper middle of the photo
    assert face.embedding.shape == (auth.config.embedding_size,)
    assert abs(np.linalg.norm(face.embedding) - 1) < 1e-4
    assert face.expression in face.expressions and abs(sum(face.expressions.values()) - 1) < 1e-4
    np.testing.assert_allclose(from_file[0].embedding, face.embedding, atol=1e-5)


def test_anything_else_is_a_clear_error(auth):
    with pytest.raises(InputError, match="expected a file path, a numpy array or a PIL image; got int"):
        auth.analyze(42)
    with pytest.raises(InputError, match="uint8 array"):
        auth.analyze(np.zeros((10, 10, 3), np.float32))


def test_two_people_give_two_faces_and_one_face_policies_refuse_them(auth):
    two = shared_data("photos", "two_people.jpg")
    faces = auth.analyze(str(two))
    assert len(faces) == 2
    assert faces[0].face.box != faces[1].face.box
    with pytest.raises(InputError, match="2 faces found"):
        auth.verify(str(two), str(two))


def test_verify_same_and_different_people(auth):
    obama = shared_data("photos", "obama.jpg")
    obama2 = shared_data("photos", "obama2.jpg")
    biden = shared_data("photos", "biden.jpg")
    same = auth.verify(str(obama), str(obama2))
    other = auth.verify(str(obama), str(biden))
    assert same.distance < other.distance
    assert other.same is False and other.distance > other.threshold
    assert same.threshold == auth.threshold
    d = same.to_dict()
    assert set(d) == {"same", "distance", "threshold", "faces"} and len(d["faces"]) == 2


def test_cli_compare_exit_codes_and_json(runner):
    obama = str(shared_data("photos", "obama.jpg"))
    biden = str(shared_data("photos", "biden.jpg"))
    res = runner.invoke(cli, ["compare", obama, obama, "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["same"] is True and d["distance"] < 1e-3
    res = runner.invoke(cli, ["compare", obama, biden])
    assert res.exit_code == 1 and "different people" in res.stdout
    two = str(shared_data("photos", "two_people.jpg"))
    res = runner.invoke(cli, ["compare", obama, two])
    assert res.exit_code == 2 and "two_people.jpg: 2 faces found" in res.stderr


def test_cli_identify_against_an_enrolled_gallery(runner, tmp_path):
    train = shared_data("photos", "knn_examples", "train")
    gallery = tmp_path / "g.json"
    for name in ("obama", "biden"):
        first = sorted((train / name).iterdir())[0]
        res = runner.invoke(cli, ["enroll", name, str(first), "--gallery", str(gallery)])
        assert res.exit_code == 0, res.output
    probe = str(sorted((train / "obama").iterdir())[0])
    res = runner.invoke(cli, ["identify", probe, "--gallery", str(gallery), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["name"] == "obama" and d["candidates"][0]["name"] == "obama" and d["distance"] < 1e-3
    other_photo = str(sorted((train / "obama").iterdir())[1])
    res = runner.invoke(cli, ["identify", other_photo, "--gallery", str(gallery), "--threshold", "0"])
    assert res.exit_code == 1 and "no enrolled identity within 0.0000" in res.stdout
    res = runner.invoke(cli, ["identify", probe, "--gallery", str(tmp_path / "none.json")])
    assert res.exit_code == 2 and "none.json" in res.stderr


def test_cli_analyze_detects_every_face_by_default(runner):
    two = str(shared_data("photos", "two_people.jpg"))
    res = runner.invoke(cli, ["analyze", two, "--json"])
    assert res.exit_code == 0, res.output
    faces = json.loads(res.stdout)["faces"]
    assert [f["face"] for f in faces] == [0, 1] and all(len(f["box"]) == 4 for f in faces)
    cropped = runner.invoke(cli, ["analyze", two, "--cropped", "--json"])
    assert cropped.exit_code == 0 and len(json.loads(cropped.stdout)["faces"]) == 1


def test_cli_analyze_of_a_photo_without_a_face_is_an_error(runner, tmp_path):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 120, 3), 200, np.uint8)).save(blank)
    res = runner.invoke(cli, ["analyze", str(blank)])
    assert res.exit_code == 2 and "blank.png: no face found (use --cropped for face crops)" in res.stderr


@pytest.mark.slow
def test_authenticate_runs_the_offline_use_case_on_a_real_clip(auth, tmp_path):
    import cv2

    clip = shared_data("videos", "d18.mp4")
    ok, frame = cv2.VideoCapture(str(clip)).read()
    assert ok
    reference = frame[:, :, ::-1].copy()
    outcome = auth.authenticate(str(clip), reference, challenge="surprise")
    # The analysis runs to the decision: the whole clip, or up to the deciding frame.
    if outcome.clip.stopped_early:
        assert outcome.frames_analyzed == outcome.decision.decided_frame + 1 < 216
    else:
        assert outcome.frames_analyzed == 216
    report = assert_contract(outcome.report(reference={"ref": "first frame"}, clip=str(clip)))
    assert report["decision"] == outcome.decision.decision and report["clip"] == str(clip)
    assert outcome.decision.challenge.expressions == ("surprise",)
    assert outcome.accepted == outcome.decision.accepted
    assert outcome.decision.codes or outcome.accepted               # a reject lists its reasons
    same = auth.authenticate(str(clip), auth.reference(reference), challenge="surprise")
    assert same.decision.accepted == outcome.decision.accepted     # a photo or its embeddings: one reference


def test_authenticate_refuses_a_token_bound_to_another_session_before_any_frame(auth, astronaut, tmp_path):
    from facelivenet.auth.tokens import TokenBinding, issue_token

    key = bytes(range(32))
    emb = auth.reference(astronaut)
    token, _ = issue_token(key, ("happy",), binding=TokenBinding.for_reference(auth.fingerprint, "alice", emb))
    never = str(tmp_path / "never-read.mp4")  # refused before the clip is opened
    cases = [({"identity": "bob"}, emb, "token_identity_mismatch"),
             ({}, astronaut, "token_identity_mismatch"),                       # a photo is no enrolled identity
             ({"identity": "alice"}, emb[:, ::-1].copy(), "token_gallery_mismatch")]
    for kwargs, reference, code in cases:
        outcome = auth.authenticate(never, reference, token=token, key=key, **kwargs)
        assert outcome.decision.codes == (code,) and outcome.frames_analyzed == 0 and not outcome.accepted
    other, _ = issue_token(key, ("happy",), binding=TokenBinding.for_reference("sha256:" + "0" * 64, "alice", emb))
    assert auth.authenticate(never, emb, token=other, key=key, identity="alice").decision.codes == (
        "token_model_mismatch",)
    with pytest.raises(InputError, match="a photo is not one"):
        auth.authenticate(never, astronaut, token=token, key=key, identity="alice")
