"""The gallery: identities as face embeddings (never images), tied to one model.

The gallery document (the plaintext a protected file seals, and the whole of a
version-1 plain file) is JSON::

    {"format": "facelivenet-gallery", "version": 1,
     "model": {"fingerprint": "sha256:…", "embedding_size": 512, "source": "models/x.keras"},
     "identities": [{"name": "alice", "embeddings": [[…], …], "sources": ["a1.jpg"],
                     "enrolled": "2026-11-22T12:00:00Z"}]}

Embeddings only make sense for the model that computed them, so every gallery records
the :func:`~facelivenet.auth.gallery.fingerprint.model_fingerprint` of its model and
:meth:`Gallery.check_model` refuses another one. Files are sealed, written and locked
by :mod:`facelivenet.auth.gallery.protect`; documents are read with strict
validation: any malformed one raises :class:`GalleryError`, never anything else.
Names are NFKC-normalised and look-alike names refused (:mod:`.names`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from facelivenet.auth.gallery import protect
from facelivenet.auth.gallery.fingerprint import model_fingerprint, short_fingerprint
from facelivenet.auth.gallery.names import check_not_confusable, normalize_name, skeleton
from facelivenet.distances import identity_distances
from facelivenet.errors import GalleryError, GalleryModelMismatch

GALLERY_FORMAT = protect.GALLERY_FORMAT
#: Version of the gallery document (sealed inside a version-2 protected file).
DOCUMENT_VERSION = protect.PLAIN_VERSION
#: Tolerance on the unit norm of stored embeddings.
NORM_TOLERANCE = 1e-3


# --------------------------------------------------------------------------- gallery


@dataclass
class Identity:
    """One enrolled person: (K, D) unit embeddings, the file names they came from."""

    name: str
    embeddings: np.ndarray
    sources: list[str] = field(default_factory=list)
    enrolled: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "embeddings": [[float(v) for v in row] for row in self.embeddings],
            "sources": list(self.sources),
            "enrolled": self.enrolled,
        }


class Gallery:
    """Enrolled identities for the model with fingerprint ``fingerprint``.

    Attributes:
        fingerprint: :func:`model_fingerprint` of the model that made the embeddings.
        embedding_size: D.
        model_source: where that model was loaded from (informative only).
        path: the file this gallery was loaded from or last saved to, if any.
    """

    def __init__(self, fingerprint: str, embedding_size: int, *, model_source: str | None = None,
                 identities: Iterable[Identity] = (), path: Path | None = None):
        self.fingerprint = fingerprint
        self.embedding_size = int(embedding_size)
        self.model_source = model_source
        self.path = path
        self._identities: dict[str, Identity] = {}
        self._skeletons: dict[str, str] = {}  # what each name looks like -> the name
        for identity in identities:
            if identity.name in self._identities:
                raise GalleryError(f"{self._where()}identity {identity.name!r} appears twice")
            other = self._skeletons.get(skeleton(identity.name))
            if other is not None:
                raise GalleryError(f"{self._where()}identities {other!r} and {identity.name!r} look alike")
            self._identities[identity.name] = identity
            self._skeletons[skeleton(identity.name)] = identity.name

    @classmethod
    def for_model(cls, model: Any) -> "Gallery":
        """An empty gallery for ``model`` (a FaceModel)."""
        source = getattr(model, "source", None)
        return cls(model_fingerprint(model), model.config.embedding_size,
                   model_source=str(source) if source else None)

    # ------------------------------------------------------------ identities

    def names(self) -> list[str]:
        return list(self._identities)

    def __len__(self) -> int:
        return len(self._identities)

    def __contains__(self, name: object) -> bool:
        try:
            return normalize_name(name) in self._identities
        except GalleryError:
            return False

    def get(self, name: str) -> Identity:
        """The identity ``name`` (looked up in NFKC form)."""
        try:
            return self._identities[normalize_name(name)]
        except KeyError:
            known = ", ".join(map(repr, self._identities)) or "none"
            raise GalleryError(f"{self._where()}no identity {name!r} (enrolled: {known})") from None

    def embeddings(self, name: str) -> np.ndarray:
        """(K, D) float32 embeddings of ``name``."""
        return self.get(name).embeddings

    def add(self, name: str, embeddings: np.ndarray, sources: Sequence[str] = (), *,
            replace: bool = False, now: _dt.datetime | None = None) -> Identity:
        """Add embeddings to ``name`` (a new identity, or appended; replaced with ``replace``).

        ``name`` is stored in NFKC form; a new name that looks like an enrolled one
        (:func:`~facelivenet.auth.gallery.names.skeleton`) is refused.
        """
        name = normalize_name(name)
        if name not in self._identities:
            check_not_confusable(name, [self._skeletons.get(skeleton(name), name)])
        emb = _check_embeddings(np.asarray(embeddings, dtype=np.float32), self.embedding_size, name)
        if len(sources) not in (0, emb.shape[0]):
            raise GalleryError(f"{len(sources)} source names for {emb.shape[0]} embeddings")
        sources = [Path(str(s)).name for s in sources]
        stamp = (now or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
        old = self._identities.get(name)
        if old is not None and not replace:
            emb = np.concatenate([old.embeddings, emb])
            sources = old.sources + sources
        identity = Identity(name, emb, sources, stamp)
        self._identities[name] = identity
        self._skeletons[skeleton(name)] = name
        return identity

    def remove(self, name: str) -> Identity:
        identity = self.get(name)
        del self._identities[identity.name]
        del self._skeletons[skeleton(identity.name)]
        return identity

    def distances(self, name: str, embeddings: np.ndarray) -> np.ndarray:
        """(N,) squared L2 distance of each of N embeddings to ``name``'s nearest one."""
        return identity_distances(embeddings, self.embeddings(name))

    # ------------------------------------------------------------ model check

    def check_model(self, fingerprint: str, model_source: str | None = None) -> None:
        """Raise :class:`GalleryModelMismatch` unless the gallery was made by this model."""
        if fingerprint == self.fingerprint:
            return
        made = f" ({self.model_source})" if self.model_source else ""
        current = f" ({model_source})" if model_source else ""
        raise GalleryModelMismatch(
            f"{self._where()}this gallery was enrolled with another model: fingerprint "
            f"{short_fingerprint(self.fingerprint)}{made}, but the model in use is "
            f"{short_fingerprint(fingerprint)}{current}; embeddings of different models cannot "
            "be compared. Use the model the gallery was made with (--model), or enrol again "
            "into a new gallery with this one"
        )

    # ------------------------------------------------------------ files

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": GALLERY_FORMAT,
            "version": DOCUMENT_VERSION,
            "model": {"fingerprint": self.fingerprint, "embedding_size": self.embedding_size,
                      "source": self.model_source},
            "identities": [i.to_dict() for i in self._identities.values()],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":")) + "\n"

    def save(self, path: str | os.PathLike | None = None, *, key: protect.GalleryKey | None = None) -> Path:
        """Seal the gallery and write it to ``path`` (default: where it came from) atomically.

        A symlinked gallery is written at its target. ``key`` defaults to the user's
        gallery key (created when missing).
        """
        target = Path(path) if path is not None else self.path
        if target is None:
            raise GalleryError("no file to save the gallery to")
        if target.is_dir():
            raise GalleryError(f"{target}: is a directory, not a gallery file")
        sealed = protect.seal(self.to_json().encode("utf-8"), key or protect.gallery_key(create=True))
        protect.write_file(target, sealed)
        self.path = target
        return target

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "<gallery>") -> "Gallery":
        """Parse a gallery document; :class:`GalleryError` naming ``source`` when malformed."""
        try:
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            data = json.loads(text, parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise GalleryError(f"{source}: not a gallery file (not JSON)") from None
        return cls._from_dict(data, source)

    @classmethod
    def load(cls, path: str | os.PathLike, *, key: protect.GalleryKey | None = None,
             allow_plain: bool = False) -> "Gallery":
        """Read a protected gallery file (authenticated, decrypted, strictly validated).

        A version-1 plain gallery is refused (run ``facelivenet gallery upgrade``)
        unless ``allow_plain``; its names are then NFKC-normalised.
        """
        p = Path(path)
        container = protect.parse_container(protect.read_file(p), str(p))
        if allow_plain and protect.is_plain(container):
            gallery = cls._from_dict(container, str(p), normalize=True)
        else:
            document = protect.unseal(container, key, str(p))
            gallery = cls.from_json(document, str(p))
        gallery.path = p
        return gallery

    @classmethod
    def _from_dict(cls, data: Any, source: str, *, normalize: bool = False) -> "Gallery":
        def bad(what: str) -> GalleryError:
            return GalleryError(f"{source}: not a valid gallery file ({what})")

        if not isinstance(data, dict) or data.get("format") != GALLERY_FORMAT:
            raise bad(f"no \"format\": \"{GALLERY_FORMAT}\"")
        if type(data.get("version")) is not int or data["version"] != DOCUMENT_VERSION:
            raise bad(f"unsupported version {data.get('version')!r}")
        if set(data) != {"format", "version", "model", "identities"}:
            raise bad(f"unexpected keys {sorted(map(str, data))}")
        model = data["model"]
        if not isinstance(model, dict) or set(model) != {"fingerprint", "embedding_size", "source"}:
            raise bad("\"model\" must have fingerprint, embedding_size and source")
        fingerprint, size, msource = model["fingerprint"], model["embedding_size"], model["source"]
        if not isinstance(fingerprint, str) or not fingerprint.startswith("sha256:") or len(fingerprint) != 71:
            raise bad("bad model fingerprint")
        if type(size) is not int or not 1 <= size <= 65536:
            raise bad(f"bad embedding_size {size!r}")
        if msource is not None and not isinstance(msource, str):
            raise bad("bad model source")
        if not isinstance(data["identities"], list):
            raise bad("\"identities\" is not a list")
        identities = []
        for i, item in enumerate(data["identities"]):
            if not isinstance(item, dict) or set(item) != {"name", "embeddings", "sources", "enrolled"}:
                raise bad(f"identity #{i + 1} must have name, embeddings, sources and enrolled")
            try:
                name = normalize_name(item["name"])
            except GalleryError as exc:
                raise bad(f"identity #{i + 1}: {exc}") from None
            if name != item["name"] and not normalize:
                raise bad(f"identity #{i + 1}: the name {item['name']!r} is not in NFKC form")
            rows = item["embeddings"]
            if (not isinstance(rows, list) or not rows
                    or not all(isinstance(r, list) and len(r) == size for r in rows)
                    or not all(_is_number(v) for r in rows for v in r)):
                raise bad(f"identity {name!r}: embeddings must be a non-empty list of {size} numbers each")
            try:
                emb = _check_embeddings(np.asarray(rows, dtype=np.float64).astype(np.float32), size, name)
            except GalleryError as exc:
                raise bad(str(exc)) from None
            sources, enrolled = item["sources"], item["enrolled"]
            if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
                raise bad(f"identity {name!r}: sources must be a list of file names")
            if not isinstance(enrolled, str):
                raise bad(f"identity {name!r}: enrolled must be a date string")
            identities.append(Identity(name, emb, list(sources), enrolled))
        names = [i.name for i in identities]
        if len(set(names)) != len(names):
            raise bad("an identity name appears twice" + (" (once in NFKC form)" if normalize else ""))
        try:
            return cls(fingerprint, size, model_source=msource, identities=identities)
        except GalleryError as exc:
            raise bad(str(exc)) from None

    def _where(self) -> str:
        return f"{self.path}: " if self.path else ""


@contextlib.contextmanager
def edit_gallery(path: str | os.PathLike, *, create: Callable[[], Gallery] | None = None,
                 key: protect.GalleryKey | None = None, allow_plain: bool = False) -> Iterator[Gallery]:
    """Edit the gallery at ``path`` safely against concurrent writers.

    Takes the gallery's exclusive lock, reads the file again under it (or starts
    ``create()`` when there is none), yields the gallery, and saves it when the block
    ends without an exception; an exception leaves the file as it was. So N writers
    at once each see the others' changes, and all of them are kept.
    """
    with protect.locked(path) as target:
        if create is not None and not target.exists():
            gallery = create()
        else:
            gallery = Gallery.load(path, key=key, allow_plain=allow_plain)
        yield gallery
        gallery.save(path, key=key)


def remove_identity(path: str | os.PathLike, name: str, *,
                    key: protect.GalleryKey | None = None) -> tuple[Identity, int]:
    """Remove ``name`` from the gallery file (under its lock); the identity and how many are left."""
    with edit_gallery(path, key=key) as gallery:
        removed = gallery.remove(name)
    return removed, len(gallery)


@dataclass(frozen=True)
class UpgradeResult:
    """What :func:`upgrade_gallery` did."""

    gallery: Path
    upgraded: bool
    identities: int
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return {"gallery": str(self.gallery), "upgraded": self.upgraded, "identities": self.identities,
                "fingerprint": self.fingerprint, "version": protect.GALLERY_VERSION}


def upgrade_gallery(path: str | os.PathLike, *, key: protect.GalleryKey | None = None) -> UpgradeResult:
    """Migrate a plain (version 1) gallery file to the protected format, in place.

    Names are NFKC-normalised on the way (two that become one, or look alike, are
    refused). The plain file is trusted as it is: upgrade only files you trust. A
    gallery already protected is checked and left as it is (``upgraded`` false).
    """
    p = Path(path)
    with protect.locked(p):
        container = protect.parse_container(protect.read_file(p), str(p))
        plain = protect.is_plain(container)
        gallery = Gallery.load(p, key=key, allow_plain=plain)
        if plain:
            gallery.save(p, key=key)
    return UpgradeResult(p, plain, len(gallery), gallery.fingerprint)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _is_number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return -2 <= v <= 2  # unit-vector components; also excludes NaN, infinities and huge ints


def _check_embeddings(emb: np.ndarray, size: int, name: str) -> np.ndarray:
    if emb.ndim == 1:
        emb = emb[None, :]
    if emb.ndim != 2 or emb.shape[0] < 1 or emb.shape[1] != size:
        raise GalleryError(f"identity {name!r}: embeddings must be (K, {size}). Received shape {emb.shape}")
    if not np.all(np.isfinite(emb)):
        raise GalleryError(f"identity {name!r}: embeddings contain NaN or infinity")
    norms = np.linalg.norm(emb.astype(np.float64), axis=1)
    if np.any(np.abs(norms - 1.0) > NORM_TOLERANCE):
        raise GalleryError(f"identity {name!r}: embeddings are not unit vectors (norms {norms.round(4).tolist()[:4]})")
    return np.ascontiguousarray(emb, dtype=np.float32)


