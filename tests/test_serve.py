"""`facelivenet serve` (issue 16): every endpoint and error status with FastAPI's TestClient."""

from __future__ import annotations

import re
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from facelivenet.auth.challenge import DEFAULT_CHALLENGE_CHOICES, DEFAULT_CHALLENGE_LENGTH, MOVES, step_instruction  # noqa: E402
from facelivenet.auth.limits import LimitPolicy, identity_key  # noqa: E402
from facelivenet.serve import ServeSettings, create_app  # noqa: E402

from conftest import assert_contract  # noqa: E402
from test_verify_video import _face_frame, face_clip  # noqa: E402,F401 (fixture)

KEY = bytes(range(32))
HEADERS = {"X-API-Key": KEY.hex()}


@pytest.fixture(scope="module")
def auth(tiny_model):
    from facelivenet.facade import FaceAuth

    return FaceAuth(tiny_model)


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "me.png"
    cv2.imwrite(str(path), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """The uploads' temporary folders go here, so the tests can see that none is left."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def uploads_left(tmp: Path) -> list[Path]:
    """Upload folders left in ``tmp`` (TensorFlow's autograph may write its own files there)."""
    return [p for p in tmp.iterdir() if p.name.startswith("facelivenet-upload-")]


def make_client(tmp_path, auth, **overrides) -> TestClient:
    settings = dict(state_dir=tmp_path / "state", gallery=tmp_path / "people.json", api_key=KEY)
    settings.update(overrides)
    return TestClient(create_app(ServeSettings(**settings), auth=auth), raise_server_exceptions=False)


def enroll(client, photo, name="astro"):
    with open(photo, "rb") as f:
        res = client.post("/v1/enroll", data={"name": name}, files={"photos": ("me.png", f, "image/png")},
                          headers=HEADERS)
    assert res.status_code == 201, res.text
    return res.json()


def upload(client, challenge_id, clip, name="clip.mp4"):
    with open(clip, "rb") as f:
        return client.post(f"/v1/challenges/{challenge_id}/video", files={"clip": (name, f, "video/mp4")})


def challenge(client, identity="astro"):
    res = client.post("/v1/challenges", json={"identity": identity})
    assert res.status_code == 201, res.text
    return res.json()


def assert_error(res, status, code):
    assert res.status_code == status, res.text
    body = res.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"], body
    assert "Traceback" not in res.text and "/tmp" not in body["error"]["message"]
    return body["error"]["message"]


@pytest.fixture
def client(tmp_path, auth, photo, private_tmp):
    c = make_client(tmp_path, auth)
    enroll(c, photo)
    return c


def test_health_page_and_openapi(client):
    assert client.get("/healthz").json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and "getUserMedia" in client.get("/static/app.js").text
    assert "<video" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]  # no foreign script or connection
    assert page.headers["x-content-type-options"] == "nosniff"
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/v1/challenges", "/v1/challenges/{challenge_id}/video", "/v1/enroll", "/v1/gallery",
              "/v1/gallery/{name}", "/v1/compare", "/v1/analyze", "/healthz"):
        assert p in paths
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    assert_error(client.get("/v1/challenges"), 405, "method_not_allowed")
    docs = client.get("/docs")  # Swagger UI, every file from this server (no CDN)
    assert docs.status_code == 200 and "SwaggerUIBundle" in docs.text and "/openapi.json" in docs.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert sorted(assets) == ["/docs-assets/favicon-32x32.png", "/docs-assets/swagger-ui-bundle.js",
                              "/docs-assets/swagger-ui.css"], assets
    for url in assets:
        assert client.get(url).status_code == 200, url
    assert "SwaggerUIBundle" in client.get("/docs-assets/swagger-ui-bundle.js").text
    assert client.get("/redoc").status_code == 404


def test_a_challenge_is_bound_to_an_enrolled_identity(client):
    c = challenge(client)
    assert c["identity"] == "astro" and len(c["id"]) >= 32 and c["expressions"]
    assert 170 < c["expires_in"] <= 180 and c["expiry"] - c["issued"] == 180
    assert challenge(client)["id"] != c["id"]
    # The library's default challenge (issue 18: more than one bit): 3 steps of expressions and head moves.
    drawn = [challenge(client)["expressions"] for _ in range(12)]
    assert all(len(d) == DEFAULT_CHALLENGE_LENGTH and set(d) <= set(DEFAULT_CHALLENGE_CHOICES) for d in drawn)
    assert any(set(d) & set(MOVES) for d in drawn) and len({tuple(d) for d in drawn}) > 3
    assert c["instructions"] == [step_instruction(e) for e in c["expressions"]]
    assert step_instruction("turn_left") == "turn your head to your left" and step_instruction("happy") == "smile"
    assert challenge(client, "\uff41stro")["identity"] == "astro"  # a full-width a: the NFKC name enrolled
    assert_error(client.post("/v1/challenges", json={"identity": " astro"}), 422, "bad_gallery")
    assert "'bob'" in assert_error(client.post("/v1/challenges", json={"identity": "bob"}), 404, "unknown_identity")
    assert_error(client.post("/v1/challenges", json={}), 422, "bad_request")
    assert_error(client.post("/v1/challenges", content=b"not json", headers={"Content-Type": "application/json"}),
                 422, "bad_request")


def test_without_a_gallery_challenges_are_unavailable(tmp_path, auth):
    c = make_client(tmp_path, auth, gallery=None)
    assert_error(c.post("/v1/challenges", json={"identity": "astro"}), 503, "no_gallery")


def test_the_clip_gets_the_decision_document_once(client, face_clip, private_tmp):
    c = challenge(client)
    res = upload(client, c["id"], face_clip)
    assert res.status_code == 200, res.text
    report = assert_contract(res.json())
    assert report["decision"] == "reject" and report["reasons"]
    assert report["challenge"]["expressions"] == c["expressions"] and report["frames_analyzed"] > 0
    assert report["identity"]["reference"] == {"identity": "astro"} and report["clip"] is None
    for f in report["audit"]["frames"]:
        assert f["path"].startswith("/v1/audit/")
        image = client.get(f["path"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert image.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert_error(client.get("/v1/audit/nope/step0-neutral.png"), 404, "not_found")
    assert_error(client.get("/v1/audit/..%2F..%2Fstate/challenges.sqlite3"), 404, "not_found")
    # Spent whatever the outcome.
    assert_error(upload(client, c["id"], face_clip), 409, "challenge_used")
    assert_error(upload(client, "no-such-challenge", face_clip), 404, "challenge_not_found")
    assert uploads_left(private_tmp) == []  # every upload folder was removed


def test_an_unreadable_upload_does_not_spend_the_challenge(client, face_clip, tmp_path, private_tmp):
    c = challenge(client)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01 this is not a video" * 100)
    msg = assert_error(upload(client, c["id"], junk), 422, "bad_video")
    assert "still open" in msg
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert_error(upload(client, c["id"], empty), 422, "bad_input")
    assert upload(client, c["id"], face_clip).status_code == 200
    assert uploads_left(private_tmp) == []


def test_an_expired_challenge_is_gone(client, face_clip):
    c = challenge(client)
    store = client.app.state.service.store
    store.clock = lambda: c["expiry"] + 1
    assert_error(upload(client, c["id"], face_clip), 410, "challenge_expired")


def test_size_duration_and_resolution_caps(tmp_path, auth, photo, face_clip, private_tmp):
    small = make_client(tmp_path, auth, max_upload_bytes=1000)
    enroll(small, photo)
    assert_error(upload(small, challenge(small)["id"], face_clip), 413, "too_large")
    huge = tmp_path / "huge.mp4"
    huge.write_bytes(b"\0" * (3 << 20))
    big = make_client(tmp_path, auth, max_upload_bytes=10, max_photo_bytes=10)
    assert_error(upload(big, "x", huge), 413, "too_large")  # the Content-Length alone is refused
    # Chunked, without a Content-Length: counted as it arrives, refused past the cap.
    boundary = "capboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"clip\"; filename=\"c.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode()
    sent = []

    def chunks():
        yield head
        for _ in range(3 << 4):  # 3 MiB in 64 KiB chunks, over the 1 MiB + slack cap
            sent.append(1)
            yield b"\0" * (1 << 16)
        yield f"\r\n--{boundary}--\r\n".encode()

    res = big.post("/v1/challenges/x/video", content=chunks(),
                   headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert "content-length" not in {k.lower() for k in res.request.headers}
    assert "limit of 1,048,616 bytes" in assert_error(res, 413, "too_large")
    small_chunked = big.post("/v1/challenges/x/video", content=iter([head, b"\0" * 100, b"\r\n--capboundary--\r\n"]),
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert small_chunked.status_code != 413, small_chunked.text  # under the cap: the route answers
    short = make_client(tmp_path, auth, max_clip_seconds=1.0)
    assert "at most 1 s" in assert_error(upload(short, challenge(short)["id"], face_clip), 422, "clip_refused")
    narrow = make_client(tmp_path, auth, max_clip_side=200)
    c = challenge(narrow)
    assert "320x320" in assert_error(upload(narrow, c["id"], face_clip), 422, "clip_refused")
    assert uploads_left(private_tmp) == []


def test_webm_decodes_like_mp4(client, face_clip, tmp_path):
    import imageio_ffmpeg
    import subprocess

    for codec in ("libvpx", "libvpx-vp9"):
        webm = tmp_path / f"{codec}.webm"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(face_clip),
                        "-c:v", codec, "-f", "webm", "-live", "1", str(webm)], check=True)
        res = upload(client, challenge(client)["id"], webm, "answer.webm")
        assert res.status_code == 200, res.text
        assert assert_contract(res.json())["frames_analyzed"] >= 10


def test_failed_attempts_lock_the_identity_and_the_client(tmp_path, auth, photo, face_clip):
    c = make_client(tmp_path, auth, limits=LimitPolicy(max_failures=2))
    enroll(c, photo)
    enroll(c, photo, "twin")
    for _ in range(2):
        assert upload(c, challenge(c)["id"], face_clip).json()["decision"] == "reject"
    res = c.post("/v1/challenges", json={"identity": "astro"})
    msg = assert_error(res, 429, "locked_out")
    assert 899 <= int(res.headers["Retry-After"]) <= 900 and "2 failed attempts" in msg
    # The client is locked too: another identity from the same client is refused.
    assert_error(c.post("/v1/challenges", json={"identity": "twin"}), 429, "locked_out")


def test_asking_for_names_not_enrolled_locks_the_client(tmp_path, auth, photo):
    """Probing the gallery for who is enrolled counts as failed attempts of the client."""
    c = make_client(tmp_path, auth, limits=LimitPolicy(max_failures=3))
    enroll(c, photo)
    for name in ("bob", "carol", "dave"):
        assert_error(c.post("/v1/challenges", json={"identity": name}), 404, "unknown_identity")
    assert_error(c.post("/v1/challenges", json={"identity": "erin"}), 429, "locked_out")
    assert_error(c.post("/v1/challenges", json={"identity": "astro"}), 429, "locked_out")


def test_an_identity_locked_after_its_challenge_gets_a_locked_out_decision(client, face_clip):
    c = challenge(client)
    service = client.app.state.service
    for _ in range(5):
        service.limiter.record([identity_key("astro")], success=False)
    report = assert_contract(upload(client, c["id"], face_clip).json())
    assert [r["code"] for r in report["reasons"]] == ["locked_out"] and report["frames_analyzed"] == 0
    assert_error(upload(client, c["id"], face_clip), 409, "challenge_used")


def test_two_uploads_racing_on_one_challenge_exactly_one_is_evaluated(client, face_clip):
    service = client.app.state.service
    evaluated = []
    original = service.authenticate

    def counting(*args, **kwargs):
        evaluated.append(args[0].id)
        return original(*args, **kwargs)

    service.authenticate = counting
    c = challenge(client)
    barrier = threading.Barrier(2)
    answers = []

    def go():
        barrier.wait()
        answers.append(upload(client, c["id"], face_clip))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in answers) == [200, 409]
    assert evaluated == [c["id"]]


def test_the_store_spends_a_challenge_once_among_racing_processes(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    from facelivenet.serve.store import SQLiteChallengeStore

    store = SQLiteChallengeStore(tmp_path / "c.sqlite3")
    c = store.issue("astro", ("happy",), 60)
    with ProcessPoolExecutor(4) as pool:
        spent = list(pool.map(_spend, [(store.path, c.id)] * 8))
    assert spent.count(True) == 1
    assert store.get(c.id).spent_at is not None and store.spend(c.id) is None
    assert store.spend("unknown") is None and store.get("unknown") is None
    now = [1000.0]
    timed = SQLiteChallengeStore(tmp_path / "t.sqlite3", clock=lambda: now[0])
    x = timed.issue("astro", ("happy",), 60)
    now[0] += 61
    assert timed.spend(x.id) is None and timed.get(x.id).spent_at is None  # expired: not spendable


def _spend(args) -> bool:
    from facelivenet.serve.store import SQLiteChallengeStore

    path, challenge_id = args
    return SQLiteChallengeStore(path).spend(challenge_id) is not None


def test_the_gallery_endpoints_need_the_api_key(tmp_path, auth, photo):
    c = make_client(tmp_path, auth)
    assert_error(c.get("/v1/gallery"), 401, "unauthorized")
    assert_error(c.get("/v1/gallery", headers={"X-API-Key": KEY.hex()[:-1] + "0"}), 401, "unauthorized")
    assert_error(c.delete("/v1/gallery/astro"), 401, "unauthorized")
    with open(photo, "rb") as f:
        assert_error(c.post("/v1/enroll", data={"name": "x"}, files={"photos": ("a.png", f)}), 401, "unauthorized")
    done = enroll(c, photo)
    assert done["name"] == "astro" and done["added"] == 1 and "gallery" not in done
    assert c.get("/v1/gallery", headers=HEADERS).json() == {"identities": ["astro"]}
    assert_error(c.delete("/v1/gallery/bob", headers=HEADERS), 404, "unknown_identity")
    assert c.delete("/v1/gallery/astro", headers=HEADERS).json() == {"removed": "astro", "embeddings": 1,
                                                                    "identities": 0}
    assert c.get("/v1/gallery", headers=HEADERS).json() == {"identities": []}
    off = make_client(tmp_path, auth, api_key=None)
    assert_error(off.get("/v1/gallery", headers=HEADERS), 403, "forbidden")
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 120, 3), 90, np.uint8))
    with open(blank, "rb") as f:
        res = c.post("/v1/enroll", data={"name": "x"}, files={"photos": ("b.png", f)}, headers=HEADERS)
    assert "no face found" in assert_error(res, 422, "face_count")


def test_compare_and_analyze_photos(client, photo, tmp_path):
    with open(photo, "rb") as a, open(photo, "rb") as b:
        res = client.post("/v1/compare", files={"a": ("a.png", a), "b": ("b.png", b)})
    assert res.status_code == 200 and res.json()["same"] is True and res.json()["distance"] < 1e-3
    with open(photo, "rb") as a:
        res = client.post("/v1/analyze", files=[("images", ("a.png", a)), ("images", ("b.png", open(photo, "rb")))])
    faces = res.json()["images"]
    assert len(faces) == 2 and len(faces[0]["faces"]) == 1 and faces[0]["faces"][0]["expression"]
    text = tmp_path / "x.png"
    text.write_bytes(b"not an image")
    with open(text, "rb") as a:
        assert_error(client.post("/v1/analyze", files={"images": ("x.png", a)}), 422, "bad_image")
    assert_error(client.post("/v1/compare", files={}), 422, "bad_request")


def test_errors_are_json_never_a_traceback(client, monkeypatch):
    def broken():
        raise RuntimeError("secret internals")

    monkeypatch.setattr(client.app.state.service, "names", broken)
    res = client.get("/v1/gallery", headers=HEADERS)
    msg = assert_error(res, 500, "internal")
    assert "secret" not in msg


def test_cors_is_off_by_default_and_on_when_asked(tmp_path, auth):
    pre = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    off = make_client(tmp_path, auth)
    assert "access-control-allow-origin" not in off.options("/v1/challenges", headers=pre).headers
    assert "access-control-allow-origin" not in off.get("/healthz", headers={"Origin": "https://evil.example"}).headers
    on = make_client(tmp_path, auth, cors_origins=("https://app.example",))
    res = on.get("/healthz", headers={"Origin": "https://app.example"})
    assert res.headers["access-control-allow-origin"] == "https://app.example"


def test_serve_command_help_and_bad_key_file(runner, tmp_path):
    from facelivenet.cli import cli

    assert "--api-key-file" in runner.invoke(cli, ["serve", "--help"]).output
    key = tmp_path / "k"
    key.write_text(KEY.hex())
    key.chmod(0o644)
    res = runner.invoke(cli, ["serve", "--api-key-file", str(key), "--state-dir", str(tmp_path / "s")])
    assert res.exit_code == 2 and "chmod 600" in res.stderr and "Traceback" not in res.output
