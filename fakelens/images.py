"""Turn an uploaded file into the 32x32 RGB pixels the models were trained on."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

register_heif_opener()  # HEIC/HEIF, the default of phone cameras; Pillow reads AVIF itself

# MPO: multi-picture JPEG from phone cameras. PPM, DIB, JPEG 2000: still met in photo collections.
FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO", "AVIF", "HEIF", "PPM", "DIB", "JPEG2000", "FLI"}
ACCEPTED = "JPEG, PNG, WebP, AVIF, HEIC/HEIF, GIF, BMP, TIFF, PPM, JPEG 2000"
SIZE = 32
MAX_PIXELS = 50_000_000  # width x height of one upload; bigger is a decompression bomb
# How much detail the 32x32 view discards is measured against the upload at up to this side.
DETAIL_SIDE = 128
# Every CIFAKE image is a 32x32 JPEG saved at quality 75 with 4:2:0 chroma
# subsampling (read off the archives' quantisation tables); the models learned
# on those pixels, so a resized upload goes through the same encoder.
CIFAKE_JPEG = {"quality": 75, "subsampling": 2}


class BadImage(ValueError):
    """The upload is not an image we can classify; the message says why."""

    reason = "bad_image"


class TooManyPixels(BadImage):
    """The upload would decode to more pixels than allowed (a decompression bomb); a 413."""
    reason = "too_many_pixels"


@dataclass(frozen=True)
class Upload:
    """What the models see, and what the verdict rule needs to know about where it came from."""
    pixels: np.ndarray  # uint8 [32, 32, 3] RGB
    width: int  # as uploaded, after EXIF orientation
    height: int
    detail_lost: float  # RMS grey levels the 32x32 view discards (0 for a 32x32 upload); see detail_lost()
    format: str = ""  # the container as Pillow names it (JPEG, PNG, ...), for the record


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
        raise BadImage(f"not a recognised image file (accepted: {ACCEPTED})") from None
    except Exception as exc:  # Pillow raises many types for broken headers
        raise BadImage(f"unreadable image header: {exc}") from None
    if img.format not in FORMATS:
        raise BadImage(f"{img.format} images are not accepted (accepted: {ACCEPTED})")
    w, h = img.size  # never 0: Pillow refuses to open an image without pixels
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


def _square(img: Image.Image) -> tuple[int, int, int, int]:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return left, top, left + side, top + side


def _thumbnail(img: Image.Image) -> Image.Image:
    return img.resize((SIZE, SIZE), Image.BICUBIC, box=_square(img), reducing_gap=3.0)


def detail_lost(img: Image.Image) -> float:
    """RMS difference (grey levels, 0-255) between the centre square at up to DETAIL_SIDE pixels and
    its 32x32 thumbnail scaled back up: the detail the models never see.

    The models only know 32x32 images. A smooth upscale of a 32x32 image carries no detail beyond
    its thumbnail (CIFAKE test images upscaled 1.5-8x with bilinear, bicubic or Lanczos: at most 7.6),
    while a real photo or a generator's 1024 px output carries a lot (dev set medians 15-17).
    """
    box = _square(img)
    side = box[2] - box[0]
    if side <= SIZE:
        return 0.0
    grey = img.convert("L")
    r = min(side, DETAIL_SIDE)
    ref = np.asarray(grey.resize((r, r), Image.BICUBIC, box=box, reducing_gap=3.0), dtype=np.float32)
    up = np.asarray(_thumbnail(grey).resize((r, r), Image.BICUBIC), dtype=np.float32)
    return float(np.sqrt(np.mean((ref - up) ** 2)))


def model_view(rgb: Image.Image) -> np.ndarray:
    """uint8 [32, 32, 3]: a 32x32 image as it is; anything else centre-cropped to a square,
    downscaled to 32x32 and JPEG-encoded as CIFAKE was."""
    if rgb.size != (SIZE, SIZE):
        buf = io.BytesIO()
        _thumbnail(rgb).save(buf, "JPEG", **CIFAKE_JPEG)
        rgb = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(rgb, dtype=np.uint8)


def open_rgb(raw: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The upload's pixels (first frame, EXIF orientation applied, RGB; info["format"] says what it came in),
    or BadImage with a reason a person can act on."""
    img = _open(raw, max_pixels)
    fmt = img.format
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
    rgb.info["format"] = fmt
    return rgb


def view(rgb: Image.Image) -> Upload:
    """What the models and the verdict rule need of decoded pixels (open_rgb)."""
    return Upload(model_view(rgb), *rgb.size, round(detail_lost(rgb), 3), rgb.info.get("format", ""))


def decode(raw: bytes, max_pixels: int = MAX_PIXELS) -> Upload:
    """The upload as the models see it, or BadImage with a reason a person can act on."""
    return view(open_rgb(raw, max_pixels))
