"""`facelivenet serve` as a real process on 127.0.0.1, over HTTP, and its page in a real browser.

The browser test drives the system's Chromium (``apt-get install chromium``; `.ci/run`
installs it) with Playwright, the camera replaced by a Y4M made from
``../shared/data/videos/d18.mp4``. It skips when Chromium, Playwright or the data is absent.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from conftest import ROOT, assert_contract, shared_data
from test_verify_video import _face_frame, face_clip  # noqa: F401 (fixture)

httpx = pytest.importorskip("httpx")
pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`facelivenet serve` in a child process, on a free loopback port; stopped on exit."""

    def __init__(self, tmp: Path, model: Path | None):
        self.key = secrets.token_hex(32)
        key_file = tmp / "api.key"
        key_file.write_text(self.key)
        key_file.chmod(0o600)
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "facelivenet", "serve", "--port", str(port), "--gallery", str(tmp / "g.json"),
               "--api-key-file", str(key_file), "--state-dir", str(tmp / "state")]
        if model is not None:
            cmd += ["--model", str(model)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.log = open(tmp / "server.log", "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, (tmp / "server.log").read_text()
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < end, "the server did not answer /healthz within 120 s"
            time.sleep(0.3)

    def enroll(self, name: str, photo: Path) -> None:
        with open(photo, "rb") as f:
            res = httpx.post(self.url + "/v1/enroll", data={"name": name}, files={"photos": ("p.png", f)},
                             headers={"X-API-Key": self.key}, timeout=120)
        assert res.status_code == 201, res.text

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(20)
        self.log.close()


@pytest.fixture
def server_factory(tmp_path):
    servers = []

    def start(model):
        servers.append(Server(tmp_path, model))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def test_the_real_server_answers_over_http(server_factory, tiny_model_path, face_clip, tmp_path):
    server = server_factory(tiny_model_path)
    assert httpx.get(server.url + "/healthz", timeout=10).json()["model_loaded"] is True  # loaded at start-up
    photo = tmp_path / "me.png"
    cv2.imwrite(str(photo), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    server.enroll("astro", photo)
    c = httpx.post(server.url + "/v1/challenges", json={"identity": "astro"}, timeout=30).json()
    with open(face_clip, "rb") as f:
        res = httpx.post(f"{server.url}/v1/challenges/{c['id']}/video", files={"clip": ("c.mp4", f)}, timeout=120)
    assert res.status_code == 200, res.text
    report = assert_contract(res.json())
    assert report["challenge"]["expressions"] == c["expressions"] and report["frames_analyzed"] > 0
    with open(face_clip, "rb") as f:
        again = httpx.post(f"{server.url}/v1/challenges/{c['id']}/video", files={"clip": ("c.mp4", f)}, timeout=60)
    assert again.status_code == 409 and again.json()["error"]["code"] == "challenge_used"
    assert httpx.get(server.url + "/docs", timeout=10).status_code == 200
    assert httpx.get(server.url + "/v1/gallery", timeout=10).status_code == 401


def _y4m(clip: Path, out: Path) -> Path:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(clip),
                    "-vf", "tpad=start_mode=clone:start_duration=1,"  # a second of the first (neutral) frame: the
                    # recording starts a moment after the camera opens
                    "scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2,fps=30", "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", str(out)], check=True)
    return out


def test_the_page_films_uploads_and_shows_the_apis_decision(server_factory, tmp_path):
    """With the default model: d18 holds Neutral in its first seconds, so at least that
    step's audit image is shown (the expression asked for is drawn at random)."""
    if not CHROMIUM.exists():
        pytest.skip("no system Chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    d18 = shared_data("videos", "d18.mp4")
    y4m = _y4m(d18, tmp_path / "camera.y4m")
    cap = cv2.VideoCapture(str(d18))
    ok, first = cap.read()
    cap.release()
    assert ok
    photo = tmp_path / "d18.png"
    cv2.imwrite(str(photo), first)
    server = server_factory(None)
    server.enroll("d18", photo)

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={y4m}"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)
        try:
            page = browser.new_page()
            page.goto(server.url + "/")
            page.fill("#identity", "d18")
            with page.expect_response(lambda r: r.url.endswith("/video"), timeout=90_000) as answer:
                page.click("#start")
            status, api = answer.value.status, answer.value.json()
            page.wait_for_selector("#decision:not([hidden])", timeout=30_000)
            page.screenshot(path=str(tmp_path / "decision.png"), full_page=True)
            shown = {
                "result": page.inner_text("#result"),
                "score": page.inner_text("#score"),
                "codes": page.eval_on_selector_all("#reasons li", "els => els.map(e => e.dataset.code)"),
                "images": page.eval_on_selector_all("#audit img", "els => els.map(e => e.getAttribute('src'))"),
            }
            loaded = page.eval_on_selector_all("#audit img", "els => els.map(e => e.complete && e.naturalWidth > 0)")
        finally:
            browser.close()
    assert status == 200, api
    assert_contract(api)
    assert shown["result"] == {"accept": "Accepted", "reject": "Rejected"}[api["decision"]]
    assert shown["score"] == f"{api['score']:.4f}"
    assert shown["codes"] == [r["code"] for r in api["reasons"]]
    assert shown["images"] == [f["path"] for f in api["audit"]["frames"]] and all(loaded)
    assert api["audit"]["frames"][0]["phase"] == "neutral"  # the real face, held neutral, was seen
    assert api["frames_analyzed"] > 30  # about 5 s of camera at up to 30 fps
    assert (tmp_path / "decision.png").stat().st_size > 10_000
