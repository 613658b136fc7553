"""Decoding uploads (fakelens/images.py): every pixel mode to 8-bit RGB, and the reasons a refused file is given."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fakelens import images
from fakelens.images import BadImage, TooManyPixels, decode, open_rgb
from fakelens.watermark import decode_bits


def png(img: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **save)
    return buf.getvalue()


@pytest.mark.parametrize("mode, dtype", [("I;16", "<u2"), ("I;16B", ">u2"), ("I;16L", "<u2")])
def test_16_bit_greyscale_is_stretched_to_8_bits_from_its_own_minimum(mode, dtype):
    img = Image.frombytes(mode, (3, 1), np.array([1000, 2000, 3000], dtype).tobytes())
    assert np.asarray(images._to_rgb(img)).tolist() == [[[0] * 3, [127] * 3, [255] * 3]]  # Pillow alone: all 255


def test_32_bit_and_float_greyscale_are_stretched_without_overflow():
    wide = Image.fromarray(np.array([[-2**31, 0, 2**31 - 1]], np.int32), "I")
    assert np.asarray(images._to_rgb(wide))[0, :, 0].tolist() == [0, 127, 255]
    unit = Image.fromarray(np.array([[0.25, 0.5, 0.75]], np.float32), "F")
    assert np.asarray(images._to_rgb(unit))[0, :, 0].tolist() == [0, 127, 255]  # Pillow alone: all 0
    flat = Image.fromarray(np.full((1, 3), 7.5, np.float32), "F")
    assert np.asarray(images._to_rgb(flat)).tolist() == [[[0] * 3] * 3]  # no span: no division by zero


def test_a_palette_image_with_a_transparent_entry_shows_it_white():
    p = Image.new("P", (2, 1))
    p.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    p.putpixel((1, 0), 1)
    assert np.asarray(open_rgb(png(p, transparency=0))).tolist() == [[[255, 255, 255], [200, 100, 50]]]
    assert np.asarray(open_rgb(png(p))).tolist() == [[[10, 20, 30], [200, 100, 50]]]


@pytest.mark.parametrize("mode, pixels", [("LA", [(90, 0), (90, 255)]), ("PA", [(1, 0), (1, 255)])])
def test_greyscale_and_palette_alpha_show_transparent_areas_white(mode, pixels):
    img = Image.new(mode, (2, 1))
    if mode == "PA":
        img.putpalette([0, 0, 0, 40, 80, 120] + [0] * 762)
    for x, value in enumerate(pixels):
        img.putpixel((x, 0), value)
    opaque = [90] * 3 if mode == "LA" else [40, 80, 120]
    assert np.asarray(images._to_rgb(img)).tolist() == [[[255, 255, 255], opaque]]


def test_a_colour_key_marks_transparent_pixels_of_an_rgb_image():
    img = Image.new("RGB", (2, 1), (10, 20, 30))
    img.putpixel((1, 0), (40, 50, 60))
    assert np.asarray(open_rgb(png(img, transparency=(10, 20, 30)))).tolist() == [[[255, 255, 255], [40, 50, 60]]]


@pytest.mark.parametrize("raw, message", [
    (b"", "the file is empty"),
    (b"BM" + b"\0" * 12 + b"\x05\0\0\0" + b"\0" * 40, "unreadable image header: Unsupported BMP header type (5)"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 30, "not a recognised image file (accepted: JPEG, PNG, WebP"),
])
def test_a_refused_file_says_why(raw, message):
    with pytest.raises(BadImage) as caught:
        decode(raw)
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_format_we_do_not_judge_is_named():
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PCX")
    with pytest.raises(BadImage, match=r"^PCX images are not accepted \(accepted: JPEG, PNG"):
        decode(buf.getvalue())


def test_the_pixel_limit_is_the_callers():
    raw = png(Image.new("RGB", (20, 20)))
    assert decode(raw, 400).width == 20
    with pytest.raises(TooManyPixels, match=r"^image is 20x20 = 400 pixels; the limit is 399$"):
        decode(raw, 399)


def test_a_bomb_beyond_pillows_own_limit_says_it_is_too_large():
    raw = png(Image.new("1", (20000, 20000)))  # 400 MP: Pillow itself refuses at open
    with pytest.raises(TooManyPixels, match="^image is too large to decode safely: "):
        decode(raw)


def test_a_message_shorter_than_its_length_leaves_the_missing_bits_zero():
    assert decode_bits(np.array([1, 0, 1], np.uint8), 5).tolist() == [1, 0, 1, 0, 0]
