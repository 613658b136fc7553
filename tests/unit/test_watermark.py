"""Generator watermarks (gateway/watermark.py) against invisible-watermark's own decoder, bit for bit,
and as provenance evidence on files the tests make."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import pywt
from PIL import Image

from fakelens import provenance, watermark
from fakelens.examine import Examiner
from fakelens.images import open_rgb
from training.realworld import load_set, realworld_dir
from training.watermarks import embed, reference_encoder

MARKS = {m.generator: m for m in watermark.MARKS}


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Real photos from the dev set, 256 px or more (hosts for a mark, and unmarked images)."""
    out = []
    for item in load_set(realworld_dir()):
        rgb = np.asarray(open_rgb(item["raw"], 50_000_000))
        if item["label"] == "real_photo" and min(rgb.shape[:2]) >= 256:
            out.append(rgb[:768, :768])
    return out[:8]


def as_bgr(rgb: np.ndarray, swap: bool) -> np.ndarray:
    """Float BGR as a generator hands it to imwatermark (swap: RGB handed over as if it were BGR)."""
    return np.ascontiguousarray((rgb if swap else rgb[:, :, ::-1]).astype(np.float32))


def reference_bits(rgb: np.ndarray, n: int, swap: bool) -> np.ndarray:
    return reference_encoder().EmbedMaxDct(wmLen=n).decode(as_bgr(rgb, swap)).astype(np.uint8)


def reference_votes(rgb: np.ndarray, swap: bool) -> np.ndarray:
    """Every block's vote, from the reference's own steps (EmbedMaxDct.decode with one bit per block)."""
    bgr = as_bgr(rgb, swap)
    rows, cols = bgr.shape[0] // 4 * 4, bgr.shape[1] // 4 * 4
    ca, _ = pywt.dwt2(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)[:rows, :cols, 1], "haar")
    return np.array(reference_encoder().EmbedMaxDct(wmLen=1).decode_frame(ca, watermark.SCALE, [[]])[0], np.uint8)


@pytest.mark.parametrize("generator", sorted(MARKS))
def test_decoder_matches_the_reference_bit_for_bit(photos, generator):
    m = MARKS[generator]
    for rgb in photos[:4]:
        for image in (rgb, embed(rgb, m.bits)):
            for swap in (False, True):
                votes = watermark.block_votes(watermark.u_channel(image, swap))
                assert (votes == reference_votes(image, swap)).all()
                assert (watermark.decode_bits(votes, len(m.bits)) == reference_bits(image, len(m.bits), swap)).all()


def jpeg(rgb: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", **save)
    return buf.getvalue()


def read(raw: bytes) -> provenance.Provenance:
    return Examiner()(raw).provenance


@pytest.mark.parametrize("generator", sorted(MARKS))
def test_a_marked_photo_saved_as_jpeg_q95_without_subsampling_is_evidence_of_generation(photos, generator):
    m = MARKS[generator]
    found = read(jpeg(embed(photos[0], m.bits), quality=95, subsampling=0))
    [hit] = [e for e in found.evidence if e.source == "watermark"]
    assert found.ai_generated is True and hit.generator == generator
    assert m.min_matched <= hit.extra["bits_matched"] <= hit.extra["of"] == len(m.bits)


def test_unmarked_photos_and_destructive_resaves_are_left_alone(photos):
    sdxl = MARKS["Stable Diffusion XL"]
    for rgb in photos:
        assert read(jpeg(rgb, quality=95, subsampling=0)).evidence == ()
    marked = embed(photos[0], sdxl.bits)
    assert read(jpeg(marked, quality=95)).evidence == ()  # Pillow's default 4:2:0 destroys the mark
    half = np.asarray(Image.fromarray(marked).resize((marked.shape[1] // 2, marked.shape[0] // 2)))
    assert watermark.best_matches(half)["Stable Diffusion XL"] < sdxl.min_matched


def test_images_too_small_to_carry_a_mark_are_not_decoded():
    tiny = np.random.default_rng(0).integers(0, 256, (255, 256, 3), dtype=np.uint8)
    [(mark, bits)] = watermark.found(embed(np.pad(tiny, ((0, 1), (0, 0), (0, 0))), MARKS["FLUX"].bits))
    assert mark.generator == "FLUX" and bits >= mark.min_matched  # 256x256 carries it
    assert watermark.found(tiny) == []


def test_watermark_reading_can_be_switched_off_for_the_benchmark(photos):
    from gateway.config import from_env

    raw = jpeg(embed(photos[0], MARKS["FLUX"].bits), quality=95, subsampling=0)
    assert Examiner()(raw).provenance.ai_generated is True
    assert Examiner(watermarks=False)(raw).provenance == provenance.NOTHING
    assert from_env({"FAKELENS_WATERMARKS": "0"})["WATERMARKS"] is False and from_env({})["WATERMARKS"] is True


def test_messages_are_read_most_significant_bit_first():
    assert watermark._bits(0b1011, 4).tolist() == [1, 0, 1, 1]
    assert watermark._bits(5, 6).tolist() == [0, 0, 0, 1, 0, 1]
    assert watermark._bits(5, 6).dtype == np.uint8
    assert watermark._text_bits(b"A\x80").tolist() == [0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]


@pytest.fixture(scope="module")
def tile() -> np.ndarray:
    """256x256 noise: the smallest image a generator marks."""
    return np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)


def matched(rgb: np.ndarray, mark: watermark.Mark, swap: bool) -> int:
    return int((watermark.decode_bits(watermark.block_votes(watermark.u_channel(rgb, swap)), len(mark.bits)) == mark.bits).sum())


def test_a_mark_embedded_in_the_other_channel_order_is_found_too(tile):
    flux = MARKS["FLUX"]
    swapped = np.ascontiguousarray(embed(np.ascontiguousarray(tile[..., ::-1]), flux.bits)[..., ::-1])
    assert matched(swapped, flux, False) < flux.min_matched and matched(swapped, flux, True) == 46
    assert watermark.best_matches(swapped)["FLUX"] == 46
    assert [(m.generator, bits) for m, bits in watermark.found(swapped)] == [("FLUX", 46)]
    assert provenance.watermark_evidence(swapped) == [provenance.Evidence(
        "watermark", "invisible DWT-DCT watermark, 46 of 46 bits", "FLUX", True, {"bits_matched": 46, "of": 46})]


def test_a_mark_with_exactly_its_threshold_of_bits_counts(tile):
    sd2 = MARKS["Stable Diffusion 2"]
    off = sd2.bits.copy()
    off[[0, 5, 10, 20]] ^= 1  # four of 32 bits wrong: 28 match, the threshold
    assert [(m.generator, bits) for m, bits in watermark.found(embed(tile, off))] == [("Stable Diffusion 2", 28)]


def test_the_pixel_limits_are_inclusive_and_count_width_times_height(tile):
    flux, sd2 = MARKS["FLUX"], MARKS["Stable Diffusion 2"]
    marked = embed(tile, flux.bits)
    assert watermark.best_matches(marked[:255])["FLUX"] == 46  # the mark is there, but 255x256 is under the limit
    assert watermark.found(marked[:255]) == []
    # 2048 x 4096 = MAX_PIXELS exactly, tiled from a marked tile (SD2's 32 bits repeat in step with the blocks)
    big = np.tile(embed(tile, sd2.bits), (8, 16, 1))
    assert big.shape[0] * big.shape[1] == watermark.MAX_PIXELS
    assert [(m.generator, bits) for m, bits in watermark.found(big)] == [("Stable Diffusion 2", 32)]
    assert watermark.found(np.tile(embed(tile, sd2.bits), (8, 17, 1))[:, :4097]) == []  # one column more
