"""The upload page in headless Chromium (Debian's, driven by Playwright; no browser download)."""
from __future__ import annotations

import shutil

import pytest
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
    assert verdict.get_attribute("data-verdict") in ("REAL", "FAKE")
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
