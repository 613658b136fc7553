"""Known images through the real stack: every verdict on record, reviews by people, and copies of
reviewed images matched (resized, recompressed), surviving a SIGKILL and a restart."""
from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from fakelens.images import open_rgb
from fakelens.known import Index, pdq_of
from fakelens_client import Client
from gateway.config import DEFAULTS
from stack.launch import UNLIMITED, Ports, Stack, free_ports
from tests.conftest import CLIENT, REVIEWER, ROOT, Known, cli, new_database
from training.realworld import load_set, realworld_dir


def copy_of(raw: bytes) -> bytes:
    """The picture as it comes back: resized to 0.7x and re-saved as JPEG q75."""
    img = Image.open(io.BytesIO(raw)).convert("RGB")
    buf = io.BytesIO()
    img.resize((round(img.width * 0.7), round(img.height * 0.7)), Image.LANCZOS).save(buf, "JPEG", quality=75)
    return buf.getvalue()


@pytest.fixture(scope="module")
def dev() -> dict[str, list[bytes]]:
    out = {}
    for item in load_set(realworld_dir()):
        out.setdefault(item["label"], []).append(item["raw"])
    return out


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    k = Known(tmp_path_factory.mktemp("known"))
    yield k
    k.stack.stop()


def test_reviewed_images_come_back_decided_by_review_even_resized_recompressed_and_after_restarts(known, dev):
    ai, photo = dev["ai_generated"][3], dev["real_photo"][3]  # a FLUX LoRA preview; a rocket launch photo
    scans = {}
    for label, raw, note in (("FAKE", ai, "a generator's template preview"), ("REAL", photo, "camera original")):
        first = known.predict(raw)
        assert first["verdict"] == "UNSURE" and first["recorded"] is True and first["scan_id"]
        queue = known.call("GET", "/v1/scans?verdict=UNSURE&reviewed=false&limit=200").json()["scans"]
        assert first["scan_id"] in [s["scan_id"] for s in queue]
        r = known.call("POST", f"/v1/scans/{first['scan_id']}/review", json={"label": label, "note": note})
        assert r.status_code == 201, r.text
        scans[label] = (first["scan_id"], raw, note)
    time.sleep(1.2)  # every worker's index follows the database within a second

    def check() -> None:
        for label, (scan_id, raw, note) in scans.items():
            for upload in (raw, copy_of(raw)):
                got = known.predict(upload)
                assert got["verdict"] == label and got["decided_by"] == "review", got["reason"]
                assert got["match"]["scan_id"] == scan_id and got["match"]["note"] == note
                assert got["match"]["distance"] <= 31 and got["reason"].startswith("Seen before")
        unrelated = dev["real_photo"][20:30] + dev["ai_generated"][20:30]
        assert all(known.predict(raw).get("match") is None for raw in unrelated)  # 20 images nobody reviewed

    check()
    # A review answered 2xx survives a SIGKILL of the gateway (every gunicorn process) and a restart of the stack.
    known.kill_gateway_and_restart()
    for label, (scan_id, _, note) in scans.items():
        record = known.call("GET", f"/v1/scans/{scan_id}").json()
        assert record["review"]["label"] == label and record["review"]["note"] == note
        assert "key" not in str(record["api_key_id"]).lower() and CLIENT not in str(record)
    check()
    # A clean stop leaves one file to copy or back up: each worker closes its connections, and SQLite folds its
    # write-ahead log back into the database (a copy of fakelens.db alone would miss what the log held).
    known.stack.stop()
    assert sorted(p.name for p in known.tmp.glob("fakelens.db*")) == ["fakelens.db"]
    known.start()
    check()


def fakelens(known: Known, *args: str, key: str = REVIEWER) -> subprocess.CompletedProcess:
    """The client's command line against the stack."""
    return cli(*args, "--url", known.url, "--api-key", key)


def test_the_client_says_who_decided_a_reviewed_copy(known, dev, tmp_path):
    raw = dev["ai_generated"][12]
    scan_id = known.predict(raw)["scan_id"]
    assert known.call("POST", f"/v1/scans/{scan_id}/review", json={"label": "FAKE", "note": "a known fake"}).ok
    time.sleep(1.2)  # every worker's index follows within a second
    (tmp_path / "copy.jpg").write_bytes(copy_of(raw))
    r = fakelens(known, "check", str(tmp_path / "copy.jpg"), key=CLIENT)
    assert r.returncode == 0, r.stderr  # it printed a confidence, which a review has not: a TypeError
    assert "copy.jpg: FAKE - Seen before" in r.stdout and "a known fake" in r.stdout, r.stdout


def test_reviewers_work_from_the_command_line(known, dev, tmp_path):
    scan_id = known.predict(dev["real_photo"][8])["scan_id"]
    r = fakelens(known, "review", scan_id, "REAL", "--note", "checked with the photographer")
    assert r.returncode == 0 and f"scan {scan_id}: reviewed as REAL" in r.stdout, r.stderr
    assert Client(known.url, REVIEWER).scan_record(scan_id)["review"]["note"] == "checked with the photographer"
    r = fakelens(known, "review", scan_id, "FAKE", key=CLIENT)  # a client's key may not review
    assert r.returncode == 1 and "403" in r.stderr, r.stderr
    r = fakelens(known, "bank", "export", "reviewed", str(tmp_path / "list.csv"))
    rows = (tmp_path / "list.csv").read_text().splitlines()
    assert r.returncode == 0 and rows[0] == "pdq,label,note" and any("checked with the photographer" in x for x in rows)
    distinct = len({tuple(row.split(",")[:2]) for row in rows[1:]})  # two scans of one picture: one hash, twice
    r = fakelens(known, "bank", "import", "from-cli", str(tmp_path / "list.csv"))
    assert r.returncode == 0 and f"{distinct} imported, {len(rows) - 1 - distinct} already held" in r.stdout, r.stdout
    r = fakelens(known, "bank", "import", "from-cli", str(tmp_path / "list.csv"))  # the same list again
    assert r.returncode == 0 and f"0 imported, {len(rows) - 1} already held" in r.stdout, r.stdout
    r = fakelens(known, "bank", "import", "from-cli", str(tmp_path / "missing.csv"))
    assert r.returncode == 1 and "missing.csv" in r.stderr and "Traceback" not in r.stderr


def test_reviewer_endpoints_need_a_reviewer_key(known, dev):
    scan_id = known.predict(dev["real_photo"][0])["scan_id"]
    for key, status in ((None, 401), ("wrong", 401), (CLIENT, 403)):
        for method, path, kw in (("GET", f"/v1/scans/{scan_id}", {}), ("GET", "/v1/scans", {}),
                                 ("POST", f"/v1/scans/{scan_id}/review", {"json": {"label": "REAL"}}),
                                 ("GET", "/v1/banks/reviewed/export", {})):
            r = known.call(method, path, key, **kw)
            assert r.status_code == status and r.json()["error"], (key, path, r.text)


def test_bad_review_input_is_a_4xx_with_a_reason(known, dev):
    scan_id = known.predict(dev["real_photo"][1])["scan_id"]
    cases = [(f"/v1/scans/{'0' * 32}/review", {"json": {"label": "FAKE"}}, 404, "unknown_scan"),
             (f"/v1/scans/{scan_id}/review", {"json": {"label": "MAYBE"}}, 400, "bad_label"),
             (f"/v1/scans/{scan_id}/review", {"json": {"label": "FAKE", "note": "x" * 5000}}, 413, "note_too_large"),
             (f"/v1/scans/{scan_id}/review", {"json": {"label": "FAKE", "note": "a\x00b"}}, 400, "bad_note"),
             (f"/v1/scans/{scan_id}/review", {"data": "not json"}, 400, "bad_request")]
    for path, kw, status, reason in cases:
        r = known.call("POST", path, **kw)
        assert r.status_code == status and r.json()["error"] == reason, (path, r.text)
    assert known.call("GET", f"/v1/scans/{'0' * 32}").status_code == 404


def test_banks_take_known_images_and_share_them_as_threatexchange_csv(known, dev):
    raw = dev["ai_generated"][30]
    r = known.call("POST", "/v1/banks/shared-list/entries", files={"image": ("a.webp", raw)},
                   data={"label": "FAKE", "note": "from a partner's list"})
    assert r.status_code == 201, r.text
    csv_text = known.call("GET", "/v1/banks/shared-list/export").text
    assert csv_text.splitlines()[0] == "pdq,label,note" and r.json()["pdq"] in csv_text
    first = known.call("POST", "/v1/banks/imported/import", data=csv_text.replace("partner", "copied"))
    assert first.status_code == 201 and first.json()["imported"] == 1 and first.json()["already_held"] == 0
    again = known.call("POST", "/v1/banks/imported/import", data=csv_text).json()  # the same list once more
    assert again["imported"] == 0 and again["already_held"] == 1
    assert known.call("POST", "/v1/banks/imported/import", data="pdq,label,note\nxyz,FAKE,\n").status_code == 400
    time.sleep(1.2)
    got = known.predict(copy_of(raw))
    assert got["verdict"] == "FAKE" and got["decided_by"] == "review" and got["match"]["bank"] in ("shared-list", "imported")


def test_a_large_bank_goes_out_as_it_came_in_a_page_at_a_time(known):
    from gateway.review import EXPORT_PAGE

    rows = [f"{i:064x},{'FAKE' if i % 2 else 'REAL'},row {i}" for i in range(2 * EXPORT_PAGE + 7)]
    sent = "pdq,label,note\n" + "".join(row + "\n" for row in rows)
    r = known.call("POST", "/v1/banks/large/import", data=sent)
    assert r.status_code == 201 and r.json()["imported"] == len(rows), r.text
    assert known.call("GET", "/v1/banks/large/export").text == sent


def test_a_list_saved_by_a_spreadsheet_imports_as_it_was(known):
    """A byte-order mark and CRLF line ends, as spreadsheets write CSV."""
    sent = "pdq,label,note\n" + "".join(f"{i:064x},FAKE,\"row {i}, quoted\"\n" for i in range(1, 4))
    r = known.call("POST", "/v1/banks/spreadsheet/import", data=("\ufeff" + sent.replace("\n", "\r\n")).encode())
    assert r.status_code == 201 and r.json()["imported"] == 3, r.text
    assert known.call("GET", "/v1/banks/spreadsheet/export").text == sent


def test_without_a_keys_file_reviews_answer_403_saying_how_to_add_a_reviewer(gateway_url):
    r = requests.get(gateway_url + "/v1/scans", timeout=10)
    assert r.status_code == 403 and "KEY reviewer" in r.json()["message"]
    body = requests.post(gateway_url + "/v1/predict", files={"image": ("a.png", (ROOT / "gateway" / "static" /
                                                                               "screenshot.png").read_bytes())},
                         timeout=60).json()
    assert body["recorded"] is True and len(body["scan_id"]) == 32


def test_on_postgresql_reviews_survive_a_sigkill_and_eight_reviewers_at_once_lose_nothing(tmp_path, postgres, dev):
    from concurrent.futures import ThreadPoolExecutor

    known = Known(tmp_path, new_database(postgres, "killtest"))
    try:
        photos = dev["real_photo"][30:46]
        scan_ids = [known.predict(raw)["scan_id"] for raw in photos]

        def review(i: int) -> int:
            return known.call("POST", f"/v1/scans/{scan_ids[i]}/review",
                              json={"label": "REAL", "note": f"reviewer {i % 8}"}).status_code
        with ThreadPoolExecutor(8) as pool:  # 8 reviewers at once, through both gunicorn workers
            assert set(pool.map(review, range(len(scan_ids)))) == {201}
        known.kill_gateway_and_restart()
        for i, scan_id in enumerate(scan_ids):
            assert known.call("GET", f"/v1/scans/{scan_id}").json()["review"]["note"] == f"reviewer {i % 8}"
        exported = known.call("GET", "/v1/banks/reviewed/export").text.splitlines()
        assert len(exported) == 1 + len(scan_ids)  # one bank entry per reviewed scan
    finally:
        known.stack.stop()


def test_on_sqlite_a_locked_database_never_fails_a_prediction(tmp_path, cifake_samples):
    """Another process holds the SQLite file's write lock: predictions answer 200 unrecorded, then record again."""
    import sqlite3

    known = Known(tmp_path)
    try:
        raw = cifake_samples[0][1]
        first = known.predict(raw)
        assert first["recorded"] is True
        lock = sqlite3.connect(str(tmp_path / "fakelens.db"), isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        start = time.time()
        answers = [known.predict(raw) for _ in range(6)]
        assert all(a["verdict"] for a in answers) and not any(a["recorded"] for a in answers)
        assert time.time() - start < 6 * 2 + 5  # each wait is bounded; after one, the store does not wait again
        # A review cannot wait the lock out: a 503 that says when to try again (the client's retries follow it)
        resp = known.call("POST", f"/v1/scans/{first['scan_id']}/review", json={"label": "REAL", "note": ""})
        assert resp.status_code == 503 and resp.json()["error"] == "database_unavailable", resp.text
        assert int(resp.headers["Retry-After"]) == resp.json()["retry_after"] >= 1
        lock.execute("ROLLBACK")
        lock.close()
        time.sleep(2.5)  # past the store's retry pause
        assert known.predict(raw)["recorded"] is True
    finally:
        known.stack.stop()


def test_the_database_down_during_a_load_never_fails_a_prediction(tmp_path, postgres, cifake_samples):
    """PostgreSQL stopped under load: every prediction still 200, with "recorded": false and the failure counted;
    records resume once it is back."""
    from concurrent.futures import ThreadPoolExecutor

    url = new_database(postgres, "downtest")
    stack = Stack(Ports(*free_ports(5)), run_dir=tmp_path, services=("triton", "gateway"), workers=2, threads=4,
                  database_url=url, limits=UNLIMITED).start()
    gateway = f"http://127.0.0.1:{stack.ports.gateway}"
    images = [raw for _, raw, _ in cifake_samples]

    def load(seconds: float) -> list[tuple[int, bool | None]]:
        def one(i: int):
            r = requests.post(gateway + "/v1/predict", files={"image": ("x.jpg", images[i % len(images)])}, timeout=60)
            return r.status_code, r.json().get("recorded")
        with ThreadPoolExecutor(8) as pool:
            out, start, i = [], time.time(), 0
            while time.time() - start < seconds:
                out += list(pool.map(one, range(i, i + 8)))
                i += 8
            return out

    stopped = False
    try:
        before = load(3)
        assert {s for s, _ in before} == {200} and all(rec for _, rec in before)
        postgres.stop()
        stopped = True
        during = load(6)
        assert {s for s, _ in during} == {200}, during  # no prediction failed
        assert sum(rec is False for _, rec in during) >= len(during) - 8  # the ones in flight may have made it
        metrics = requests.get(gateway + "/metrics", timeout=10).text
        failed = sum(float(line.split()[-1]) for line in metrics.splitlines()
                     if line.startswith('fakelens_record_failures_total{operation="record"}'))
        assert failed >= sum(rec is False for _, rec in during)
        postgres.start()
        stopped = False
        time.sleep(3)  # past the store's retry pause
        after = load(3)
        assert {s for s, _ in after} == {200} and all(rec for _, rec in after[-8:]), after
    finally:
        stack.stop()
        if stopped:  # the session's other tests need it
            postgres.start()


def private_mb(pid: int) -> float:
    """Memory only this process holds (not shared with the process it forked from)."""
    rollup = (Path("/proc") / str(pid) / "smaps_rollup").read_text()
    return sum(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Private_")) / 1024


def test_the_master_takes_up_a_bank_once_and_every_worker_shares_and_matches_it(tmp_path, dev):
    """gunicorn's master builds the app and takes the banks up before it forks: the workers share the index
    (copy-on-write) instead of each holding a copy, and match it from their first request."""
    import secrets
    import tracemalloc

    from gateway.storage import Storage

    url = f"sqlite:///{tmp_path / 'fakelens.db'}"
    raw, n = dev["ai_generated"][5], 1_000_000
    banks = Storage(url).banks
    banks.add_entries("shared", {"pdq": [secrets.token_hex(32) for _ in range(n)], "pdq_quality": [100] * n,
                                 "label": ["REAL"] * n, "note": ["noise"] * n}, None)
    pdq, quality = pdq_of(open_rgb(raw, DEFAULTS["MAX_PIXELS"]))
    banks.add_entries("shared", {"pdq": [pdq], "pdq_quality": [quality], "label": ["FAKE"], "note": ["the last one"]},
                      None)
    tracemalloc.start()
    index = Index()
    index.take_up(banks)
    index_mb = (tracemalloc.get_traced_memory()[0] + index.hash_bytes()) / 2**20  # faiss's, unseen by tracemalloc
    tracemalloc.stop()
    del index
    stack = Stack(Ports(*free_ports(5)), run_dir=tmp_path / "run", services=("triton", "gateway"), workers=2,
                  threads=4, database_url=url, limits=UNLIMITED).start()
    try:
        master = next(s for s in stack.started if s.name == "gateway").proc.pid
        workers = [int(p.name) for p in Path("/proc").iterdir()
                   if p.name.isdigit() and (p / "stat").read_text().rsplit(")", 1)[1].split()[1] == str(master)]
        assert len(workers) == 2
        held = [private_mb(w) for w in workers]  # as they start (serving adds their own buffers)
        assert index_mb > 50 and max(held) < index_mb, (index_mb, held)  # no worker holds a copy of its own
        for _ in range(8):  # both workers
            got = requests.post(f"http://127.0.0.1:{stack.ports.gateway}/v1/predict", timeout=60,
                                files={"image": ("x", copy_of(raw))}).json()
            assert got["decided_by"] == "review" and got["match"]["note"] == "the last one", got
    finally:
        stack.stop()


def test_review_from_the_page_then_a_resized_copy_shows_the_match(known, dev, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from tests.stack.test_page import CHROMIUM, FLAGS

    photo, copy = tmp_path / "coffee.png", tmp_path / "coffee-copy.jpg"
    photo.write_bytes(dev["real_photo"][1])
    copy.write_bytes(copy_of(dev["real_photo"][1]))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(known.url + "/")
        page.fill("#api-key", REVIEWER)
        page.dispatch_event("#api-key", "change")  # asked once: kept in this browser
        page.set_input_files("#file", str(photo))
        verdict = page.locator("#verdict")
        expect(verdict).to_have_attribute("data-verdict", "UNSURE", timeout=30_000)

        page.click("#tab-review")
        card = page.locator(".scan").first  # newest first: the upload just made
        expect(card.locator(".thumb img")).to_be_visible(timeout=10_000)  # kept (FAKELENS_KEEP_IMAGES=1)
        card.locator(".note-input").fill("a coffee cup, photographed")
        card.locator("button.label.real").click()
        expect(card.locator(".done")).to_contain_text("Reviewed as REAL", timeout=10_000)
        page.screenshot(path=str(tmp_path / "review-tab.png"), full_page=True)

        time.sleep(1.2)  # every gateway worker's index follows the database within a second
        page.click("#tab-detect")
        page.set_input_files("#file", str(copy))
        expect(verdict).to_have_attribute("data-verdict", "REAL", timeout=30_000)
        expect(page.locator("#match")).to_contain_text("Seen before: reviewed as REAL on 20")
        expect(page.locator("#match")).to_contain_text("a coffee cup, photographed")
        expect(page.locator("#thumb-note")).to_contain_text("not used")
        page.screenshot(path=str(tmp_path / "match.png"), full_page=True)
        browser.close()


def flipped(pdq: str, bits: int) -> str:
    """The hash with its first `bits` bits inverted: a copy at that Hamming distance."""
    value = int(pdq, 16) ^ (((1 << bits) - 1) << (256 - bits))
    return f"{value:064x}"
