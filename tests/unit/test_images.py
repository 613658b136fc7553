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


def _noise(h: int, w: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("w, h", [(300, 100), (100, 300)])
def test_the_models_see_the_centre_square(w, h):
    """Thirds of red, green and blue along the long side: the centre square is the green third, nothing else."""
    a = np.zeros((h, w, 3), np.uint8)
    for i in range(3):
        if w > h:
            a[:, i * 100:(i + 1) * 100, i] = 255
        else:
            a[i * 100:(i + 1) * 100, :, i] = 255
    upload = decode(encode(Image.fromarray(a), "PNG"), LIMIT)
    px = upload.pixels.astype(int)
    assert (upload.width, upload.height, upload.format) == (w, h, "PNG")
    # JPEG's chroma and the bicubic kernel blur the square's edges a little; a square off the centre shows a stripe
    assert px[..., 1].min() >= 240 and px[..., 0].max() <= 30 and px[..., 2].max() <= 30, (px.min(), px.max())


@pytest.mark.parametrize("w, h, detail, pixels_sha", [
    # Regression pins, measured on this code: the crop box, the bicubic resampling with Pillow's reducing gap of 3,
    # the grey levels and the CIFAKE JPEG encoding all move these numbers.
    (300, 200, 24.797, "c28ec9c5d0b34e49"),
    (200, 300, 24.686, "34944277229031bd"),
    (120, 120, 47.785, "ea2fa02759ab1810"),
    (400, 400, 12.327, "6cb890f9d7a9e750"),  # past DETAIL_SIDE: measured at 128 px
    (800, 800, 6.203, "d241a9bfe683228c"),  # 6x DETAIL_SIDE: Pillow's reducing gap halves it first (6.198 without)
    (40, 36, 29.658, "675463562ccc6d7f"),
    (60, 97, 42.967, "abc632a9628361b0"),  # an odd margin: the square starts on a whole pixel, not half-way
    (97, 60, 43.405, "f1f07234ef01083e"),
])
def test_detail_lost_and_the_model_view_of_a_noise_image_are_pinned(w, h, detail, pixels_sha):
    import hashlib

    upload = decode(encode(_noise(h, w), "PNG"), LIMIT)
    assert upload.detail_lost == detail
    assert hashlib.sha256(upload.pixels.tobytes()).hexdigest()[:16] == pixels_sha


def test_pixels_that_did_not_come_through_open_rgb_have_no_format():
    from fakelens.images import view

    upload = view(Image.new("RGB", (32, 32), (1, 2, 3)))
    assert upload.format == "" and (upload.width, upload.height, upload.detail_lost) == (32, 32, 0.0)
    assert (upload.pixels == [1, 2, 3]).all()
