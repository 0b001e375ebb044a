"""Reading image files into RGB arrays, with one-line errors for bad files."""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facelivenet.errors import ImageReadError
from facelivenet.preprocess import to_rgb
from facelivenet.utils import check_input_file

#: Largest image (in pixels) we decode; bigger files are refused, not half-read.
MAX_PIXELS = 50_000_000
#: Images above this many pixels are downscaled as they are decoded (JPEG: by the
#: decoder itself), so a 49-megapixel photo costs what a 12-megapixel one does; far
#: more than any face needs.
DOWNSCALE_PIXELS = 12_000_000
# PIL's own bomb limit (it raises at twice this), for every image any code here opens.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array.

    Grey, 16-bit, palette and RGBA images are converted, and the EXIF orientation
    tag is applied (a phone photo stored sideways comes out upright). An image above
    :data:`DOWNSCALE_PIXELS` comes out downscaled to at most that many pixels. Raises
    :class:`ImageReadError` naming the file for a missing, unreadable, empty,
    truncated, non-image or oversized file.
    """
    p = check_input_file(path, "image", ImageReadError)
    try:
        with warnings.catch_warnings():
            # We refuse oversized images ourselves (below), with a message that says so.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(p)
        with im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageReadError(
                    f"{p}: image is {w}x{h} pixels, more than the {MAX_PIXELS:,} we decode; "
                    "downscale it first"
                )
            if w * h > DOWNSCALE_PIXELS:
                scale = (DOWNSCALE_PIXELS / (w * h)) ** 0.5
                size = (max(1, int(w * scale)), max(1, int(h * scale)))
                im.draft(im.mode if im.mode in ("RGB", "L") else None, size)  # JPEG: decode at 1/2, 1/4, 1/8
                im.load()
                if im.size[0] * im.size[1] > DOWNSCALE_PIXELS:
                    im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
            im.load()
            upright = ImageOps.exif_transpose(im)
            arr = _pil_to_array(upright)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:  # header claims a gigantic image
        raise ImageReadError(f"{p}: image too large to decode safely ({exc})") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{p}: not a readable image") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        raise ImageReadError(f"{p}: corrupt image ({exc})") from None
    return to_rgb(arr)


def _pil_to_array(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.int64)
        peak = 65535 if im.mode.startswith("I;16") or arr.max() > 255 else 255
        return (np.clip(arr, 0, peak) * (255.0 / peak) + 0.5).astype(np.uint8)
    if im.mode in ("L", "RGB"):
        return np.asarray(im)
    if im.mode in ("LA", "RGBA", "P", "PA", "CMYK", "YCbCr", "1", "F", "La", "RGBa"):
        if im.mode == "F":
            return np.clip(np.asarray(im), 0, 255).astype(np.uint8)
        return np.asarray(im.convert("RGBA" if "A" in im.mode or im.mode == "P" else "RGB"))
    return np.asarray(im.convert("RGB"))
