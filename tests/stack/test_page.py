"""The upload page in headless Chromium (Debian's, driven by Playwright; no browser download)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from playwright.sync_api import expect, sync_playwright

from fakelens import watermark
from tests.conftest import ROOT
from training import rule as rule_file
from training.realworld import realworld_dir
from training.watermarks import embed

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser.new_page(viewport={"width": 1200, "height": 900})
        browser.close()


def test_upload_shows_verdict_and_every_model(page, gateway_url, cifake_samples, tmp_path):
    name, raw, label = cifake_samples[-1]
    image = tmp_path / "upload.jpg"
    image.write_bytes(raw)
    page.goto(gateway_url + "/")
    page.set_input_files("#file", str(image))
    verdict = page.locator("#verdict")
    expect(verdict).to_be_visible(timeout=20_000)
    assert verdict.get_attribute("data-verdict") in ("REAL", "FAKE", "UNSURE")
    expect(page.locator("#models .model")).to_have_count(3)
    page.screenshot(path=str(tmp_path / "page.png"))


def test_bad_file_shows_the_reason(page, gateway_url, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    page.goto(gateway_url + "/")
    page.set_input_files("#file", str(bad))
    expect(page.locator("#status.error")).to_contain_text("not a recognised image", timeout=20_000)


def test_benchmark_tab_shows_the_table(page, gateway_url):
    page.goto(gateway_url + "/")
    page.click("#tab-benchmark")
    expect(page.locator("#bench-table tbody tr")).to_have_count(4, timeout=20_000)  # 3 models + ensemble
    expect(page.locator("#realworld-table tbody tr")).to_have_count(8)  # 3 labels x 2 containers + 2 decided rows
    expect(page.locator("#realworld-table tr.decided-row").first).to_contain_text("decided verdicts right")
    expect(page.locator("#cifake-decided")).to_contain_text("UNSURE")


def test_unsure_is_shown_neutral_with_its_reason_and_the_evidence(page, gateway_url, tmp_path):
    """A photo-sized, detailed image with generator metadata: provenance decides, and the page says why;
    the same pixels without metadata are outside the models' domain: UNSURE in the neutral colour."""
    pixels = Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    plain, tagged = tmp_path / "plain.png", tmp_path / "tagged.png"
    pixels.save(plain)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a harbour at dawn\nSteps: 30, Sampler: Euler a, CFG scale: 7, Seed: 42")
    pixels.save(tagged, pnginfo=info)

    page.goto(gateway_url + "/")
    page.set_input_files("#file", str(plain))
    verdict = page.locator("#verdict")
    expect(verdict).to_have_attribute("data-verdict", "UNSURE", timeout=20_000)
    expect(verdict).to_have_class("unsure")
    expect(page.locator("#reason")).to_contain_text("32x32")
    assert verdict.evaluate("e => getComputedStyle(e).color") == "rgb(84, 110, 122)"  # --unsure, neither red nor green
    expect(page.locator("#provenance")).to_be_hidden()
    expect(page.locator("#confidence")).to_be_hidden()
    not_used(page)

    page.set_input_files("#file", str(tagged))
    expect(verdict).to_have_attribute("data-verdict", "FAKE", timeout=20_000)
    expect(page.locator("#evidence li")).to_contain_text("AUTOMATIC1111")
    expect(page.locator("#reason")).to_contain_text("generated")


def not_used(page) -> None:
    """The models' scores are drawn in the neutral colour and marked as not used, never as red or green bars."""
    expect(page.locator("#thumb-note")).to_contain_text("not used")
    for row in page.locator("#models .model").all():
        assert row.locator(".fill").get_attribute("class") == "fill unused"
        assert row.locator(".fill").evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(176, 190, 197)"
        expect(row.locator(".value")).to_contain_text("not used")


def test_a_real_photo_is_unsure_and_the_models_view_is_marked_not_used(page, gateway_url, tmp_path):
    photo = tmp_path / "astronaut.png"
    photo.write_bytes((realworld_dir() / "images" / "scikit-image__astronaut.png").read_bytes())  # the models say 86% fake
    page.goto(gateway_url + "/")
    page.set_input_files("#file", str(photo))
    expect(page.locator("#verdict")).to_have_attribute("data-verdict", "UNSURE", timeout=20_000)
    not_used(page)
    page.screenshot(path=str(tmp_path / "real-photo.png"), full_page=True)


def test_a_watermarked_image_is_fake_by_its_watermark(page, gateway_url, tmp_path):
    sdxl = next(m for m in watermark.MARKS if m.generator == "Stable Diffusion XL")
    rgb = np.asarray(Image.open(realworld_dir() / "images" / "scikit-image__astronaut.png").convert("RGB"))
    marked = tmp_path / "marked.jpg"
    Image.fromarray(embed(rgb, sdxl.bits)).save(marked, "JPEG", quality=95, subsampling=0)
    page.goto(gateway_url + "/")
    page.set_input_files("#file", str(marked))
    expect(page.locator("#verdict")).to_have_attribute("data-verdict", "FAKE", timeout=20_000)
    expect(page.locator("#evidence li")).to_contain_text("watermark")
    expect(page.locator("#evidence li")).to_contain_text("Stable Diffusion XL")
    not_used(page)


def test_a_decided_cifake_image_shows_its_measured_confidence(page, gateway_url, cifake_samples, tmp_path):
    rule = rule_file.load(ROOT / "model_repository")
    for i, (_, raw, _) in enumerate(cifake_samples):
        image = tmp_path / f"cifake-{i}.jpg"
        image.write_bytes(raw)
        page.goto(gateway_url + "/")
        page.set_input_files("#file", str(image))
        verdict = page.locator("#verdict")
        expect(page.locator("#result")).to_be_visible(timeout=20_000)
        if verdict.get_attribute("data-verdict") != "UNSURE":
            break
    expect(page.locator("#confidence")).to_contain_text(f"{100 * rule.confidence['native']:.1f}%")
    expect(page.locator("#confidence")).to_contain_text("measured on 32x32 CIFAKE images")
    expect(page.locator("#thumb-note")).not_to_contain_text("not used")
    fill = page.locator("#models .model .fill").first.get_attribute("class")
    assert fill in ("fill real", "fill fake")
