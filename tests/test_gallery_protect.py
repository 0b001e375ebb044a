"""Protected galleries (issue 18): sealed files, tampering refused, upgrade, names, locked writes.

Every attack of the issue's "Gallery tampering" and "Concurrent enrolment" bullets is
played as the attacker would: with write access to the gallery file but not the
gallery key. On the plain galleries of before, each of these edits was accepted.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from facelivenet.auth.gallery import (
    Gallery, GalleryKey, edit_gallery, enroll, gallery_key, open_gallery, remove_identity, skeleton,
    upgrade_gallery,
)
from facelivenet.auth.gallery import protect
from conftest import sealed_gallery_parts
from facelivenet.errors import GalleryError, GalleryIntegrityError, GalleryModelMismatch

ROOT = Path(__file__).resolve().parent.parent
FP_X = "sha256:" + "ab" * 32
FP_Y = "sha256:" + "cd" * 32
D = 8


@pytest.fixture(autouse=True)
def config_home(tmp_path_factory, monkeypatch):
    d = tmp_path_factory.mktemp("config") / "facelivenet"
    monkeypatch.setenv("FACELIVENET_CONFIG_DIR", str(d))
    return d


def unit(seed, n=1, d=D):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_gallery(path, fingerprint=FP_X, names=("alice", "bob"), key=None) -> Gallery:
    g = Gallery(fingerprint, D, model_source="x.keras")
    for i, n in enumerate(names):
        g.add(n, unit(i + 1, 2), [f"{n}{k}.jpg" for k in range(2)])
    g.save(path, key=key)
    return g


def attacker_key() -> GalleryKey:
    return GalleryKey(os.urandom(32))


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------------ the file


def test_file_is_sealed_private_and_round_trips(tmp_path, config_home):
    p = tmp_path / "g.json"
    g = make_gallery(p)
    raw = p.read_text()
    head = json.loads(raw)
    assert (head["format"], head["version"], head["cipher"]) == ("facelivenet-gallery", 2, "AES-256-GCM")
    # Nothing of the templates is readable: no names, sources, fingerprint or embedding values,
    # neither in the clear header nor in the sealed bytes. (The base64 text of the sealed bytes
    # is not searched: a random 1.5 kB of base64 holds "bob" about once in 170 files.)
    assert set(head) == {"format", "version", "cipher", "key_id", "nonce", "data"}
    clear, sealed = sealed_gallery_parts(p)
    plain = protect.unseal(head, gallery_key(), str(p)).decode()
    for secret in ('"alice"', '"bob"', "alice0.jpg", "abababab", "x.keras",
                   f"{g.embeddings('alice')[0, 0]:.6f}"[:7]):
        assert secret in plain  # the key opens it
        assert secret not in clear
        assert secret.encode() not in sealed
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    key_file = config_home / "gallery.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    back = Gallery.load(p)
    assert back.names() == ["alice", "bob"] and back.fingerprint == FP_X
    assert np.array_equal(back.embeddings("bob"), g.embeddings("bob"))
    assert sorted(x.name for x in tmp_path.iterdir()) == ["g.json"]  # no temporary file left
    # Each save draws a fresh nonce: the same gallery never gives the same bytes twice.
    g.save(p)
    assert json.loads(p.read_text())["nonce"] != head["nonce"]


def test_reader_without_the_key_is_refused_and_creates_none(tmp_path, config_home, monkeypatch):
    p = tmp_path / "g.json"
    make_gallery(p)
    monkeypatch.setenv("FACELIVENET_CONFIG_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(GalleryError, match="no gallery key") as e:
        Gallery.load(p)
    one_line(e)
    assert not (tmp_path / "elsewhere").exists()


def test_gallery_key_follows_the_key_file_rules(tmp_path, config_home):
    make_gallery(tmp_path / "g.json")
    key_file = config_home / "gallery.key"
    os.chmod(key_file, 0o644)
    with pytest.raises(GalleryError, match="gallery key: .*group or others") as e:
        Gallery.load(tmp_path / "g.json")
    one_line(e)
    os.chmod(key_file, 0o600)
    fifo = tmp_path / "fifo.key"
    os.mkfifo(fifo)
    with pytest.raises(GalleryError, match="not a regular file"):
        gallery_key(fifo)
    big = tmp_path / "big.key"
    big.write_text("ab" * 5000)
    os.chmod(big, 0o600)
    with pytest.raises(GalleryError, match="at most 4096 bytes"):
        gallery_key(big)
    public = tmp_path / "public"
    public.mkdir()
    os.chmod(public, 0o777)
    (public / "k.key").write_text("ab" * 32)
    os.chmod(public / "k.key", 0o600)
    with pytest.raises(GalleryError, match="writable by everyone"):
        gallery_key(public / "k.key")


def test_gallery_key_is_not_the_challenge_key(tmp_path, config_home):
    from facelivenet.auth.tokens import load_key

    challenge_key = load_key(config_home / "challenge.key")
    make_gallery(tmp_path / "g.json")
    assert bytes.fromhex((config_home / "gallery.key").read_text()) != challenge_key
    # Rotating (replacing) the challenge key leaves the galleries readable.
    (config_home / "challenge.key").unlink()
    load_key(config_home / "challenge.key")
    assert Gallery.load(tmp_path / "g.json").names() == ["alice", "bob"]


# ------------------------------------------------------------------------------ tampering


def _forge(path: Path, mutate) -> dict:
    """The victim's gallery document (as the attacker would know or guess it), edited."""
    doc = Gallery.load(path).to_dict()
    mutate(doc)
    return doc


def _write_plain(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc))


def _write_sealed_with_own_key(path: Path, doc: dict) -> None:
    path.write_bytes(protect.seal(json.dumps(doc).encode(), attacker_key()))


def _swap(doc):
    a, b = doc["identities"]
    a["embeddings"], b["embeddings"] = b["embeddings"], a["embeddings"]


def _replace_victim(doc):
    doc["identities"][0]["embeddings"] = [[float(v) for v in unit(99)[0]]]


def _implant(doc):
    doc["identities"].append({"name": "mallory", "embeddings": [[float(v) for v in unit(98)[0]]],
                              "sources": ["m.jpg"], "enrolled": "2026-01-01T00:00:00Z"})


@pytest.mark.parametrize("mutate", [_swap, _replace_victim, _implant], ids=["swap", "replace", "implant"])
@pytest.mark.parametrize("write", [_write_plain, _write_sealed_with_own_key], ids=["plain", "own-key"])
def test_edited_gallery_is_refused(tmp_path, mutate, write):
    p = tmp_path / "g.json"
    make_gallery(p)
    write(p, _forge(p, mutate))
    with pytest.raises(GalleryError) as e:
        Gallery.load(p)
    msg = one_line(e)
    assert "upgrade" in msg or "not sealed with this gallery key" in msg


def test_copied_fingerprint_is_refused(tmp_path):
    """A gallery of model Y made to look like one of model X."""
    victim, foreign = tmp_path / "x.json", tmp_path / "y.json"
    make_gallery(victim, FP_X)
    make_gallery(foreign, FP_Y, names=("mallory",))
    assert FP_Y[7:20] not in foreign.read_text()  # nothing to copy from or to: the fingerprint is sealed
    with pytest.raises(GalleryModelMismatch):
        Gallery.load(foreign).check_model(FP_X)
    # the foreign document with the victim's fingerprint written in
    doc = _forge(foreign, lambda d: d["model"].update(fingerprint=FP_X))
    for write in (_write_plain, _write_sealed_with_own_key):
        write(foreign, doc)
        with pytest.raises(GalleryError):
            Gallery.load(foreign)
    # the victim's header (key id, nonce) over the foreign sealed data
    make_gallery(foreign, FP_Y, names=("mallory",))
    v, f = json.loads(victim.read_text()), json.loads(foreign.read_text())
    foreign.write_text(json.dumps({**v, "data": f["data"]}))
    with pytest.raises(GalleryIntegrityError, match="integrity check") as e:
        Gallery.load(foreign)
    one_line(e)


def test_byte_edits_and_header_edits_are_refused(tmp_path):
    p = tmp_path / "g.json"
    make_gallery(p)
    good = json.loads(p.read_text())
    data = bytearray(sealed_gallery_parts(p)[1])
    for i in (0, len(data) // 2, len(data) - 1):  # ciphertext and tag
        edited = bytearray(data)
        edited[i] ^= 1
        p.write_text(json.dumps({**good, "data": protect._b64(bytes(edited))}))
        with pytest.raises(GalleryIntegrityError):
            Gallery.load(p)
    for field, value, match in (("version", 3, "unsupported version"), ("cipher", "AES-128-GCM", "cipher"),
                                ("key_id", "0" * 16, "not sealed with this gallery key"),
                                ("nonce", protect._b64(os.urandom(12)), "integrity"),
                                ("nonce", good["nonce"] + "=", "base64url"),
                                ("data", good["data"] + "==", "base64url"),
                                ("data", good["data"] + "A", "integrity|base64url")):
        p.write_text(json.dumps({**good, field: value}))
        with pytest.raises(GalleryError, match=match) as e:
            Gallery.load(p)
        one_line(e)
    p.write_text(json.dumps({**good, "extra": 1}))
    with pytest.raises(GalleryError, match="unexpected keys"):
        Gallery.load(p)


def test_truncated_gallery_is_refused(tmp_path):
    p = tmp_path / "g.json"
    make_gallery(p)
    raw = p.read_bytes()
    good = json.loads(raw)
    for n in (len(raw) - 2, len(raw) // 2, 10, 0):  # the file cut short
        p.write_bytes(raw[:n])
        with pytest.raises(GalleryError) as e:
            Gallery.load(p)
        one_line(e)
    for cut in (1, 16, len(good["data"]) // 2):  # the sealed data cut short, the JSON still valid
        p.write_text(json.dumps({**good, "data": good["data"][:-cut]}))
        with pytest.raises(GalleryError):
            Gallery.load(p)


def test_cli_refuses_a_tampered_gallery_in_one_line(tmp_path, runner):
    from facelivenet.cli import cli

    p = tmp_path / "g.json"
    make_gallery(p)
    good = json.loads(p.read_text())
    data = sealed_gallery_parts(p)[1]
    p.write_text(json.dumps({**good, "data": protect._b64(data[:-8])}))  # the sealed bytes cut short
    res = runner.invoke(cli, ["gallery", "list", "--gallery", str(p)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1 and "integrity check" in res.stderr
    res = runner.invoke(cli, ["gallery", "list", "--gallery", str(p), "--json"])
    assert res.exit_code == 2 and json.loads(res.stdout)["error"]["code"] == "gallery_tampered"


# ------------------------------------------------------------------------------ upgrade


def _plain_v1(path: Path, names=("alice", "bob")) -> dict:
    """A plain gallery as an older facelivenet wrote it (names as they were typed)."""
    g = Gallery(FP_X, D, model_source="x.keras")
    for i, n in enumerate(names):
        g.add(f"person{i}", unit(i + 1, 1))
    doc = g.to_dict()
    for identity, n in zip(doc["identities"], names):
        identity["name"] = n
    path.write_text(json.dumps(doc))
    return doc


def test_plain_gallery_asks_for_upgrade_then_upgrade_protects_it(tmp_path, runner):
    from facelivenet.cli import cli

    p = tmp_path / "old.json"
    doc = _plain_v1(p)
    nfd = unicodedata.normalize("NFD", "José")
    doc["identities"][1]["name"] = nfd
    p.write_text(json.dumps(doc))
    res = runner.invoke(cli, ["gallery", "list", "--gallery", str(p)])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert f"facelivenet gallery upgrade {p}" in res.stderr
    res = runner.invoke(cli, ["gallery", "upgrade", str(p), "--json", "-q"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out == {"gallery": str(p), "upgraded": True, "identities": 2, "fingerprint": FP_X, "version": 2}
    assert "alice" not in p.read_text() and stat.S_IMODE(p.stat().st_mode) == 0o600
    g = Gallery.load(p)
    assert g.names() == ["alice", "José"] and "José" in g and nfd in g  # stored NFC, found either way
    res = runner.invoke(cli, ["gallery", "upgrade", str(p)])
    assert res.exit_code == 0 and res.stdout.startswith("already protected")


def test_upgrade_refuses_names_that_collapse_or_look_alike(tmp_path):
    p = tmp_path / "old.json"
    _plain_v1(p, names=("José", unicodedata.normalize("NFD", "José")))
    with pytest.raises(GalleryError, match="appears twice"):
        upgrade_gallery(p)
    _plain_v1(p, names=("olga", "оlga"))  # Cyrillic о
    with pytest.raises(GalleryError, match="look alike") as e:
        upgrade_gallery(p)
    one_line(e)
    assert json.loads(p.read_text())["version"] == 1  # left as it was


# ------------------------------------------------------------------------------ names


def test_nfc_and_nfd_names_are_one_identity(tmp_path):
    p = tmp_path / "g.json"
    g = make_gallery(p, names=("José",))
    nfd = unicodedata.normalize("NFD", "José")
    assert nfd != "José"
    g.add(nfd, unit(7))
    assert g.names() == ["José"] and len(g.embeddings(nfd)) == 3
    g.add("ｊｏｓｅｆ", unit(8))  # full-width letters: NFKC makes them ASCII
    assert "josef" in g.names()


@pytest.mark.parametrize("lookalike", ["аlice", "ALICE", "Alice", "alicе", "αlice", "ΑLICE", "аlicе"])
def test_confusable_names_are_refused(tmp_path, lookalike):
    g = make_gallery(tmp_path / "g.json", names=("alice",))
    with pytest.raises(GalleryError, match="looks like the enrolled identity 'alice'") as e:
        g.add(lookalike, unit(9))
    one_line(e)
    assert g.names() == ["alice"]


def test_skeleton_keeps_distinct_names_apart():
    assert skeleton("Olga") == skeleton("Оlga") == skeleton("0lga")
    assert skeleton("alice") != skeleton("alicia")
    assert skeleton("Zoë") != skeleton("Zoe")  # an accent is not a look-alike letter


# ------------------------------------------------------------------------------ concurrency


class _PrecomputedModel:
    """A stand-in model: embeddings given up front (no network), so the race is fast."""

    def __init__(self, embeddings, delay=0.0):
        self._emb = np.asarray(embeddings, np.float32)
        self.delay = delay
        self.network = SimpleNamespace(network_config=SimpleNamespace(to_dict=lambda: {"precomputed": D}),
                                       weights=[])
        self.config = SimpleNamespace(embedding_size=D, verification_threshold=1.0)

    def analyze(self, crops):
        time.sleep(self.delay)
        return SimpleNamespace(embeddings=self._emb[: len(crops)])


_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from PIL import Image
    sys.path.insert(0, {tests!r})
    from test_gallery_protect import _PrecomputedModel, unit
    from facelivenet.auth.gallery import enroll, whole_image
    name, seed, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    img = {tmp!r} + f"/{{name}}.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    while time.time() < start:
        time.sleep(0.005)
    r = enroll({gallery!r}, name, [img], _PrecomputedModel(unit(seed), delay=0.3), cropper=whole_image)
    print(r.name, r.identities)
""")


def test_concurrent_enrolments_keep_every_identity(tmp_path, config_home):
    gallery = tmp_path / "shared.json"
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(tests=str(ROOT / "tests"), tmp=str(tmp_path), gallery=str(gallery)))
    names = ["ann", "ben", "cat", "dan"]
    start = time.time() + 2.0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FACELIVENET_CONFIG_DIR": str(config_home)}
    procs = [subprocess.Popen([sys.executable, str(script), n, str(i + 1), str(start)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, n in enumerate(names)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    g = Gallery.load(gallery)
    assert sorted(g.names()) == names  # every process's identity is there
    assert sorted(int(o.split()[1]) for o, _ in outs) == [1, 2, 3, 4]  # each saw the ones before it


def test_removal_takes_the_lock_and_rereads(tmp_path):
    p = tmp_path / "g.json"
    make_gallery(p, names=("alice", "bob"))
    stale = Gallery.load(p)  # an editor holding an old copy
    with edit_gallery(p) as g:
        g.add("carol", unit(5))
    removed, left = remove_identity(p, "bob")
    assert removed.name == "bob" and left == 2
    assert Gallery.load(p).names() == ["alice", "carol"] and "bob" in stale
    assert (tmp_path / "g.json.lock").exists()


def test_failed_edit_leaves_the_gallery_as_it_was(tmp_path):
    p = tmp_path / "g.json"
    make_gallery(p)
    before = p.read_bytes()
    with pytest.raises(GalleryError):
        with edit_gallery(p) as g:
            g.add("carol", unit(5))
            g.add("cаrol", unit(6))  # Cyrillic а: refused, nothing written
    assert p.read_bytes() == before


def test_symlinked_gallery_is_updated_at_its_target(tmp_path, runner):
    from facelivenet.cli import cli

    from PIL import Image

    real = tmp_path / "store" / "people.json"
    real.parent.mkdir()
    img = tmp_path / "face.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    enroll(real, "alice", [img], _PrecomputedModel(unit(2)))
    link = tmp_path / "people.json"
    link.symlink_to(real)
    r = enroll(link, "bob", [img], _PrecomputedModel(unit(3)))
    assert (r.identities, r.created) == (2, False)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert Gallery.load(real).names() == ["alice", "bob"]
    res = runner.invoke(cli, ["gallery", "remove", "alice", "--gallery", str(link), "--json"])
    assert res.exit_code == 0, res.output
    assert link.is_symlink() and Gallery.load(real).names() == ["bob"]
    assert (real.parent / "people.json.lock").exists() and not (tmp_path / "people.json.lock").exists()


def test_enroll_into_a_new_gallery_via_a_dangling_link(tmp_path):
    real = tmp_path / "store" / "new.json"
    real.parent.mkdir()
    link = tmp_path / "new.json"
    link.symlink_to(real)
    img = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    r = enroll(link, "ann", [img], _PrecomputedModel(unit(4)))
    assert r.created and link.is_symlink() and Gallery.load(real).names() == ["ann"]
    assert open_gallery(link, _PrecomputedModel(unit(4))).names() == ["ann"]
