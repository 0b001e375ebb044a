"""Enrolment gallery: model fingerprint, round trip, foreign-model refusal, atomic writes, CLI.

(The protected file, names, locking and tampering: tests/test_gallery_protect.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from facelivenet.auth.gallery import (
    DetectorCropper, Gallery, embed_faces, enroll, identity_distances, model_fingerprint, open_gallery,
)
from facelivenet.auth.gallery import protect
from conftest import sealed_gallery_parts
from facelivenet.errors import GalleryError, GalleryModelMismatch, InputError

FP = "sha256:" + "ab" * 32


def unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_images(folder: Path, n: int, seed: int, size=(64, 72)) -> list[str]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"face{seed}_{i}.png"
        Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


@pytest.fixture(autouse=True)
def config_home(tmp_path_factory, monkeypatch):
    """Each test its own gallery key (outside tmp_path), never the real user's."""
    d = tmp_path_factory.mktemp("config") / "facelivenet"
    monkeypatch.setenv("FACELIVENET_CONFIG_DIR", str(d))
    return d


@pytest.fixture(scope="module")
def other_model(tiny_config):
    from facelivenet.api import new_model

    return new_model(tiny_config, seed=1)


# ------------------------------------------------------------------------------ fingerprint


def test_fingerprint_is_stable_across_save_and_load(tiny_model, tiny_model_path):
    from facelivenet.api import load_model

    fp = model_fingerprint(tiny_model)
    assert fp.startswith("sha256:") and len(fp) == 71
    assert model_fingerprint(tiny_model) == fp == model_fingerprint(tiny_model.network)
    assert model_fingerprint(load_model(tiny_model_path)) == fp


def test_fingerprint_differs_for_other_weights(tiny_model, other_model):
    assert model_fingerprint(other_model) != model_fingerprint(tiny_model)


def test_fingerprint_of_non_model_is_an_error():
    with pytest.raises(InputError):
        model_fingerprint(object())


# ------------------------------------------------------------------------------ gallery


def test_enroll_round_trip_and_distances(tiny_model, tmp_path):
    alice = make_images(tmp_path / "a", 2, seed=1)
    bob = make_images(tmp_path / "b", 1, seed=2)
    gpath = tmp_path / "g" / "gallery.json"
    r1 = enroll(gpath, "alice", alice, tiny_model)
    assert (r1.added, r1.total, r1.identities, r1.created) == (2, 2, 1, True)
    r2 = enroll(gpath, "bob", bob, tiny_model)
    assert (r2.total, r2.identities, r2.created) == (1, 2, False)

    g = open_gallery(gpath, tiny_model)
    assert g.names() == ["alice", "bob"]
    assert g.embeddings("alice").shape == (2, tiny_model.config.embedding_size)
    assert g.get("alice").sources == [Path(p).name for p in alice]
    text = gpath.read_text()
    # Embeddings only, and sealed: neither the names nor the file names are readable, in the
    # clear header or in the sealed bytes (not their base64 text, where "png" turns up by chance).
    clear, sealed = sealed_gallery_parts(gpath)
    plain = protect.unseal(json.loads(text), None, str(gpath))
    for secret in ('"alice"', Path(alice[0]).name):
        assert secret.encode() in plain and secret not in clear and secret.encode() not in sealed
    assert len(text) < 20000
    probe = embed_faces(tiny_model, alice[:1])
    assert g.distances("alice", probe)[0] == pytest.approx(0.0, abs=1e-4)
    # More images append; --replace replaces.
    assert enroll(gpath, "alice", bob, tiny_model).total == 3
    assert enroll(gpath, "alice", bob, tiny_model, replace=True).total == 1


def test_foreign_model_is_refused(tiny_model, other_model, tmp_path):
    gpath = tmp_path / "g.json"
    enroll(gpath, "alice", make_images(tmp_path, 1, seed=3), tiny_model)
    with pytest.raises(GalleryModelMismatch, match="another model"):
        open_gallery(gpath, other_model)
    with pytest.raises(GalleryModelMismatch):
        enroll(gpath, "bob", make_images(tmp_path, 1, seed=4), other_model)
    assert Gallery.load(gpath).names() == ["alice"]


def test_failed_enrolment_leaves_gallery_intact(tiny_model, tmp_path):
    gpath = tmp_path / "g.json"
    enroll(gpath, "alice", make_images(tmp_path, 1, seed=5), tiny_model)
    before = gpath.read_bytes()
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(InputError, match="broken.png"):
        enroll(gpath, "bob", [make_images(tmp_path, 1, seed=6)[0], str(bad)], tiny_model)
    assert gpath.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_interrupted_save_keeps_previous_file(tmp_path, monkeypatch, rng):
    gpath = tmp_path / "g.json"
    g = Gallery(FP, 8)
    g.add("alice", unit(rng, 2, 8))
    g.save(gpath)
    before = gpath.read_bytes()
    g.add("bob", unit(rng, 1, 8))

    def fail(fd):  # the disk fills up: the data written so far never reaches the disk
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("facelivenet.auth.gallery.protect.os.fsync", fail)
    with pytest.raises(GalleryError, match="No space left"):
        g.save(gpath)
    monkeypatch.undo()
    assert gpath.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.json"]


def test_add_remove_and_validation(rng):
    g = Gallery(FP, 8)
    g.add("alice", unit(rng, 1, 8)[0])
    assert g.embeddings("alice").shape == (1, 8)
    with pytest.raises(GalleryError, match="unit vectors"):
        g.add("bob", np.ones((1, 8)))
    with pytest.raises(GalleryError, match=r"\(K, 8\)"):
        g.add("bob", unit(rng, 1, 4))
    for bad in ("", " x", "a\nb", "x" * 129, None):
        with pytest.raises(GalleryError):
            g.add(bad, unit(rng, 1, 8))
    with pytest.raises(GalleryError, match="no identity 'carol'"):
        g.remove("carol")
    g.remove("alice")
    assert len(g) == 0


def test_identity_distances(rng):
    ref = unit(rng, 3, 16)
    q = np.concatenate([ref[1:2], -ref[:1]])
    d = identity_distances(q, ref)
    assert d[0] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < d[1] <= 4.0
    brute = min(((q[1] - r) ** 2).sum() for r in ref)
    assert d[1] == pytest.approx(brute, rel=1e-5)
    assert identity_distances(np.zeros((0, 16)), ref).shape == (0,)
    with pytest.raises(InputError):
        identity_distances(q, unit(rng, 2, 8))


@pytest.mark.parametrize("content", [
    b"", b"   ", b"\xff\xfe", b"not json", b"[]", b"null", b'{"format": "other"}',
    b'{"format": "facelivenet-gallery", "version": 2}',
    b'{"format": "facelivenet-gallery", "version": 1, "model": {}, "identities": []}',
])
def test_malformed_gallery_files(tmp_path, content):
    p = tmp_path / "g.json"
    p.write_bytes(content)
    with pytest.raises(GalleryError, match="g.json"):
        Gallery.load(p)


def test_gallery_file_problems(tmp_path):
    with pytest.raises(GalleryError, match="no such gallery"):
        Gallery.load(tmp_path / "missing.json")
    with pytest.raises(GalleryError, match="directory"):
        Gallery.load(tmp_path)


def _valid_doc(rng) -> dict:
    g = Gallery(FP, 4, model_source="m.keras")
    g.add("alice", unit(rng, 2, 4), ["a.jpg", "b.jpg"])
    return g.to_dict()


def test_valid_document_round_trips(rng):
    doc = _valid_doc(rng)
    g = Gallery.from_json(json.dumps(doc))
    assert g.to_dict() == doc


def test_semantically_bad_documents(rng):
    for mutate in (
        lambda d: d["identities"][0].update(embeddings=[[0.3] * 4]),           # not unit
        lambda d: d["identities"][0].update(embeddings=[[1, 0, 0]]),            # wrong size
        lambda d: d["identities"][0].update(embeddings=[]),                     # empty
        lambda d: d["identities"].append(dict(d["identities"][0])),             # duplicate name
        lambda d: d["model"].update(fingerprint="md5:x"),
        lambda d: d["model"].update(embedding_size=True),
        lambda d: d["identities"][0].update(embeddings=[[True, 0, 0, 0]]),
        lambda d: d["identities"][0].update(embeddings=[[10**400, 0, 0, 0]]),
        lambda d: d.update(extra=1),
    ):
        doc = _valid_doc(np.random.default_rng(0))
        mutate(doc)
        with pytest.raises(GalleryError):
            Gallery.from_json(json.dumps(doc))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_fuzz_gallery_bytes(data):
    try:
        g = Gallery.from_json(data)
    except GalleryError:
        return
    assert isinstance(g, Gallery)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["format", "version", "model", "identities", "fingerprint", "embedding_size",
                        "source", "name", "embeddings", "sources", "enrolled", "row"]), _json)
def test_fuzz_gallery_documents_with_one_field_replaced(field, value):
    doc = _valid_doc(np.random.default_rng(0))
    if field in doc:
        doc[field] = value
    elif field in doc["model"]:
        doc["model"][field] = value
    elif field == "row":
        doc["identities"][0]["embeddings"][0] = value
    else:
        doc["identities"][0][field] = value
    try:
        text = json.dumps(doc)
    except ValueError:
        return
    try:
        g = Gallery.from_json(text)
    except GalleryError:
        return
    for name in g.names():
        assert np.allclose(np.linalg.norm(g.embeddings(name), axis=1), 1.0, atol=1e-3)


# ------------------------------------------------------------------------------ cropper


def _det(score, box=(0, 0, 10, 10)):
    return SimpleNamespace(box=box, score=score, landmarks=np.zeros((5, 2)))


class FakeDetector:
    def __init__(self, detections):
        self.detections = detections
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        return list(self.detections)


def test_detector_cropper_selects_the_one_face():
    calls = []

    def align(image, det, size, mode, margin):
        calls.append((det.score, size, mode, margin))
        return np.zeros((size, size, 3), np.uint8)

    image = np.zeros((100, 100, 3), np.uint8)
    crop = DetectorCropper(FakeDetector([_det(0.99), _det(0.5)]), align, 80, "similarity", 20)(image, "x.jpg")
    assert crop.shape == (80, 80, 3) and calls == [(0.99, 80, "similarity", 20)]
    with pytest.raises(InputError, match="x.jpg: no face"):
        DetectorCropper(FakeDetector([_det(0.3)]), align, 80)(image, "x.jpg")
    with pytest.raises(InputError, match="2 faces"):
        DetectorCropper(FakeDetector([_det(0.95), _det(0.97)]), align, 80)(image, "x.jpg")


def test_enroll_with_injected_cropper(tiny_model, tmp_path):
    def cropper(image, source):
        return image[8:-8, 8:-8]

    r = enroll(tmp_path / "g.json", "alice", make_images(tmp_path, 2, seed=9), tiny_model, cropper=cropper)
    assert r.total == 2


# ------------------------------------------------------------------------------ CLI


def _cli():
    from facelivenet.cli import cli

    return cli


def test_cli_enroll_list_remove(tiny_model_path, tmp_path):
    gpath = str(tmp_path / "gallery.json")
    runner = CliRunner()
    imgs = make_images(tmp_path, 2, seed=11)
    r = runner.invoke(_cli(), ["enroll", "alice", *imgs, "--gallery", gpath, "--model", str(tiny_model_path), "--json", "--cropped"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["total"] == 2
    r = runner.invoke(_cli(), ["enroll", "bob", imgs[0], "--gallery", gpath, "--model", str(tiny_model_path), "--cropped"])
    assert r.exit_code == 0 and "enrolled bob" in r.stdout
    r = runner.invoke(_cli(), ["gallery", "list", "--gallery", gpath, "--json"])
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert [i["name"] for i in d["identities"]] == ["alice", "bob"]
    r = runner.invoke(_cli(), ["gallery", "list", "--gallery", gpath])
    assert r.exit_code == 0 and "alice: 2 face(s)" in r.stdout
    r = runner.invoke(_cli(), ["gallery", "remove", "alice", "--gallery", gpath])
    assert r.exit_code == 0 and "removed alice" in r.stdout
    assert Gallery.load(gpath).names() == ["bob"]
    r = runner.invoke(_cli(), ["gallery", "remove", "alice", "--gallery", gpath])
    assert r.exit_code == 2 and "no identity 'alice'" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_cli_enroll_foreign_model_exit_2(tiny_model_path, other_model, tmp_path):
    other_path = tmp_path / "other.keras"
    other_model.save(other_path)
    gpath = str(tmp_path / "g.json")
    imgs = make_images(tmp_path, 1, seed=12)
    assert CliRunner().invoke(_cli(), ["enroll", "a", *imgs, "--gallery", gpath, "--model", str(other_path), "--cropped"]).exit_code == 0
    r = CliRunner().invoke(_cli(), ["enroll", "b", *imgs, "--gallery", gpath, "--model", str(tiny_model_path), "--cropped"])
    assert r.exit_code == 2
    assert "another model" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_cli_gallery_errors_exit_2(tmp_path, tiny_model_path):
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    for args in (["gallery", "list", "--gallery", str(junk)],
                 ["gallery", "list", "--gallery", str(tmp_path / "missing.json")],
                 ["enroll", "x", str(tmp_path / "nope.png"), "--gallery", str(tmp_path / "g.json"),
                  "--model", str(tiny_model_path)]):
        r = CliRunner().invoke(_cli(), args)
        assert r.exit_code == 2, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not (tmp_path / "g.json").exists()


def test_faces_of_one_name_must_match_each_other():
    from facelivenet.auth.gallery import check_same_person
    from facelivenet.errors import GalleryError

    a = np.array([1.0, 0.0, 0.0], np.float32)
    b = np.array([0.8, 0.6, 0.0], np.float32)  # squared distance to a: 0.04 + 0.36 = 0.4
    c = np.array([0.0, 0.0, 1.0], np.float32)  # to a: 2.0
    check_same_person(np.stack([a, b]), ["a.jpg", "b.jpg"], 1.0, "alice")
    with pytest.raises(GalleryError, match=r"a.jpg - c.jpg: 2.00.*--force"):
        check_same_person(np.stack([a, b, c]), ["a.jpg", "b.jpg", "c.jpg"], 1.0, "alice")


@pytest.mark.slow
@pytest.mark.realdata
def test_enroll_refuses_two_people_under_one_name(runner, tmp_path):
    from conftest import shared_data
    from facelivenet.cli import cli

    obama, biden = shared_data("photos", "obama.jpg"), shared_data("photos", "biden.jpg")
    g = tmp_path / "g.json"
    res = runner.invoke(cli, ["enroll", "mix", str(obama), str(biden), "--gallery", str(g)])
    assert res.exit_code == 2 and "do not all match" in res.stderr and "biden.jpg" in res.stderr
    assert not g.exists()
    res = runner.invoke(cli, ["enroll", "mix", str(obama), str(biden), "--gallery", str(g), "--force"])
    assert res.exit_code == 0, res.output


def test_cli_enroll_normalises_names_and_refuses_look_alikes(tiny_model_path, tmp_path):
    import unicodedata

    gpath = str(tmp_path / "g.json")
    imgs = make_images(tmp_path, 1, seed=13)
    common = ["--gallery", gpath, "--model", str(tiny_model_path), "--cropped"]
    nfd = unicodedata.normalize("NFD", "Zoë")
    assert CliRunner().invoke(_cli(), ["enroll", nfd, *imgs, *common]).exit_code == 0
    r = CliRunner().invoke(_cli(), ["enroll", "Zoë", *imgs, *common, "--json"])  # NFC: the same person
    assert r.exit_code == 0 and (json.loads(r.stdout)["total"], json.loads(r.stdout)["identities"]) == (2, 1)
    for lookalike in ("Zоë", "ZOË"):  # a Cyrillic о; capitals
        r = CliRunner().invoke(_cli(), ["enroll", lookalike, *imgs, *common])
        assert r.exit_code == 2 and "looks like the enrolled identity 'Zoë'" in r.output
        assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert CliRunner().invoke(_cli(), ["enroll", "Zoe", *imgs, *common]).exit_code == 0  # ë is not e
    assert Gallery.load(gpath).names() == ["Zoë", "Zoe"]
