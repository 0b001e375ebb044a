"""The HTTP layer of ``facelivenet serve``: FastAPI routes that translate requests into
:class:`~facelivenet.serve.service.Service` calls and answers into JSON.

Every error is ``{"error": {"code", "message"}}`` with a fitting status (never a
traceback); the OpenAPI page is at ``/docs``. :func:`create_app` builds an app from
:class:`~facelivenet.serve.settings.ServeSettings` (the tests use it with FastAPI's
TestClient; ``facelivenet serve`` hands it to uvicorn).
"""

from __future__ import annotations

import hmac
import logging
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, Header, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from swagger_ui_bundle import swagger_ui_path

from facelivenet import __version__
from facelivenet.auth.limits import client_key
from facelivenet.errors import (
    FaceLiveNetError, InputError, ModelLoadError, NonceStoreError, VideoReadError, error_code,
)
from facelivenet.serve.service import ChallengeUnavailable, Service
from facelivenet.serve.settings import ServeSettings
from facelivenet.serve.uploads import ClipRefused, UploadTooLarge, probe_clip, save_upload, upload_dir

log = logging.getLogger("facelivenet.serve")

STATIC = Path(__file__).resolve().parent / "static"
#: Where the OpenAPI page's Swagger UI files (the swagger-ui-bundle wheel's) are served.
DOCS_ASSETS = "/docs-assets"
#: A temporary upload folder's path in a library message (the client is not told where it was).
_UPLOAD_PATH = re.compile(r"\S*facelivenet-upload-[^/\s]+/")
_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 410: "gone", 413: "too_large",
                 422: "unprocessable", 429: "locked_out", 503: "unavailable"}
#: The page runs only its own script, talks only to this server, and is not framed by others.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; "
                               "media-src 'self' blob: mediastream:; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_UNAVAILABLE = {"challenge_not_found": 404, "challenge_used": 409, "challenge_expired": 410}


class ApiError(Exception):
    """An answer other than success: HTTP ``status``, a stable ``code`` and a message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers


class ChallengeRequest(BaseModel):
    identity: str = Field(min_length=1, max_length=200, description="the enrolled identity to authenticate")


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    message = _UPLOAD_PATH.sub("", str(message)).replace("upload-", "")
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _library_error(exc: FaceLiveNetError) -> JSONResponse:
    if isinstance(exc, UploadTooLarge):
        return _error(413, "too_large", str(exc))
    if isinstance(exc, ClipRefused):
        return _error(422, "clip_refused", str(exc))
    if isinstance(exc, InputError):
        return _error(422, error_code(exc), str(exc))
    if isinstance(exc, (NonceStoreError, ModelLoadError)):
        log.error("%s", exc)
        return _error(503, error_code(exc), "the server cannot answer now (see its log)")
    log.error("%s", exc)
    return _error(500, error_code(exc), "the server failed on this request (see its log)")


class BodyCap:
    """ASGI middleware: a request body over ``cap`` bytes is refused with 413 ``too_large``.

    A declared Content-Length over the cap is refused before anything is read; a body
    without one (chunked) is counted as it arrives and refused at the chunk that
    crosses the cap, so no request buffers more than ``cap`` bytes whatever it declares.
    """

    def __init__(self, app: Any, cap: int):
        self.app, self.cap = app, cap

    def _message(self) -> str:
        return f"the request is larger than the server's limit of {self.cap:,} bytes"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.cap:
            await _error(413, "too_large", self._message())(scope, receive, send)
            return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.cap:  # the route's error handler answers 413 too_large
                    raise StarletteHTTPException(413, self._message())
            return message

        await self.app(scope, counted, send)


def create_app(settings: ServeSettings, *, auth: Any = None) -> FastAPI:
    """The app for ``settings``; ``auth`` (a :class:`~facelivenet.facade.FaceAuth`) skips loading the model."""
    service = Service(settings, auth=auth)
    app = FastAPI(title="facelivenet", version=__version__, docs_url=None, redoc_url=None,
                  description="Face verification with expression challenge-response liveness.")
    app.state.service = service
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"],
                           allow_headers=["*"])

    app.add_middleware(BodyCap, cap=max(settings.max_upload_bytes, 4 * settings.max_photo_bytes) + (1 << 20))

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return _error(exc.status, exc.code, str(exc), exc.headers)

    @app.exception_handler(FaceLiveNetError)
    async def library_error(request: Request, exc: FaceLiveNetError):
        return _library_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, _STATUS_CODES.get(exc.status_code, "error"), str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        parts = [f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors()[:5]]
        return _error(422, "bad_request", "; ".join(parts) or "malformed request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, "internal", "the server failed on this request (see its log)")

    def client(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def require_key(x_api_key: str | None) -> None:
        if settings.api_key is None:
            raise ApiError(403, "forbidden", "the admin endpoints are off (start the server with --api-key-file)")
        given = (x_api_key or "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, settings.api_key.hex().encode("ascii")):
            raise ApiError(401, "unauthorized", "missing or wrong X-API-Key")

    def known(name: str) -> None:
        if name not in service.names():
            raise ApiError(404, "unknown_identity", f"no identity {name!r} in the gallery")

    # --- the page, health --------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    @app.get("/static/app.js", include_in_schema=False)
    def script():
        return FileResponse(STATIC / "app.js", media_type="text/javascript", headers=PAGE_HEADERS)

    # The OpenAPI page is Swagger UI from the swagger-ui-bundle wheel, served by us: the
    # browser fetches nothing from a CDN (FastAPI's default page loads it from one).
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="facelivenet API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")

    @app.get("/healthz", summary="liveness of the server")
    def healthz():
        return {"status": "ok", "version": __version__, "model_loaded": service.loaded}

    # --- the offline challenge-response ------------------------------------------------------
    @app.post("/v1/challenges", status_code=201, summary="a single-use challenge for an identity")
    def new_challenge(body: ChallengeRequest, request: Request):
        if settings.gallery is None:
            raise ApiError(503, "no_gallery", "the server has no gallery (start it with --gallery FILE)")
        from facelivenet.auth.gallery import normalize_name

        identity = normalize_name(body.identity)  # the name as enrolled (NFKC)
        lock = service.lockout(identity, client(request))
        if lock is not None:
            raise ApiError(429, "locked_out", lock.reason(settings.limits).message,
                           {"Retry-After": str(lock.retry_after)})
        if identity not in service.names():
            # Asking for names that are not enrolled is how a client would list who is: each
            # such request counts as a failed attempt of the client (locked like failed uploads).
            service.limiter.record([client_key(client(request))], success=False)
            raise ApiError(404, "unknown_identity", f"no identity {identity!r} in the gallery")
        return service.issue(identity).to_dict()

    @app.post("/v1/challenges/{challenge_id}/video", summary="answer a challenge with a clip: the decision")
    def answer(challenge_id: str, request: Request, clip: UploadFile = File(...)):
        if service.store.get(challenge_id) is None:
            raise ApiError(404, "challenge_not_found", "no such challenge")
        with upload_dir() as d:
            path = save_upload(clip.file, d / "clip", settings.max_upload_bytes, "clip")
            try:
                probe_clip(path, max_seconds=settings.max_clip_seconds, max_side=settings.max_clip_side)
            except VideoReadError:
                raise ApiError(422, "bad_video", "the upload is not a readable video clip (MP4 or WebM); "
                                                 "the challenge is still open") from None
            try:
                challenge = service.spend(challenge_id)  # atomic: of two racing uploads, one gets it
            except ChallengeUnavailable as exc:
                raise ApiError(_UNAVAILABLE[exc.code], exc.code, str(exc)) from None
            report, _ = service.authenticate(challenge, path, client(request))
        return report

    @app.get("/v1/audit/{audit_id}/{name}", include_in_schema=False)
    def audit_image(audit_id: str, name: str):
        path = service.audit_file(audit_id, name)
        if path is None:
            raise ApiError(404, "not_found", "no such audit image (they last a few minutes)")
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, no-store"})

    # --- photos --------------------------------------------------------------------------------
    def save_photos(d: Path, files: list[UploadFile]) -> list[Path]:
        if not 1 <= len(files) <= 4:
            raise ApiError(422, "bad_request", "give 1 to 4 photos")
        return [save_upload(f.file, d / f"photo-{i}", settings.max_photo_bytes, "photo") for i, f in enumerate(files)]

    @app.post("/v1/compare", summary="are the faces of two photos the same person?")
    def compare(a: UploadFile = File(...), b: UploadFile = File(...)):
        with upload_dir() as d:
            pa, pb = save_photos(d, [a, b])
            with service.run_lock:
                return service.auth.verify(pa, pb).to_dict()

    @app.post("/v1/analyze", summary="every face of each photo: box, landmarks, expression")
    def analyze(images: list[UploadFile] = File(...)):
        with upload_dir() as d:
            paths = save_photos(d, images)
            with service.run_lock:
                return {"images": [{"faces": [f.to_dict() for f in service.auth.analyze(p)]} for p in paths]}

    # --- gallery (API key) -------------------------------------------------------------------
    @app.post("/v1/enroll", status_code=201, summary="enrol photos of a person (API key)")
    def enroll(name: str = Form(...), photos: list[UploadFile] = File(...),
               x_api_key: str | None = Header(default=None)):
        require_key(x_api_key)
        with upload_dir() as d:
            return service.enroll(name, save_photos(d, photos))

    @app.get("/v1/gallery", summary="the enrolled identities (API key)")
    def gallery(x_api_key: str | None = Header(default=None)):
        require_key(x_api_key)
        return {"identities": service.names()}

    @app.delete("/v1/gallery/{name}", summary="remove an identity (API key)")
    def remove(name: str, x_api_key: str | None = Header(default=None)):
        require_key(x_api_key)
        known(name)
        return service.remove(name)

    return app


__all__ = ["create_app", "ApiError"]
