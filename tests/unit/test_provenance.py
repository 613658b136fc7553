"""Provenance evidence read from files the tests make, each carrying one marker (fakelens/provenance.py)."""
from __future__ import annotations

import datetime
import io
import time

import c2pa
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image, PngImagePlugin

from fakelens import provenance
from fakelens.c2pa_reader import Reader, ReadTimeout
from fakelens.verdict import Rule

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
EXIF_IFD, USER_COMMENT = 0x8769, 0x9286
A1111 = ("a lighthouse at dusk\nNegative prompt: blurry\nSteps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7, "
         "Seed: 1234, Size: 1024x1024, Model hash: 31e35c80fc, Model: sd_xl_base_1.0")
RULE = Rule({"m": 1.0}, threshold=0.5, unsure_margin=0.05, max_detail_lost=8.0, max_side=128,
            confidence={"native": 0.99, "resized": 0.98})
READER = Reader()


def read(raw: bytes) -> provenance.Provenance:
    return provenance.read(raw, None, READER)


def decide(p_fake: float, size: tuple[int, int], detail: float, found: provenance.Provenance):
    return RULE.decide(RULE.read({"m": p_fake}, size, detail), found)


def picture(fmt: str = "PNG", **save) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 140, 200)).save(buf, fmt, **save)
    return buf.getvalue()


def png_text(**chunks: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_itxt(key, value, zip=len(value) > 100)
    return picture("PNG", pnginfo=info)


def user_comment(text: str, fmt: str) -> bytes:
    exif = Image.Exif()
    # piexif's UserComment.dump(..., encoding="unicode"), as AUTOMATIC1111 writes JPEG and WebP
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = b"UNICODE\0" + text.encode("utf-16-be")
    return picture(fmt, exif=exif.tobytes())


def xmp(source_type: str) -> bytes:
    return (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
            f'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="Test Tool 1.0">'
            f'<Iptc4xmpExt:DigitalSourceType>{IPTC}{source_type}</Iptc4xmpExt:DigitalSourceType>'
            f'</rdf:Description></rdf:RDF></x:xmpmeta>').encode()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fakelens tests")])


@pytest.fixture(scope="module")
def signer_info() -> c2pa.C2paSignerInfo:
    """A CA and a signing certificate made here: valid signatures, on no trust list."""
    now = datetime.datetime.now(datetime.UTC)
    usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
                 encipher_only=False, decipher_only=False)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def cert(subject, issuer, public, signing_key, ca: bool, extra):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca, **usage), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))
        for ext in extra:
            b = b.add_extension(ext, critical=False)
        return b.sign(signing_key, hashes.SHA256())

    ca = cert(_name("fakelens test CA"), _name("fakelens test CA"), ca_key.public_key(), ca_key, True, [])
    leaf = cert(_name("fakelens test signer"), ca.subject, key.public_key(), ca_key, False,
                [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                 x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())])
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, ca))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return c2pa.C2paSignerInfo(alg=b"es256", sign_cert=chain, private_key=pem, ta_url=None)


def signed(info: c2pa.C2paSignerInfo, source_type: str, agent: str = "Test Generator 2") -> bytes:
    manifest = {"claim_generator_info": [{"name": "fakelens-tests", "version": "1.0"}], "title": "test.jpg",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created", "digitalSourceType": IPTC + source_type,
                     "softwareAgent": {"name": agent}}]}}]}
    out = io.BytesIO()
    with c2pa.Builder(manifest) as builder:
        builder.sign(c2pa.Signer.from_info(info), "image/jpeg", io.BytesIO(picture("JPEG")), out)
    return out.getvalue()


AI_FILES = {
    "A1111 PNG parameters": lambda: png_text(parameters=A1111),
    "Forge PNG parameters": lambda: png_text(parameters=A1111 + ", Version: f2.0.1v1.10.1, Forge version: f2.0.1"),
    "A1111 JPEG UserComment": lambda: user_comment(A1111, "JPEG"),
    "A1111 WebP UserComment": lambda: user_comment(A1111, "WEBP"),
    "ComfyUI prompt": lambda: png_text(prompt='{"3": {"class_type": "KSampler", "inputs": {"seed": 5}}}'),
    "ComfyUI workflow": lambda: png_text(workflow='{"last_node_id": 9, "nodes": [], "links": []}'),
    "InvokeAI metadata": lambda: png_text(invokeai_metadata='{"positive_prompt": "a cat", "steps": 30}'),
    "InvokeAI legacy": lambda: png_text(**{"sd-metadata": '{"model": "stable diffusion", "image": {}}'}),
    "NovelAI PNG": lambda: png_text(Software="NovelAI", Source="NovelAI Diffusion V4.5 4BDE2A90",
                                    Comment='{"prompt": "a castle", "steps": 28}'),
    "NovelAI WebP UserComment": lambda: user_comment('{"Software": "NovelAI", "Comment": "{}"}', "WEBP"),
    "Midjourney Description": lambda: png_text(
        Description="a red fox --ar 3:2 --v 6.1 Job ID: a7421d2f-b262-44f9-977c-ac23e9c7d3e3", Author="someone"),
    "SwarmUI parameters": lambda: png_text(parameters='{"sui_image_params": {"prompt": "a bird", "steps": 20}}'),
    "XMP trainedAlgorithmicMedia": lambda: picture("JPEG", xmp=xmp("trainedAlgorithmicMedia")),
    "XMP compositeWithTrainedAlgorithmicMedia": lambda: picture("PNG", pnginfo=_xmp_png("compositeWithTrainedAlgorithmicMedia")),
    "XMP algorithmicMedia (WebP)": lambda: picture("WEBP", xmp=xmp("algorithmicMedia")),
}


def _xmp_png(source_type: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp(source_type).decode())
    return info


@pytest.mark.parametrize("case", sorted(AI_FILES))
def test_generator_markers_are_evidence_of_generation(case):
    found = read(AI_FILES[case]())
    assert found.ai_generated is True, (case, found)
    decision = decide(0.1, (64, 48), 20.0, found)  # the models (REAL, out of domain) are overruled
    assert decision.verdict == "FAKE" and decision.decided_by == "provenance", decision


def test_c2pa_ai_credential_signed_by_an_untrusted_test_ca_decides(signer_info):
    found = read(signed(signer_info, "trainedAlgorithmicMedia"))
    [hit] = [e for e in found.evidence if e.source == "c2pa"]
    assert found.ai_generated is True and hit.generator == "Test Generator 2"
    assert hit.extra["signature"]["valid"] is True and hit.extra["signature"]["trusted"] is False
    assert decide(0.5, (64, 48), 0.0, found).decided_by == "provenance"


def test_c2pa_credential_whose_image_was_altered_is_reported_invalid_and_still_counts(signer_info):
    raw = bytearray(signed(signer_info, "compositeWithTrainedAlgorithmicMedia"))
    raw[-200] ^= 0xFF  # inside the image data the manifest's hash covers
    found = read(bytes(raw))
    [hit] = [e for e in found.evidence if e.source == "c2pa"]
    assert hit.extra["signature"]["valid"] is False and "assertion.dataHash.mismatch" in hit.extra["signature"]["status"]
    assert found.ai_generated is True


def test_c2pa_capture_credential_is_reported_not_flagged(signer_info):
    found = read(signed(signer_info, "digitalCapture", agent="Test Camera"))
    [hit] = found.evidence
    assert hit.source == "c2pa" and "digitalCapture" in hit.detail
    assert found.ai_generated is not True  # untrusted signer: reported, claims nothing
    assert decide(0.9, (64, 48), 0.0, found).decided_by == "models"


ORDINARY = {
    "camera EXIF": lambda: picture("JPEG", exif=_camera_exif()),
    "editor text chunk": lambda: png_text(Software="GIMP 2.10.36", Comment="Created with GIMP",
                                          Description="holiday photo, cropped"),
    "editor XMP": lambda: picture("JPEG", xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
                                             b'xmp:CreatorTool="Adobe Photoshop 25.0"/></rdf:RDF></x:xmpmeta>'),
    "XMP digitalCapture": lambda: picture("JPEG", xmp=xmp("digitalCapture")),
    "no metadata": lambda: picture("PNG"),
}


def _camera_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0131] = "Canon", "Canon EOS R6", "Adobe Lightroom Classic 13.1"
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = b"ASCII\0\0\0holiday in Rome"
    return exif.tobytes()


@pytest.mark.parametrize("case", sorted(ORDINARY))
def test_ordinary_metadata_never_claims_ai(case):
    found = read(ORDINARY[case]())
    assert found.ai_generated is not True, (case, found)
    assert decide(0.9, (64, 48), 0.0, found).decided_by == "models"


def test_no_metadata_says_nothing():
    assert read(picture("JPEG")) == provenance.NOTHING


HOSTILE = {
    "unterminated XMP, 8 MB": b"\xff\xd8" + b"<x:xmpmeta>" + b"<a>" * (8 << 18),
    "nested XMP": picture("WEBP", xmp=b"<x:xmpmeta>" + b"<rdf:Bag>" * 500_000 + b"</x:xmpmeta>"),
    "huge text chunk": png_text(parameters="Steps: 1, " + "x" * 900_000),
    "deep JSON workflow": png_text(workflow="[" * 100_000),
    "fake c2pa marker": b"\x89PNG\r\n\x1a\n" + b"c2pajumb" * 100_000,
    "truncated c2pa": b"\xff\xd8\xff\xeb\x00\x20JP\x00\x00\x00\x01\x00\x00\x00\x18jumbc2pa" + b"\x00" * 64,
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_metadata_is_bounded(case):
    start = time.perf_counter()
    found = read(HOSTILE[case])
    assert time.perf_counter() - start < provenance.C2PA_TIMEOUT_S + 3, case  # a hang, not a speed goal
    assert found.ai_generated in (True, False, None)


def test_a_c2pa_read_past_its_deadline_is_killed_counted_and_the_next_read_works(signer_info):
    raw = signed(signer_info, "trainedAlgorithmicMedia")
    abandoned = []
    reader = Reader(on_abandon=lambda: abandoned.append(1))
    assert reader.read(raw, 10)["active_manifest"]  # a live reader process answers
    first = reader._proc
    with pytest.raises(ReadTimeout):
        reader.read(raw, 1e-6)  # no reader answers in a microsecond (a read takes about 0.6 ms here)
    assert first.poll() is not None  # killed, not left running
    assert abandoned == [1]
    assert reader.read(raw, 10)["active_manifest"] and reader._proc.pid != first.pid  # a fresh reader


# -- exact evidence: the detail and the generator reach the user in the verdict's reason ---------------------------
GEN = "generation parameters (prompt, Steps, Sampler, Seed)"
A1111_EVIDENCE = {
    "A1111 JPEG UserComment": ("exif", f"UserComment: {GEN}", "AUTOMATIC1111 web UI (sd_xl_base_1.0)"),
    "A1111 PNG parameters": ("png_text", f"parameters: {GEN}", "AUTOMATIC1111 web UI (sd_xl_base_1.0)"),
    "A1111 WebP UserComment": ("exif", f"UserComment: {GEN}", "AUTOMATIC1111 web UI (sd_xl_base_1.0)"),
    "ComfyUI prompt": ("png_text", "prompt: ComfyUI node graph", "ComfyUI"),
    "ComfyUI workflow": ("png_text", "workflow: ComfyUI workflow", "ComfyUI"),
    "Forge PNG parameters": ("png_text", f"parameters: {GEN}", "Forge (sd_xl_base_1.0)"),
    "InvokeAI legacy": ("png_text", "sd-metadata: InvokeAI generation metadata", "InvokeAI"),
    "InvokeAI metadata": ("png_text", "invokeai_metadata: InvokeAI generation metadata", "InvokeAI"),
    "Midjourney Description": ("png_text", "Description: Midjourney prompt with Job ID", "Midjourney"),
    "NovelAI PNG": ("png_text", "Software: NovelAI", "NovelAI"),
    "NovelAI WebP UserComment": ("exif", "UserComment: NovelAI generation metadata", "NovelAI"),
    "SwarmUI parameters": ("png_text", "parameters: SwarmUI sui_image_params", "SwarmUI"),
    "XMP algorithmicMedia (WebP)": ("xmp", "IPTC DigitalSourceType algorithmicMedia", "Test Tool 1.0"),
    "XMP compositeWithTrainedAlgorithmicMedia": ("xmp", "IPTC DigitalSourceType compositeWithTrainedAlgorithmicMedia",
                                                 "Test Tool 1.0"),
    "XMP trainedAlgorithmicMedia": ("xmp", "IPTC DigitalSourceType trainedAlgorithmicMedia", "Test Tool 1.0"),
}


@pytest.mark.parametrize("case", sorted(AI_FILES))
def test_each_generator_marker_is_one_exact_piece_of_evidence(case):
    source, detail, generator = A1111_EVIDENCE[case]
    assert read(AI_FILES[case]()) == provenance.Provenance(True, (provenance.Evidence(source, detail, generator, True),))


def test_capture_xmp_is_evidence_of_capture_and_ordinary_metadata_is_no_evidence():
    assert read(ORDINARY["XMP digitalCapture"]()) == provenance.Provenance(False, (provenance.Evidence(
        "xmp", "IPTC DigitalSourceType digitalCapture", "Test Tool 1.0", False),))
    for case in ("camera EXIF", "editor text chunk", "editor XMP", "no metadata"):
        assert read(ORDINARY[case]()) == provenance.NOTHING, case


@pytest.mark.parametrize("key, text, expected", [
    ("Comment", "x" * 10 + "sui_image_params", ("Comment: SwarmUI sui_image_params", "SwarmUI")),
    ("fooocus_scheme", "fooocus", ("fooocus_scheme: Fooocus generation parameters", "Fooocus")),
    ("parameters", "a cat\nSteps: 20, Seed: 5", (f"parameters: {GEN}", "AUTOMATIC1111 web UI")),
    ("parameters", "Steps: 20, Sampler: Euler", (f"parameters: {GEN}", "AUTOMATIC1111 web UI")),
    ("parameters", "a cat Steps: 20, Seed: 5", None),  # Steps only at the start of a line
    ("parameters", "Steps: 20, Seed: 1, Model: m1\nForge version: f2", (f"parameters: {GEN}", "Forge (m1)")),
    ("prompt", '{"class_type": "X"}', ("prompt: ComfyUI node graph", "ComfyUI")),
    ("prompt", '{"class": "X"}', None),
    ("other", '{"class_type": "X"}', None),
    ("workflow", '{"nodes": []}', None),
    ("workflow", '{"links": []}', None),
    ("other", '{"nodes": [], "links": []}', None),
    ("invokeai_graph", "{}", ("invokeai_graph: InvokeAI generation metadata", "InvokeAI")),
    ("Dream", "a cat -s 50", ("Dream: InvokeAI generation metadata", "InvokeAI")),
    ("software", "  NovelAI", ("software: NovelAI", "NovelAI")),
    ("Software", "GIMP NovelAI", None),
    ("Title", "NovelAI", None),
    ("Comment", '{"software": "NovelAI"}', ("Comment: NovelAI generation metadata", "NovelAI")),
    ("Comment", '{"Software": "NovelAI"}', ("Comment: NovelAI generation metadata", "NovelAI")),
    ("Title", "Job ID: a7421d2f-b262-44f9-977c-ac23e9c7d3e3", None),
    ("Description", "Job ID: a7421d2f-b262-44f9-977c-ac23e9c7d3e", None),
    ("Description", "x" * provenance.MAX_TEXT + "sui_image_params", None),  # past what is looked at
    ("Description", "x" * (provenance.MAX_TEXT - 16) + "sui_image_params", ("Description: SwarmUI sui_image_params",
                                                                            "SwarmUI")),
])
def test_generator_marker(key, text, expected):
    assert provenance.generator_marker(key, text) == expected


@pytest.mark.parametrize("value, text", [
    ("already text", "already text"),
    (b"UNICODE\0" + "a cat\nSteps: 1".encode("utf-16-be"), "a cat\nSteps: 1"),
    (b"UNICODE\0" + "a cat, Steps: 1".encode("utf-16-le"), "a cat, Steps: 1"),
    (b"UNICODE\0" + "line one\nline two".encode("utf-16-le"), "line one\nline two"),
    (b"UNICODE\0" + b"\x00\x01\x00", b"\x00\x01\x00".decode("utf-16-le", "replace")),  # neither reads cleanly: the last
    (b"ASCII\0\0\0holiday", "holiday"),
    (b"\0" * 8 + "caf\u00e9".encode(), "caf\u00e9"),
    (b"ASCII\0\0\0\xff\xfeabc", "\ufffd\ufffdabc"),  # bytes that are not UTF-8 are replaced, not an error
    (b"ASCII\0\0\0" + b"y" * (2 * provenance.MAX_TEXT + 5), "y" * (2 * provenance.MAX_TEXT - 8)),
])
def test_user_comment(value, text):
    assert provenance._user_comment(value) == text


@pytest.mark.parametrize("manifest, generator", [
    ({"claim_generator_info": [{"name": "Tool", "version": "2.1"}], "claim_generator": "old/1"}, "Tool 2.1"),
    ({"claim_generator_info": [{"name": "Tool"}]}, "Tool"),
    ({"claim_generator_info": [{"name": "Tool", "version": ""}]}, "Tool"),
    ({"claim_generator_info": [{"version": "2"}], "claim_generator": "old/1"}, "old/1"),
    ({"claim_generator_info": {"name": "Tool"}, "claim_generator": "old/1"}, "old/1"),
    ({"claim_generator_info": ["Tool"], "claim_generator": "old/1"}, "old/1"),
    ({"claim_generator_info": [], "claim_generator": "old/1"}, "old/1"),
    ({}, None),
])
def test_claim_generator(manifest, generator):
    assert provenance._generator(manifest) == generator


def test_source_types_of_every_action_in_the_actions_assertions():
    manifest = {"assertions": [
        {"label": "stds.schema-org.CreativeWork", "data": {"author": "x"}},  # skipped, and the rest still read
        {"label": "c2pa.actions.v2", "data": {"actions": [
            {"digitalSourceType": IPTC + "trainedAlgorithmicMedia", "softwareAgent": {"name": "Gen 1"}},
            {"digitalSourceType": "digitalCapture", "softwareAgent": "Cam 2"},
            {"digitalSourceType": "x/y/z", "softwareAgent": 7},
            {"digitalSourceType": ""}, {"digitalSourceType": 5}, {"action": "c2pa.edited"}]}},
        {"label": "stds.exif", "data": {"actions": [{"digitalSourceType": "notAnAction"}]}},
        {"data": {"actions": [{"digitalSourceType": "unlabelled"}]}},
        {"label": "c2pa.actions", "data": None}, {"label": "c2pa.actions"}, {"label": "c2pa.actions", "data": {"actions": None}}]}
    assert provenance._source_types(manifest) == [("trainedAlgorithmicMedia", "Gen 1"), ("digitalCapture", "Cam 2"),
                                                  ("z", None)]
    assert provenance._source_types({"assertions": None}) == [] == provenance._source_types({})


class Store:
    """A C2PA reader that answers with a given manifest store (or times out), and records what it was asked."""

    def __init__(self, store=None, timeout=False):
        self.store, self.timeout, self.asked = store, timeout, []

    def read(self, raw, timeout_s):
        self.asked.append((raw, timeout_s))
        if self.timeout:
            raise ReadTimeout("late")
        return self.store


def manifest_store(*actions, status=(), generator="Tool 3"):
    return {"active_manifest": "m2", "validation_status": [{"code": c} for c in status] + ["not a dict"],
            "manifests": {"m1": {"claim_generator": "stale"}, "m2": {"claim_generator": generator, "assertions": [
                {"label": "c2pa.actions", "data": {"actions": list(actions)}}]}}}


AI = {"digitalSourceType": IPTC + "compositeWithTrainedAlgorithmicMedia", "softwareAgent": "Gen 5"}
CAPTURE = {"digitalSourceType": IPTC + "digitalCapture"}
SIGNED = {"valid": True, "trusted": True, "status": []}


@pytest.mark.parametrize("store, expected", [
    (manifest_store(CAPTURE, AI, {"digitalSourceType": IPTC + "trainedAlgorithmicMedia"}), provenance.Evidence(
        "c2pa", "content credentials: digitalSourceType compositeWithTrainedAlgorithmicMedia", "Gen 5", True,
        {"signature": SIGNED})),
    (manifest_store({"digitalSourceType": IPTC + "algorithmicMedia"}, status=["assertion.dataHash.mismatch"]),
     provenance.Evidence("c2pa", "content credentials: digitalSourceType algorithmicMedia", "Tool 3", True,
                         {"signature": {"valid": False, "trusted": True, "status": ["assertion.dataHash.mismatch"]}})),
    (manifest_store(CAPTURE, {"digitalSourceType": IPTC + "computationalCapture"}), provenance.Evidence(
        "c2pa", "content credentials: digitalSourceType digitalCapture", "Tool 3", False, {"signature": SIGNED})),
    (manifest_store(CAPTURE, status=["signingCredential.untrusted"]), provenance.Evidence(
        "c2pa", "content credentials: digitalSourceType digitalCapture", "Tool 3", None,
        {"signature": {"valid": True, "trusted": False, "status": ["signingCredential.untrusted"]}})),
    (manifest_store(CAPTURE, status=["claimSignature.mismatch"]), provenance.Evidence(
        "c2pa", "content credentials: digitalSourceType digitalCapture", "Tool 3", None,
        {"signature": {"valid": False, "trusted": True, "status": ["claimSignature.mismatch"]}})),
    (manifest_store({"digitalSourceType": IPTC + "digitalArt"}), provenance.Evidence(
        "c2pa", "content credentials without a digital source type", "Tool 3", None, {"signature": SIGNED})),
    ({"manifests": {"m1": {}}}, provenance.Evidence("c2pa", "content credentials without a digital source type", None,
                                                    None, {"signature": SIGNED})),
])
def test_c2pa_evidence_from_the_active_manifest(store, expected):
    reader = Store(store)
    assert provenance.c2pa_evidence(b"..c2pa..", reader) == [expected]
    assert reader.asked == [(b"..c2pa..", provenance.C2PA_TIMEOUT_S)]


def test_c2pa_is_read_only_where_a_marker_is_and_a_late_read_is_reported():
    reader = Store(manifest_store(AI))
    assert provenance.c2pa_evidence(b"no marker here", reader) == [] and reader.asked == []
    assert provenance.c2pa_evidence(b"x" * provenance.MAX_SCAN_BYTES + b"c2pa", reader) == [] and reader.asked == []
    assert provenance.c2pa_evidence(b"..jumb..", reader)[0].ai_generated is True
    assert provenance.c2pa_evidence(b"c2pa", Store(timeout=True)) == [
        provenance.Evidence("c2pa", "manifest not read within 2 s", None, None)]
    for store in (None, {}, {"manifests": []}, {"manifests": None}):
        assert provenance.c2pa_evidence(b"c2pa", Store(store)) == []


def test_read_joins_every_source_in_order_and_any_ai_claim_wins():
    raw = xmp("digitalCapture") + b" c2pa " + xmp("trainedAlgorithmicMedia")
    found = provenance.read(raw, None, Store(manifest_store(CAPTURE)))
    assert found == provenance.Provenance(True, (
        provenance.Evidence("c2pa", "content credentials: digitalSourceType digitalCapture", "Tool 3", False,
                            {"signature": SIGNED}),
        provenance.Evidence("xmp", "IPTC DigitalSourceType digitalCapture", "Test Tool 1.0", False),
        provenance.Evidence("xmp", "IPTC DigitalSourceType trainedAlgorithmicMedia", "Test Tool 1.0", True)))
    assert provenance.read(xmp("digitalCapture") + b"c2pa", None, Store(manifest_store(CAPTURE))).ai_generated is False
    assert provenance.read(b"c2pa", None, Store(manifest_store())).ai_generated is None


def test_xmp_found_twice_counts_once_and_a_packet_without_a_tool_names_none():
    packet = xmp("trainedAlgorithmicMedia").decode()
    bare = ('<x:xmpmeta><Iptc4xmpExt:DigitalSourceType>' + IPTC + 'digitalArt</Iptc4xmpExt:DigitalSourceType>'
            '<b>' + IPTC + 'digitalArt</b></x:xmpmeta>')
    assert provenance.xmp_evidence(packet.encode(), [packet, bare]) == [
        provenance.Evidence("xmp", "IPTC DigitalSourceType trainedAlgorithmicMedia", "Test Tool 1.0", True),
        provenance.Evidence("xmp", "IPTC DigitalSourceType digitalArt", None, None)]
    assert provenance.xmp_evidence(b"x" * provenance.MAX_SCAN_BYTES + packet.encode(), []) == []


def test_evidence_and_provenance_as_dicts():
    e = provenance.Evidence("watermark", "mark", "FLUX", True, {"bits_matched": 40, "of": 46})
    assert e.as_dict() == {"source": "watermark", "detail": "mark", "generator": "FLUX", "ai_generated": True,
                           "bits_matched": 40, "of": 46}
    assert provenance.Provenance(True, (e,)).as_dict() == {"ai_generated": True, "evidence": [e.as_dict()]}
    assert provenance.NOTHING.as_dict() == {"ai_generated": None, "evidence": []}


# -- XMP as Pillow reads it: what the raw scan cannot see ------------------------------------------------------------
RDF = (f'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
       f'Iptc4xmpExt:DigitalSourceType="{IPTC}trainedAlgorithmicMedia"/></rdf:RDF>').encode()
TRAINED = provenance.Evidence("xmp", "IPTC DigitalSourceType trainedAlgorithmicMedia", None, True)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_an_xmp_packet_without_its_xmpmeta_wrapper_is_read_through_pillow(fmt):
    """The raw scan looks for <x:xmpmeta>; a bare rdf:RDF packet is only found in Pillow's copy of it."""
    assert read(picture(fmt, xmp=RDF)) == provenance.Provenance(True, (TRAINED,))
    assert read(picture(fmt, xmp=RDF + b"\xff\xfe")) == provenance.Provenance(True, (TRAINED,))  # not UTF-8: replaced


def test_only_the_first_mebibyte_of_an_xmp_packet_is_looked_at():
    assert read(picture("WEBP", xmp=b" " * (4 * provenance.MAX_TEXT) + RDF)) == provenance.NOTHING
    # counted in bytes before decoding: 2-byte characters fill the first mebibyte at half as many characters
    assert read(picture("WEBP", xmp="\u00e9".encode() * (2 * provenance.MAX_TEXT) + RDF)) == provenance.NOTHING
    assert read(picture("WEBP", xmp=b" " * (4 * provenance.MAX_TEXT - len(RDF)) + RDF)) == provenance.Provenance(
        True, (TRAINED,))


def test_a_png_xmp_chunk_is_read_as_xmp_not_as_generator_text():
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:description>a cat\nSteps: 20, '
                                       'Sampler: Euler</dc:description></x:xmpmeta>', zip=True)
    assert read(picture("PNG", pnginfo=info)) == provenance.NOTHING


def test_a_compressed_png_xmp_text_chunk_is_read_through_pillow():
    """zTXt: Pillow hands it over as text under its chunk key only, and the raw scan sees compressed bytes."""
    info = PngImagePlugin.PngInfo()
    info.add_text("XML:com.adobe.xmp", xmp("trainedAlgorithmicMedia").decode(), zip=True)
    raw = picture("PNG", pnginfo=info)
    assert b"trainedAlgorithmicMedia" not in raw
    assert read(raw) == provenance.Provenance(True, (provenance.Evidence(
        "xmp", "IPTC DigitalSourceType trainedAlgorithmicMedia", "Test Tool 1.0", True),))
