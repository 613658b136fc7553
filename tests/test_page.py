"""The upload page in headless Chromium (Debian's, driven by Playwright; no browser download)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from playwright.sync_api import expect, sync_playwright

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
    expect(page.locator("#realworld-table tbody tr")).to_have_count(6)  # 3 labels x 2 containers


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

    page.set_input_files("#file", str(tagged))
    expect(verdict).to_have_attribute("data-verdict", "FAKE", timeout=20_000)
    expect(page.locator("#evidence li")).to_contain_text("AUTOMATIC1111")
    expect(page.locator("#reason")).to_contain_text("generated")
