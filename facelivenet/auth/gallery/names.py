"""Identity names: one spelling per name, and no two names that look alike.

A name is stored and looked up in Unicode NFKC form, so "José" typed with a combining
accent (NFD) and with the precomposed "é" (NFC) is one identity, as are full-width and
ASCII letters. Two *different* names whose :func:`skeleton` is equal are refused
(the idea of Unicode TR39's confusable skeletons, kept small): "Alice" next to "alice",
or "аlice" whose first letter is the Cyrillic "а", would be one person to a reader
of a list or a log and two identities to the verifier.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Iterable

from facelivenet.errors import GalleryError

#: Longest identity name (characters, after NFKC).
MAX_NAME_CHARS = 128

#: Look-alikes mapped to the Latin letter they are mistaken for, after case folding.
#: Small on purpose (TR39's full table has thousands of entries): the lower-case
#: Cyrillic and Greek letters that look like Latin ones, including those whose
#: *capital* looks Latin (Cyrillic В Н К М Т; Greek Η Ι Κ Μ Ν Ρ Τ Υ Χ Ζ fold to
#: в н к м т, η ι κ μ ν ρ τ υ χ ζ), and the digits 0 and 1.
_LOOKALIKES = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "н": "h", "і": "i", "ї": "i", "ј": "j",
    "к": "k", "ӏ": "l", "м": "m", "о": "o", "р": "p", "ԛ": "q", "с": "c", "ѕ": "s", "т": "t",
    "у": "y", "ԝ": "w", "х": "x", "ԁ": "d", "ь": "b",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "h", "ι": "i", "κ": "k", "μ": "m", "ν": "n", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "y", "χ": "x", "ζ": "z",
    # digits
    "0": "o", "1": "l",
})


def normalize_name(name: Any) -> str:
    """``name`` in NFKC, checked: 1..128 printable characters, no surrounding spaces."""
    if not isinstance(name, str) or not name:
        raise GalleryError(f"an identity name is 1 to {MAX_NAME_CHARS} characters. Received: {name!r}")
    name = unicodedata.normalize("NFKC", name)
    if len(name) > MAX_NAME_CHARS:
        raise GalleryError(f"an identity name is 1 to {MAX_NAME_CHARS} characters. Received: {name!r}")
    if name != name.strip() or not name.isprintable():
        raise GalleryError(f"an identity name has no control characters or surrounding spaces. Received: {name!r}")
    return name


#: The old name of :func:`normalize_name` (it validated without normalising).
validate_name = normalize_name


def skeleton(name: str) -> str:
    """What ``name`` looks like: NFKC, case-folded, look-alikes mapped to Latin."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return folded.translate(_LOOKALIKES)


def confusable_with(name: str, names: Iterable[str]) -> str | None:
    """The first of ``names`` (other than ``name`` itself) that looks like ``name``."""
    mine = skeleton(name)
    for other in names:
        if other != name and skeleton(other) == mine:
            return other
    return None


def check_not_confusable(name: str, names: Iterable[str]) -> None:
    """Raise :class:`GalleryError` when ``name`` looks like another of ``names``."""
    other = confusable_with(name, names)
    if other is not None:
        raise GalleryError(
            f"the name {name!r} looks like the enrolled identity {other!r} (same letters once case, "
            "Unicode forms and look-alike Cyrillic/Greek letters are set aside); choose a distinct name"
        )
