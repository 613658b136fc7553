"""Edges of reading evidence that the mutation run found unpinned: EXIF Software, raw XMP packets, and the watermark
decoder's arithmetic against OpenCV's and imwatermark's own rounding."""
from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest
from PIL import Image

from fakelens import provenance, watermark
from fakelens.c2pa_reader import Reader
from fakelens.images import open_rgb
from fakelens.provenance import MAX_TEXT, Evidence

READER = Reader()
IPTC_AI = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


def jpeg(**save) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buf, "JPEG", **save)
    return buf.getvalue()


def test_novelai_in_exif_software_is_evidence_named_by_its_field():
    exif = Image.Exif()
    exif[0x0131] = "NovelAI"
    found = provenance.read(jpeg(exif=exif.tobytes()), None, READER)
    assert found.evidence == (Evidence("exif", "Software: NovelAI", "NovelAI", True),)


def test_an_xmp_packet_with_bytes_that_are_not_utf8_is_still_read():
    packet = f'<x:xmpmeta xmlns:x="adobe:ns:meta/">\xff\xfe<a DigitalSourceType="{IPTC_AI}"/></x:xmpmeta>'
    found = provenance.read(jpeg() + packet.encode("latin-1"), None, READER)
    assert found.evidence == (Evidence("xmp", "IPTC DigitalSourceType trainedAlgorithmicMedia", None, True),)


def test_an_xmp_packet_is_read_up_to_its_bound_and_no_further():
    def packet(filler: int) -> bytes:
        return (f'<x:xmpmeta xmlns:x="adobe:ns:meta/">{"a" * filler}<a DigitalSourceType="{IPTC_AI}"/>'
                '</x:xmpmeta>').encode()

    within = provenance.read(jpeg() + packet(MAX_TEXT * 4 - 200), None, READER)
    beyond = provenance.read(jpeg() + packet(MAX_TEXT * 4 + 10), None, READER)
    assert [e.source for e in within.evidence] == ["xmp"] and beyond.evidence == ()


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # the warning is the point: Pillow's own
def test_a_corrupt_exif_block_is_a_warning_not_a_refusal():
    raw = jpeg()
    app1 = b"Exif\0\0" + b"II*\0\x08\0\0\0\xff\xff"  # an IFD that says it holds more than it does
    raw = raw[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + raw[2:]
    assert open_rgb(raw).size == (16, 16)


def test_the_u_channel_is_opencvs_to_the_last_bit_in_either_channel_order():
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for swap, bgr in ((False, rgb[..., ::-1]), (True, rgb)):
        expected = cv2.cvtColor(np.ascontiguousarray(bgr).astype(np.float32), cv2.COLOR_BGR2YUV)[..., 1]
        got = watermark.u_channel(rgb, swap) if swap else watermark.u_channel(rgb)
        assert got.dtype == np.float32 and np.array_equal(got, expected)


def test_votes_and_bits_are_bytes_of_zeros_and_ones():
    u = watermark.u_channel(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    votes = watermark.block_votes(u)
    assert votes.dtype == np.uint8 and set(votes.tolist()) <= {0, 1} and len(votes) == 64
    assert watermark.decode_bits(votes, 8).dtype == np.uint8


def test_a_bit_is_set_when_its_mean_vote_rounds_past_half_as_imwatermark_rounds():
    """imwatermark scales the mean vote to 0-255 and reads above 127 as 1: 127 of 255 votes is a 0, 128 a 1."""
    for ones, bit in ((127, 0), (128, 1)):
        votes = np.array([1] * ones + [0] * (255 - ones), np.uint8)
        assert watermark.decode_bits(votes, 1).tolist() == [bit]
