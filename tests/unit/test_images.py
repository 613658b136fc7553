"""Upload decoding: every accepted format and mode becomes 32x32 RGB; broken input is a BadImage."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fakelens.images import BadImage, TooManyPixels, decode

LIMIT = 50_000_000


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "AVIF", "HEIF", "GIF", "BMP", "TIFF", "PPM", "JPEG2000"])
def test_accepted_formats_become_32x32_rgb(fmt):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 90, 3), dtype=np.uint8))
    px = decode(encode(img, fmt), LIMIT).pixels
    assert px.shape == (32, 32, 3) and px.dtype == np.uint8


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16", "1"])
def test_modes_convert_to_rgb(mode):
    img = Image.new("RGB", (40, 40), (10, 200, 30)).convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    assert decode(encode(img, fmt), LIMIT).pixels.shape == (32, 32, 3)


def test_transparent_areas_are_white():
    img = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    assert (decode(encode(img, "PNG"), LIMIT).pixels == 255).all()


def test_cifake_sized_image_is_used_as_decoded(cifake_samples):
    _, raw, _ = cifake_samples[0]
    expected = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
    assert (decode(raw, LIMIT).pixels == expected).all()


@pytest.mark.parametrize("fmt", ["JPEG", "AVIF", "HEIF"])
def test_exif_orientation_is_applied(fmt):
    # Left half black, right half white; orientation 6 means "rotate 90 degrees clockwise to display".
    a = np.zeros((64, 128, 3), np.uint8)
    a[:, 64:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    upload = decode(encode(Image.fromarray(a), fmt, exif=exif.tobytes()), LIMIT)
    px = upload.pixels.astype(int)
    # Displayed upright the image is 64 wide x 128 tall: black on top, white at the bottom.
    assert (upload.width, upload.height) == (64, 128)
    assert px[:8].mean() < 60 and px[-8:].mean() > 190


def test_detail_lost_tells_a_detailed_image_from_an_upscaled_thumbnail(cifake_samples):
    rng = np.random.default_rng(0)
    small = Image.open(io.BytesIO(cifake_samples[0][1])).convert("RGB")
    detailed = Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    assert decode(encode(small, "PNG"), LIMIT).detail_lost == 0
    assert decode(encode(small.resize((128, 128), Image.BICUBIC), "PNG"), LIMIT).detail_lost < 8
    assert decode(encode(detailed, "PNG"), LIMIT).detail_lost > 15


def test_gif_uses_first_frame():
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    px = decode(buf.getvalue(), LIMIT).pixels.astype(int)
    assert px[..., 0].mean() > 200 and px[..., 2].mean() < 60


@pytest.mark.parametrize("raw, words", [
    (b"", "empty"),
    (b"hello, I am not an image", "not a recognised image"),
    (b"%PDF-1.4\n" + b"0" * 200, "not a recognised image"),
])
def test_non_images_are_rejected(raw, words):
    with pytest.raises(BadImage, match=words):
        decode(raw, LIMIT)


def test_truncated_image_is_rejected():
    raw = encode(Image.new("RGB", (300, 300), (1, 2, 3)), "PNG")
    with pytest.raises(BadImage, match="cannot be decoded"):
        decode(raw[: len(raw) // 2], LIMIT)


def test_decompression_bomb_rejected_from_header():
    raw = encode(Image.new("L", (12000, 12000)), "PNG")  # tiny file, 144 MP once decoded
    with pytest.raises(TooManyPixels, match="144,000,000 pixels"):
        decode(raw, LIMIT)


def test_huge_bomb_beyond_pillows_own_limit_is_too_many_pixels():
    raw = encode(Image.new("1", (20000, 20000)), "PNG")  # 400 MP: Pillow itself refuses at open
    with pytest.raises(TooManyPixels):
        decode(raw, LIMIT)
