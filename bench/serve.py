"""Load test of `facelivenet serve`: N concurrent uploads of a real clip, on loopback only.

Starts a server on 127.0.0.1 (a free port, its own state folder, gallery and API key,
in a temporary folder), enrols the person of the clip from its first frame, asks for
N challenges, then uploads the clip to all of them at once (N threads) and prints:

    throughput (decisions / s), latency p50 / p95 / max (s), decisions (accept / reject),
    challenges answered twice (must be 0; a second upload of each is sent and must be 409)

Bounded: at most 50 uploads, and everything stops after --timeout seconds.

    .venv/bin/python bench/serve.py [--clip ../shared/data/videos/d18.mp4] [--n 20] [--workers 2]
                                    [--model M.keras] [--timeout 900] [--expressions surprise]
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
MAX_UPLOADS = 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not answer /healthz in time")


def first_frame_png(clip: Path, out: Path) -> Path:
    import cv2

    cap = cv2.VideoCapture(str(clip))
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise SystemExit(f"{clip}: cannot read its first frame")
    cv2.imwrite(str(out), frame)
    return out


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(ROOT.parent / "shared" / "data" / "videos" / "d18.mp4"))
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", default=None)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--expressions", default="surprise",
                    help="what the server's challenges are drawn from (serve --expressions); the default, "
                         "surprise, is what d18 shows, so every upload is analysed to an accept or a reject "
                         "on its merits rather than stopped at the first step it does not show")
    args = ap.parse_args()
    n = min(args.n, MAX_UPLOADS)
    clip = Path(args.clip)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        tmp = Path(tmp)
        key = tmp / "api.key"
        key.write_text(secrets.token_hex(32))
        key.chmod(0o600)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "facelivenet", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--gallery", str(tmp / "people.json"), "--workers", str(args.workers), "--api-key-file", str(key),
               "--state-dir", str(tmp / "state"), "--attempt-limit", str(10 * n), "--expressions", args.expressions]
        if args.model:
            cmd += ["--model", args.model]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.Popen(cmd, env=env)
        try:
            wait_healthy(url, proc, 600)  # each worker loads the model before it answers
            photo = first_frame_png(clip, tmp / "ref.png")
            with open(photo, "rb") as f:
                res = httpx.post(url + "/v1/enroll", data={"name": "person"}, files={"photos": ("ref.png", f)},
                                 headers={"X-API-Key": key.read_text().strip()}, timeout=300)
            res.raise_for_status()
            challenges = []
            for _ in range(n):
                res = httpx.post(url + "/v1/challenges", json={"identity": "person"}, timeout=30)
                res.raise_for_status()
                challenges.append(res.json())
            data = clip.read_bytes()
            results: list[tuple[int, float, dict]] = [None] * n  # type: ignore[list-item]
            deadline = time.monotonic() + args.timeout
            barrier = threading.Barrier(n)

            def upload(i: int) -> None:
                barrier.wait()
                t0 = time.monotonic()
                try:
                    r = httpx.post(f"{url}/v1/challenges/{challenges[i]['id']}/video",
                                   files={"clip": (clip.name, data, "video/mp4")},
                                   timeout=max(1.0, deadline - time.monotonic()))
                    results[i] = (r.status_code, time.monotonic() - t0, r.json())
                except httpx.HTTPError as exc:
                    results[i] = (0, time.monotonic() - t0, {"error": {"message": str(exc)}})

            start = time.monotonic()
            threads = [threading.Thread(target=upload, args=(i,)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.monotonic() - start
            again = [httpx.post(f"{url}/v1/challenges/{c['id']}/video", files={"clip": (clip.name, data)},
                                timeout=60).status_code for c in challenges]
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
    ok = [r for r in results if r[0] == 200 and "decision" in r[2]]
    latencies = [r[1] for r in ok]
    decisions = [r[2]["decision"] for r in ok]
    print(f"clip {clip.name}, {n} concurrent uploads, {args.workers} worker(s), loopback")
    print(f"decisions: {len(ok)}/{n} ({decisions.count('accept')} accept, {decisions.count('reject')} reject); "
          f"reasons: {sorted({r[2]['reasons'][0]['code'] for r in ok})}")
    if latencies:
        print(f"wall {wall:.1f} s, throughput {len(ok) / wall:.3f} decisions/s, latency p50 "
              f"{percentile(latencies, 50):.1f} s, p95 {percentile(latencies, 95):.1f} s, max {max(latencies):.1f} s")
    print(f"second uploads answered 409 (challenge spent once): {again.count(409)}/{n}")
    failed = [r for r in results if r not in ok]
    for r in failed[:5]:
        print(f"  failed: HTTP {r[0]} {r[2].get('error')}")
    sys.exit(0 if len(ok) == n and again.count(409) == n else 1)


if __name__ == "__main__":
    main()
