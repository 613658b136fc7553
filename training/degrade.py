"""What happens to images on their way to an upload: blur, crops, rescaling, recompression.

One family of degradations serves two purposes:
- `BATTERY` / `HELD_BACK`: fixed settings for the perturbation benchmark (perturb.py); the
  held-back battery uses the same kinds with other parameters;
- `augment`: random settings drawn from wider ranges, for training that holds up.

Every degradation maps a 32x32 RGB PIL image to an RGB PIL image (any size), or to the
bytes of a file when it is a re-encoding; `model_view` then gives the pixels the models
see, exactly as the gateway makes them (fakelens.images).
"""
from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from fakelens.images import model_view

Degrade = Callable[[Image.Image], "Image.Image | bytes"]


def blur(radius: float) -> Degrade:
    return lambda im: im.filter(ImageFilter.GaussianBlur(radius))


def crop_rescale(frac: float) -> Degrade:
    """A centre crop of `frac` of the side, scaled back to the original size (a user's crop, then a resize)."""
    def f(im: Image.Image) -> Image.Image:
        side = max(1, round(im.width * frac))
        left = (im.width - side) // 2
        return im.resize(im.size, Image.BICUBIC, box=(left, left, left + side, left + side))
    return f


def down_up(scale: float) -> Degrade:
    """Downscaled by `scale` and back up, as thumbnails re-enlarged by a messaging app."""
    def f(im: Image.Image) -> Image.Image:
        small = max(4, round(im.width * scale))
        return im.resize((small, small), Image.BILINEAR).resize(im.size, Image.BICUBIC)
    return f


def upscale(factor: float, resample: int = Image.BICUBIC) -> Degrade:
    """Enlarged, then saved losslessly: a screenshot at display scaling, or an upscaled share."""
    return lambda im: im.resize((round(im.width * factor),) * 2, resample)


def encode(fmt: str, quality: int) -> Degrade:
    def f(im: Image.Image) -> bytes:
        buf = io.BytesIO()
        im.save(buf, fmt, quality=quality)
        return buf.getvalue()
    return f


def noise(sigma: float, seed: int = 0) -> Degrade:
    def f(im: Image.Image) -> Image.Image:
        rng = np.random.default_rng(seed + int(np.asarray(im)[0, 0, 0]))
        a = np.asarray(im, dtype=np.float32) + rng.normal(0, sigma, (im.height, im.width, 3))
        return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8))
    return f


def grayscale(im: Image.Image) -> Image.Image:
    return ImageOps.grayscale(im).convert("RGB")


def rotate(degrees: float) -> Degrade:
    return lambda im: im.rotate(degrees, Image.BICUBIC, fillcolor=(128, 128, 128))


BATTERY: dict[str, Degrade] = {
    "none": lambda im: im,
    "blur 0.5 px": blur(0.5), "blur 0.7 px": blur(0.7), "blur 1.0 px": blur(1.0),
    "crop 90%, rescaled": crop_rescale(0.9), "crop 80%, rescaled": crop_rescale(0.8),
    "down 0.75x, up": down_up(0.75), "down 0.5x, up": down_up(0.5),
    "JPEG q90": encode("JPEG", 90), "JPEG q70": encode("JPEG", 70), "JPEG q50": encode("JPEG", 50),
    "WebP q80": encode("WEBP", 80), "WebP q50": encode("WEBP", 50),
    "noise sigma 3": noise(3), "noise sigma 6": noise(6),
    "grayscale": grayscale,
    "rotate 3 deg": rotate(3), "rotate -5 deg": rotate(-5),
    "upscale 2x bilinear, PNG": upscale(2, Image.BILINEAR), "upscale 4x bicubic, PNG": upscale(4),
    "screenshot 1.5x, PNG": upscale(1.5, Image.BILINEAR),
}
HELD_BACK: dict[str, Degrade] = {
    "blur 0.6 px": blur(0.6), "blur 0.85 px": blur(0.85),
    "crop 85%, rescaled": crop_rescale(0.85), "crop 75%, rescaled": crop_rescale(0.75),
    "down 0.6x, up": down_up(0.6),
    "JPEG q60": encode("JPEG", 60), "JPEG q40": encode("JPEG", 40), "WebP q65": encode("WEBP", 65),
    "noise sigma 4.5": noise(4.5, seed=1), "rotate 4 deg": rotate(4),
    "upscale 3x Lanczos, PNG": upscale(3, Image.LANCZOS), "screenshot 1.25x, PNG": upscale(1.25, Image.BICUBIC),
}


def random_degradation(rng: np.random.Generator) -> Degrade:
    """One degradation with settings drawn from ranges that cover the battery's."""
    kind = rng.integers(9)
    if kind == 0:
        return blur(rng.uniform(0.3, 1.2))
    if kind == 1:
        return crop_rescale(rng.uniform(0.7, 0.97))
    if kind == 2:
        return down_up(rng.uniform(0.4, 0.9))
    if kind == 3:
        return encode("JPEG", int(rng.integers(30, 96)))
    if kind == 4:
        return encode("WEBP", int(rng.integers(30, 96)))
    if kind == 5:
        return noise(rng.uniform(1, 8), seed=int(rng.integers(1 << 30)))
    if kind == 6:
        return grayscale
    if kind == 7:
        return rotate(rng.uniform(-8, 8))
    return upscale(rng.uniform(1.2, 4), [Image.BILINEAR, Image.BICUBIC, Image.LANCZOS][rng.integers(3)])


def served_pixels(out: Image.Image | bytes) -> np.ndarray:
    """What the models see of a degraded image: re-encoded bytes decoded, any size thumbnailed."""
    img = Image.open(io.BytesIO(out)).convert("RGB") if isinstance(out, bytes) else out.convert("RGB")
    return model_view(img)


def augment(x: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """A copy of the uint8 [N, 32, 32, 3] batch with each image degraded with probability p."""
    out = x.copy()
    for i in np.flatnonzero(rng.random(len(x)) < p):
        out[i] = served_pixels(random_degradation(rng)(Image.fromarray(x[i])))
    return out
