"""Provenance evidence read from the uploaded bytes, and from the decoded pixels for watermarks.

Four kinds of evidence, each from what its writers document:
- C2PA content credentials (c2pa-python, in a child process: c2pa_reader.py): the active manifest's actions and their
  `digitalSourceType`, the claim generator, and whether the signature validates;
- IPTC `DigitalSourceType` in an XMP packet (IPTC Photo Metadata Standard, NewsCodes
  vocabulary `digitalsourcetype`);
- invisible generator watermarks in the pixels (watermark.py: SDXL, FLUX, SD1, SD2);
- the text that generation tools write: AUTOMATIC1111/Forge `parameters` (PNG text, or
  EXIF UserComment in JPEG/WebP), ComfyUI `prompt`/`workflow`, InvokeAI `invokeai_metadata`,
  `invokeai_graph` and the older `sd-metadata`/`Dream`, NovelAI `Software: NovelAI`,
  Midjourney's `Description` ending in `Job ID: <uuid>`, SwarmUI `sui_image_params`,
  Fooocus `fooocus_scheme`.

Metadata is hostile input: every read is bounded in size, text is matched with bounded
regular expressions (no XML or JSON parser walks attacker-controlled nesting), and the
C2PA read runs in a child process that is killed at its deadline. Nothing here raises; a
part that cannot be read is skipped.
"""
from __future__ import annotations

import io
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from fakelens import watermark
from fakelens.c2pa_reader import Reader, ReadTimeout

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# Digital source types that say the pixels were made by an algorithm (AI or not), and those
# that say a camera captured them. The rest (edits, composites, scans) claim neither.
AI_SOURCE_TYPES = {"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia"}
CAPTURE_SOURCE_TYPES = {"digitalCapture", "computationalCapture"}

MAX_SCAN_BYTES = 32 * 1024 * 1024  # uploads are capped lower; this bounds every byte scan
MAX_TEXT = 256 * 1024  # characters of one metadata text that are looked at
C2PA_TIMEOUT_S = 2.0
C2PA_MARKERS = (b"c2pa", b"jumb")  # a manifest store is a JUMBF box labelled c2pa

XMP_PACKET = re.compile(rb"<x:xmpmeta[^>]{0,2000}>.{0,4000000}?</x:xmpmeta>", re.S)
XMP_SOURCE_TYPE = re.compile(r"DigitalSourceType.{0,300}?digitalsourcetype/([A-Za-z]{1,60})", re.S | re.I)
CREATOR_TOOL = re.compile(r"CreatorTool(?:=\"|>)([^\"<]{1,120})")
A1111 = re.compile(r"(?:^|\n)Steps: \d+, (?:Sampler|Seed): ")
MIDJOURNEY_JOB = re.compile(r"Job ID: [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
A1111_MODEL = re.compile(r"Model: ([^,\n]{1,80})")
EXIF_IFD, USER_COMMENT, SOFTWARE = 0x8769, 0x9286, 0x0131


@dataclass(frozen=True)
class Evidence:
    """One finding: where it was read, what it says, and whether it claims the image was generated
    (True), captured by a camera (False), or neither (None)."""
    source: str  # c2pa, xmp, png_text, exif, watermark
    detail: str
    generator: str | None
    ai_generated: bool | None
    extra: Mapping[str, object] = field(default_factory=dict)  # c2pa: signature; watermark: bits_matched, of

    def as_dict(self) -> dict:
        return {"source": self.source, "detail": self.detail, "generator": self.generator,
                "ai_generated": self.ai_generated, **self.extra}


@dataclass(frozen=True)
class Provenance:
    """What an uploaded file says of its own origin: True when any evidence claims generation,
    False when some claims capture and none generation, None when nothing claims either."""
    ai_generated: bool | None
    evidence: tuple[Evidence, ...]

    def as_dict(self) -> dict:
        return {"ai_generated": self.ai_generated, "evidence": [e.as_dict() for e in self.evidence]}


NOTHING = Provenance(None, ())


def _evidence(source: str, detail: str, generator: str | None, ai: bool | None, **extra) -> Evidence:
    return Evidence(source, detail, generator, ai, extra)


# -- C2PA --------------------------------------------------------------------------------
def _generator(manifest: dict) -> str | None:
    info = manifest.get("claim_generator_info") or []
    if isinstance(info, list) and info and isinstance(info[0], dict) and info[0].get("name"):
        return " ".join(str(info[0][k]) for k in ("name", "version") if info[0].get(k))
    return manifest.get("claim_generator")


def _source_types(manifest: dict) -> list[tuple[str, str | None]]:
    """(digitalSourceType, softwareAgent name) of every action in the manifest's actions assertions."""
    out = []
    for assertion in manifest.get("assertions") or []:
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in (assertion.get("data") or {}).get("actions") or []:
            dst = action.get("digitalSourceType")
            if isinstance(dst, str) and dst:
                agent = action.get("softwareAgent")
                agent = agent.get("name") if isinstance(agent, dict) else agent
                out.append((dst.rsplit("/", 1)[-1], agent if isinstance(agent, str) else None))
    return out


def c2pa_evidence(raw: bytes, reader: Reader) -> list[Evidence]:
    """Evidence from the file's C2PA manifest store, read by `reader` within C2PA_TIMEOUT_S."""
    if not any(m in raw[:MAX_SCAN_BYTES] for m in C2PA_MARKERS):
        return []
    try:
        store = reader.read(raw, C2PA_TIMEOUT_S)
    except ReadTimeout:
        return [_evidence("c2pa", f"manifest not read within {C2PA_TIMEOUT_S:g} s", None, None)]
    if not store or not isinstance(store.get("manifests"), dict):
        return []
    manifest = store["manifests"].get(store.get("active_manifest")) or {}
    problems = [s.get("code") for s in store.get("validation_status") or [] if isinstance(s, dict)]
    validation = {"valid": not [c for c in problems if c != "signingCredential.untrusted"],
                  "trusted": "signingCredential.untrusted" not in problems, "status": problems}
    generator = _generator(manifest)
    types = _source_types(manifest)
    ai = [(t, agent) for t, agent in types if t in AI_SOURCE_TYPES]
    capture = [t for t, _ in types if t in CAPTURE_SOURCE_TYPES]
    # An AI claim counts even unsigned or untrusted: nobody gains by falsely marking a photo as
    # generated. A capture claim is only reported: anyone can sign one with their own certificate.
    if ai:
        kind, agent = ai[0]
        return [_evidence("c2pa", f"content credentials: digitalSourceType {kind}", agent or generator, True,
                          signature=validation)]
    if capture:
        return [_evidence("c2pa", f"content credentials: digitalSourceType {capture[0]}", generator,
                          False if validation["valid"] and validation["trusted"] else None, signature=validation)]
    return [_evidence("c2pa", "content credentials without a digital source type", generator, None,
                      signature=validation)]


# -- XMP ---------------------------------------------------------------------------------
def xmp_evidence(raw: bytes, xmp_texts: list[str]) -> list[Evidence]:
    """IPTC DigitalSourceType claims in the file's XMP packets, each once."""
    packets = [m.group(0).decode("utf-8", "replace") for m in XMP_PACKET.finditer(raw[:MAX_SCAN_BYTES])]
    out = []
    for packet in dict.fromkeys(packets + xmp_texts):  # Pillow's copy and the raw scan may find one packet twice
        packet = packet[:MAX_TEXT * 4]
        tool = CREATOR_TOOL.search(packet)
        for kind in dict.fromkeys(XMP_SOURCE_TYPE.findall(packet)):
            ai = True if kind in AI_SOURCE_TYPES else (False if kind in CAPTURE_SOURCE_TYPES else None)
            hit = _evidence("xmp", f"IPTC DigitalSourceType {kind}", tool.group(1) if tool else None, ai)
            if hit not in out:
                out.append(hit)
    return out


# -- invisible watermarks ------------------------------------------------------------------
def watermark_evidence(rgb: np.ndarray) -> list[Evidence]:
    """A generator's invisible watermark found in the decoded pixels."""
    return [_evidence("watermark", f"invisible DWT-DCT watermark, {bits} of {len(m.bits)} bits", m.generator, True,
                      bits_matched=bits, of=len(m.bits)) for m, bits in watermark.found(rgb)]


# -- generator text (PNG text chunks, EXIF UserComment) -------------------------------------
def _a1111_generator(text: str) -> str:
    model = A1111_MODEL.search(text)
    tool = "Forge" if "Forge version:" in text else "AUTOMATIC1111 web UI"
    return f"{tool} ({model.group(1)})" if model else tool


def generator_marker(key: str, text: str) -> tuple[str, str] | None:
    """(detail, generator) when a metadata text is one a generation tool writes, else None."""
    text = text[:MAX_TEXT]
    if "sui_image_params" in text:
        return f"{key}: SwarmUI sui_image_params", "SwarmUI"
    if key == "fooocus_scheme":
        return f"{key}: Fooocus generation parameters", "Fooocus"
    if A1111.search(text):
        return f"{key}: generation parameters (prompt, Steps, Sampler, Seed)", _a1111_generator(text)
    if key == "prompt" and '"class_type"' in text:
        return "prompt: ComfyUI node graph", "ComfyUI"
    if key == "workflow" and '"nodes"' in text and '"links"' in text:
        return "workflow: ComfyUI workflow", "ComfyUI"
    if key in ("invokeai_metadata", "invokeai_graph", "sd-metadata", "Dream"):
        return f"{key}: InvokeAI generation metadata", "InvokeAI"
    if key in ("Software", "software") and text.strip().startswith("NovelAI"):
        return f"{key}: NovelAI", "NovelAI"
    if '"Software": "NovelAI"' in text or '"software": "NovelAI"' in text:
        return f"{key}: NovelAI generation metadata", "NovelAI"
    if key == "Description" and MIDJOURNEY_JOB.search(text):
        return "Description: Midjourney prompt with Job ID", "Midjourney"
    return None


def _user_comment(value: bytes | str) -> str:
    """EXIF UserComment: an 8-byte character-code prefix, then the text (piexif writes UNICODE as UTF-16 BE)."""
    if isinstance(value, str):
        return value
    head, body = value[:8], value[8:MAX_TEXT * 2]
    if head.startswith(b"UNICODE"):
        for codec in ("utf-16-be", "utf-16-le"):
            text = body.decode(codec, "replace")
            if text.isprintable() or "\n" in text:
                return text
        return text
    return body.decode("utf-8", "replace")


def _metadata(raw: bytes) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """({PNG text key: text}, {EXIF field: text}, [XMP as Pillow reads it]), without decoding any pixels.

    PNG text is what Pillow reads before the image data, where generation tools write it.
    """
    texts, exif_texts, xmp = {}, {}, []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(raw))
            if img.format == "PNG":
                texts = {str(k): v for k, v in img.info.items() if isinstance(v, str) and k != "XML:com.adobe.xmp"}
            packet = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")
            if packet:
                xmp.append(packet[:MAX_TEXT * 4].decode("utf-8", "replace") if isinstance(packet, bytes) else packet)
            exif = img.getexif()
            if exif.get(SOFTWARE):
                exif_texts["Software"] = str(exif[SOFTWARE])[:MAX_TEXT]
            comment = exif.get_ifd(EXIF_IFD).get(USER_COMMENT)
            if comment:
                exif_texts["UserComment"] = _user_comment(comment)
    except Exception:  # noqa: BLE001 - unreadable metadata is no evidence; the decoder reports broken images
        pass
    return texts, exif_texts, xmp


def read(raw: bytes, rgb: np.ndarray | None, c2pa: Reader) -> Provenance:
    """The provenance of one uploaded file; with its decoded RGB pixels, the generator watermarks in them too."""
    texts, exif_texts, xmp = _metadata(raw)
    evidence = c2pa_evidence(raw, c2pa) + xmp_evidence(raw, xmp) + (watermark_evidence(rgb) if rgb is not None else [])
    for source, fields in (("png_text", texts), ("exif", exif_texts)):
        for key, text in fields.items():
            hit = generator_marker(key, text)
            if hit:
                evidence.append(_evidence(source, hit[0], hit[1], True))
    claims = {e.ai_generated for e in evidence} - {None}
    return Provenance(True if True in claims else (False if claims else None), tuple(evidence))
