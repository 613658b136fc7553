"""Turn an uploaded file into the 32x32 RGB pixels the models were trained on."""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}  # MPO: multi-picture JPEG from phone cameras
SIZE = 32
# Every CIFAKE image is a 32x32 JPEG saved at quality 75 with 4:2:0 chroma
# subsampling (read off the archives' quantisation tables); the models learned
# on those pixels, so a resized upload goes through the same encoder.
CIFAKE_JPEG = {"quality": 75, "subsampling": 2}


class BadImage(ValueError):
    """The upload is not an image we can classify; the message says why."""

    reason = "bad_image"


class TooManyPixels(BadImage):
    reason = "too_many_pixels"


def _open(raw: bytes, max_pixels: int) -> Image.Image:
    if not raw:
        raise BadImage("the file is empty")
    try:
        with warnings.catch_warnings():  # we apply our own pixel limit just below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw))
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(f"image is too large to decode safely: {exc}") from None
    except UnidentifiedImageError:
        raise BadImage("not a recognised image file (accepted: JPEG, PNG, WebP, GIF, BMP, TIFF)") from None
    except Exception as exc:  # Pillow raises many types for broken headers
        raise BadImage(f"unreadable image header: {exc}") from None
    if img.format not in FORMATS:
        raise BadImage(f"{img.format} images are not accepted (accepted: JPEG, PNG, WebP, GIF, BMP, TIFF)")
    w, h = img.size
    if w < 1 or h < 1:
        raise BadImage(f"image has no pixels ({w}x{h})")
    if w * h > max_pixels:  # checked from the header, before anything is decoded
        raise TooManyPixels(f"image is {w}x{h} = {w * h:,} pixels; the limit is {max_pixels:,}")
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit and float grayscale: scale to 8 bits
        a = np.asarray(img, dtype=np.float64)
        span = a.max() - a.min()
        img = Image.fromarray(((a - a.min()) / (span or 1) * 255).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # transparent areas show as white
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _to_cifake_size(img: Image.Image) -> Image.Image:
    """Centre-crop to a square, downscale to 32x32 and JPEG-encode as CIFAKE was."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    small = img.resize((SIZE, SIZE), Image.BICUBIC, box=(left, top, left + side, top + side), reducing_gap=3.0)
    buf = io.BytesIO()
    small.save(buf, "JPEG", **CIFAKE_JPEG)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def to_pixels(raw: bytes, max_pixels: int) -> np.ndarray:
    """uint8 [32, 32, 3] RGB pixels, or BadImage with a reason a person can act on."""
    img = _open(raw, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.seek(0)  # GIF, WebP, TIFF: the first frame
            img = ImageOps.exif_transpose(img)
            img.load()
            rgb = _to_rgb(img)
    except BadImage:
        raise
    except Exception as exc:  # truncated data, bad EXIF, corrupt frames, bombs: all "cannot decode"
        raise BadImage(f"the image cannot be decoded: {exc}") from None
    if rgb.size != (SIZE, SIZE):
        rgb = _to_cifake_size(rgb)
    return np.asarray(rgb, dtype=np.uint8)
