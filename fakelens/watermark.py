"""Invisible generator watermarks: the DWT-DCT marks of SDXL, FLUX, SD1 and SD2, read from the pixels.

The reference code of these generators marks every output with `invisible-watermark`'s
`dwtDct` method (module imwatermark, maxDct.py): the image's U channel (YUV) is
transformed with a one-level Haar DWT, the approximation band is cut into 4x4 blocks, and
in each block the largest coefficient after the first is quantised with step 36 so that
its remainder says 0 (a quarter step) or 1 (three quarters). Block k carries bit k mod n
of an n-bit message; decoding is a majority vote per bit.

This is the same computation in numpy, vectorised over all blocks (tests check it bit
for bit against the package's own decoder). It reads from the decoded 8-bit pixels as the float
arrays the generators embed in, in both channel orders, since some pass RGB where BGR is meant.

The mark is positive-only evidence: it survives lossless saves and JPEG without chroma
subsampling, and is destroyed by chroma-subsampled JPEG (most "save as JPEG" defaults),
resizing and cropping. Its absence means nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCALE = 36.0  # quantisation step of the U channel (imwatermark's default scales [0, 36, 36], channel 1)
BLOCK = 4
MIN_PIXELS = 256 * 256  # imwatermark refuses to embed in anything smaller, and SDXL skips images under 256 px wide
# The reference generators write at most ~4 MP (SDXL 1024x1024 and its wide sizes, FLUX up to 2 MP); decoding
# is skipped above this, which bounds its time (README, Watermarks) and memory (a few float copies of one channel).
MAX_PIXELS = 8 * 1024 * 1024
# OpenCV's float BGR->YUV (color_yuv.simd.hpp, vector path): Y = fma(B, 0.114, fma(G, 0.587, R * 0.299)),
# U = fma(B - Y, 0.492, 0.5), in float32. Votes sit on the 18-of-36 boundary of a remainder, so the arithmetic is
# copied, rounding for rounding: a grey image's U is 0.5 plus rounding noise, and its votes are nothing but that noise.
# For 8-bit pixels the products are table lookups: float64 holds each exactly (R's rounded to float32 first, as
# OpenCV's plain multiply does), so one rounding to float32 after a float64 sum is a fused multiply-add. (OpenCV's
# scalar tail, the last pixels of a row whose width is not a multiple of its vector width, rounds otherwise; not copied.)
_LEVELS = np.arange(256, dtype=np.float32)
_R2Y = (_LEVELS * np.float32(0.299)).astype(np.float64)
_G2Y = _LEVELS.astype(np.float64) * np.float64(np.float32(0.587))
RG2Y = (_G2Y[:, None] + _R2Y[None, :]).astype(np.float32).astype(np.float64).ravel()  # [G * 256 + R]
B2Y = _LEVELS.astype(np.float64) * np.float64(np.float32(0.114))
B2U = np.float64(np.float32(0.492))
HAAR = np.float32(np.sqrt(0.5))  # PyWavelets' Haar filter taps, as float32 for float32 data


def _bits(value: int, n: int) -> np.ndarray:
    return np.array([(value >> (n - 1 - i)) & 1 for i in range(n)], dtype=np.uint8)


def _text_bits(text: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(text, dtype=np.uint8))


@dataclass(frozen=True)
class Mark:
    """One generator's watermark message and how many of its bits must match."""
    generator: str
    bits: np.ndarray  # the message, most significant bit first
    min_matched: int  # bits that must match to count as marked (fitted on unmarked images; README)


# Messages from each generator's reference code; thresholds from training/watermarks.py (README, Watermarks).
MARKS = (
    # diffusers / Stability generative-models: WATERMARK_MESSAGE = 0b1011...1110, 48 bits
    Mark("Stable Diffusion XL", _bits(0xB3EC907BB19E, 48), 40),
    # FLUX reference CLI: a 48-bit literal with two leading zeros, which bin() drops: 46 bits
    Mark("FLUX", _bits(0x2AFE879CF52E, 46), 37),
    # CompVis scripts/txt2img.py: set_watermark("bytes", b"StableDiffusionV1")
    Mark("Stable Diffusion 1", _text_bits(b"StableDiffusionV1"), 100),
    # Stability stablediffusion scripts/txt2img.py: b"SDV2"
    Mark("Stable Diffusion 2", _text_bits(b"SDV2"), 28),
)


def u_channel(rgb: np.ndarray, swap: bool = False) -> np.ndarray:
    """float32 U of uint8 RGB pixels exactly as OpenCV computes it from float BGR (swap: as if RGB were passed for BGR)."""
    r, g, b = (rgb[..., i] for i in ((2, 1, 0) if swap else (0, 1, 2)))
    y = (B2Y[b] + RG2Y[(g.astype(np.uint16) << 8) | r]).astype(np.float32)
    return ((b.astype(np.float32) - y).astype(np.float64) * B2U + 0.5).astype(np.float32)


def _haar_low(x: np.ndarray, axis: int) -> np.ndarray:
    """PyWavelets' Haar approximation along one axis, in float32: h * x[2i+1] + h * x[2i], each product rounded."""
    even, odd = (x[::2], x[1::2]) if axis == 0 else (x[:, ::2], x[:, 1::2])
    return HAAR * odd + HAAR * even


def block_votes(u: np.ndarray) -> np.ndarray:
    """One 0/1 vote per 4x4 block of the Haar approximation band, in imwatermark's row-major block order."""
    rows, cols = u.shape[0] // 4 * 4, u.shape[1] // 4 * 4
    ca = _haar_low(_haar_low(u[:rows, :cols], 0), 1)  # pywt.dwt2(..., "haar")[0]: rows first, then columns
    br, bc = ca.shape[0] // BLOCK, ca.shape[1] // BLOCK
    blocks = ca[:br * BLOCK, :bc * BLOCK].reshape(br, BLOCK, bc, BLOCK).swapaxes(1, 2).reshape(br * bc, BLOCK * BLOCK)
    rest = np.abs(blocks[:, 1:])
    val = rest[np.arange(len(rest)), rest.argmax(axis=1)]  # the largest coefficient after the first, made positive
    return (np.mod(val, SCALE) > 0.5 * SCALE).astype(np.uint8)


def decode_bits(votes: np.ndarray, n: int) -> np.ndarray:
    """The n-bit message a vote sequence carries: bit k is the majority of votes k, k+n, k+2n, ..."""
    sums = np.bincount(np.arange(len(votes)) % n, weights=votes, minlength=n)
    counts = np.bincount(np.arange(len(votes)) % n, minlength=n)
    return (sums / np.maximum(counts, 1) * 255 > 127).astype(np.uint8)  # imwatermark's rounding of the mean


def best_matches(rgb: np.ndarray) -> dict[str, int]:
    """{generator: most bits of its message matched, over both channel orders} of an RGB image."""
    best = {m.generator: 0 for m in MARKS}
    for swap in (False, True):
        votes = block_votes(u_channel(rgb, swap))
        for m in MARKS:
            best[m.generator] = max(best[m.generator], int((decode_bits(votes, len(m.bits)) == m.bits).sum()))
    return best


def found(rgb: np.ndarray) -> list[tuple[Mark, int]]:
    """(mark, bits matched) for each generator mark found in an RGB image ([] for images too small to carry
    one, or larger than any reference generator writes)."""
    if not MIN_PIXELS <= rgb.shape[0] * rgb.shape[1] <= MAX_PIXELS:
        return []
    matched = best_matches(rgb)
    return [(m, matched[m.generator]) for m in MARKS if matched[m.generator] >= m.min_matched]
