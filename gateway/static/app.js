"use strict";
const $ = (sel) => document.querySelector(sel);
$("#here").textContent = location.origin;

// Tabs
document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => {
  document.querySelectorAll(".tab, .panel").forEach((el) => el.classList.remove("active"));
  tab.classList.add("active");
  $("#" + tab.dataset.tab).classList.add("active");
  if (tab.dataset.tab === "benchmark") loadBenchmark();
  if (tab.dataset.tab === "review") loadQueue();
}));

// Upload: file picker or drag and drop
const drop = $("#drop");
$("#file").addEventListener("change", (e) => e.target.files[0] && classify(e.target.files[0]));
["dragenter", "dragover"].forEach((ev) => drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((ev) => drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => e.dataTransfer.files[0] && classify(e.dataTransfer.files[0]));

function pct(p) { return (100 * p).toFixed(1) + "%"; }

// Optional API key (when the service requires one): kept in this browser only, sent as a Bearer token.
const keyInput = $("#api-key");
keyInput.value = localStorage.getItem("fakelens-api-key") || "";
keyInput.addEventListener("change", () => localStorage.setItem("fakelens-api-key", keyInput.value.trim()));
function auth() { return keyInput.value.trim() ? { Authorization: "Bearer " + keyInput.value.trim() } : {}; }

async function classify(file) {
  const preview = $("#preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("#drop-hint").hidden = true;
  $("#result").hidden = true;
  $("#status").className = "";
  $("#status").textContent = "Asking the models ...";
  const form = new FormData();
  form.append("image", file);
  let body;
  try {
    const resp = await fetch("/v1/predict", { method: "POST", body: form, headers: auth() });
    body = await resp.json();
    if (!resp.ok) throw new Error(body.message || resp.statusText);
  } catch (err) {
    $("#status").className = "error";
    $("#status").textContent = "Could not classify this image: " + err.message;
    return;
  }
  $("#status").textContent = body.degraded ? "Answered without " + body.missing.join(", ") + " (unavailable)." : "";
  show(body);
}

const HEADLINE = { FAKE: "AI-generated", REAL: "Real photo", UNSURE: "Unsure" };
const MEASURED_ON = { native: "32x32 CIFAKE images", resized: "enlarged 32x32 CIFAKE images" };

function show(r) {
  const v = $("#verdict");
  v.className = r.verdict.toLowerCase();
  v.dataset.verdict = r.verdict;
  v.textContent = HEADLINE[r.verdict] + (r.decided_by === "provenance" ? " - the file says so"
    : r.decided_by === "review" ? " - a reviewer said so" : "");
  // A decided verdict's confidence is how often such verdicts were right when measured, not a model's probability.
  $("#confidence").textContent = r.confidence !== null
    ? `Verdicts like this one were right ${pct(r.confidence)} of the time, measured on ${MEASURED_ON[r.domain]}.` : "";
  $("#confidence").hidden = r.confidence === null;
  $("#match").textContent = r.match
    ? `Seen before: reviewed as ${r.match.label} on ${(r.match.reviewed_at || "").slice(0, 10)}`
      + (r.match.note ? `: ${r.match.note}` : "") + ` (bank "${r.match.bank}", PDQ distance ${r.match.distance})` : "";
  $("#match").hidden = !r.match;
  $("#reason").textContent = r.reason || "";
  $("#reason").hidden = !r.reason || Boolean(r.match);  // a match has its own line below the verdict
  const evidence = $("#evidence");
  evidence.innerHTML = "";
  for (const e of r.provenance.evidence) {
    const li = document.createElement("li");
    const claim = e.ai_generated === true ? "says AI-generated" : e.ai_generated === false ? "says camera capture" : "claims neither";
    li.textContent = `${e.source}: ${e.detail}${e.generator ? " (" + e.generator + ")" : ""} - ${claim}`
      + (e.signature ? ` - signature ${e.signature.valid ? "valid" : "invalid"}, signer ${e.signature.trusted ? "trusted" : "on no trust list"}` : "");
    evidence.appendChild(li);
  }
  $("#provenance").hidden = !r.provenance.evidence.length;
  const t = r.thumbnail;
  $("#thumb-note").textContent = `What the models make of the ${t.width}x${t.height} upload scaled to 32x32`
    + (r.models_used ? ":" : ": not used for this verdict" + (t.in_domain ? "." : ", since the image is outside what they know."));
  const models = $("#models");
  models.innerHTML = "";
  for (const [name, m] of Object.entries(r.models)) {
    const row = document.createElement("div");
    row.className = "model";
    row.innerHTML = `<span class="name"></span>
      <span class="bar"><span class="fill"></span></span>
      <span class="value"></span>`;
    row.querySelector(".name").textContent = name + (m.version ? " v" + m.version : "");
    row.querySelector(".fill").style.width = pct(m.prob_fake);
    // Scores the verdict did not use are drawn neutral: a red "99% fake" bar would say what the service did not.
    row.querySelector(".fill").classList.add(r.models_used ? m.verdict.toLowerCase() : "unused");
    row.querySelector(".value").textContent = (r.models_used ? "" : "not used · ")
      + `P(fake) ${pct(m.prob_fake)} · ${m.latency_ms.toFixed(1)} ms`;
    models.appendChild(row);
  }
  $("#result").hidden = false;
}

let benchLoaded = false;
async function loadBenchmark() {
  if (benchLoaded) return;
  const body = await (await fetch("/v1/models", { headers: auth() })).json();
  const tbody = $("#bench-table tbody");
  const rows = body.models.map((m) => [m.name, m.ready ? "yes" : "no", m.benchmark]);
  if (body.ensemble) rows.push(["ensemble", "", body.ensemble]);
  const f = (x, d = 4) => (typeof x === "number" ? x.toFixed(d) : "–");
  for (const [name, ready, b] of rows) {
    const tr = document.createElement("tr");
    const cells = b ? [name, ready, f(b.f1), f(b.precision), f(b.recall), f(b.accuracy), f(b.roc_auc), f(b.ece),
      b.parameters ? b.parameters.toLocaleString() : "–", b.train_seconds ? f(b.train_seconds, 0) + " s" : "–", b.device || ""]
      : [name, ready, "no benchmark yet", "", "", "", "", "", "", "", ""];
    cells.forEach((c) => { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); });
    tbody.appendChild(tr);
  }
  $("#bench-notes").textContent = (body.notes || []).join(" ");
  const cell = (tr, c) => { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); };
  if (body.ensemble && body.ensemble.decided_accuracy !== undefined) {
    $("#cifake-decided").textContent = `Served verdict on the whole CIFAKE test split: ${pct(body.ensemble.unsure_rate)} UNSURE, `
      + `${pct(body.ensemble.decided_accuracy)} of the rest right` + (body.ensemble.enlarged
        ? `; on test images enlarged 1.25-4x: ${pct(body.ensemble.enlarged.unsure_rate)} UNSURE, `
          + `${pct(body.ensemble.enlarged.decided_accuracy)} of the rest right.` : ".");
  }
  const rw = $("#realworld-table tbody");
  for (const [container, figures] of Object.entries(body.realworld || {})) {
    if (container === "images" || !figures) continue;
    for (const label of ["real_photo", "human_nonphoto", "ai_generated"]) {
      const f = figures[label];
      const tr = document.createElement("tr");
      [label, container.replace("_", " "), f.images, f.decided, f.right, f.wrong, f.UNSURE].forEach((c) => cell(tr, c));
      rw.appendChild(tr);
    }
    const all = document.createElement("tr");
    all.className = "decided-row";
    ["all: decided verdicts right", container.replace("_", " "), body.realworld.images, figures.decided,
      figures.decided ? pct(figures.decided_right) : "none decided", "", ""].forEach((c) => cell(all, c));
    rw.appendChild(all);
  }
  $("#realworld").hidden = !body.realworld;
  benchLoaded = true;
}

// Review tab: the queue of UNSURE scans nobody reviewed, each with REAL / FAKE and a note.
async function loadQueue() {
  const queue = $("#queue");
  queue.innerHTML = "";
  const resp = await fetch("/v1/scans?verdict=UNSURE&reviewed=false&limit=50", { headers: auth() });
  const body = await resp.json();
  if (!resp.ok) {
    $("#review-status").className = "error";
    $("#review-status").textContent = body.message || resp.statusText;
    return;
  }
  $("#review-status").className = "";
  $("#review-status").textContent = body.scans.length
    ? `${body.scans.length}${body.next ? "+" : ""} undecided scan${body.scans.length === 1 ? "" : "s"} wait`
      + `${body.scans.length === 1 ? "s" : ""} for a review.` : "Nothing waits for a review.";
  for (const s of body.scans) queue.appendChild(card(s));
}

function card(s) {
  const el = document.createElement("div");
  el.className = "scan";
  el.dataset.scan = s.scan_id;
  el.innerHTML = `<div class="thumb"></div><div class="about"><div class="meta"></div>
    <input class="note-input" maxlength="2000" placeholder="note (what you saw, where it came from)">
    <button class="label real" data-label="REAL">Real photo</button>
    <button class="label fake" data-label="FAKE">AI-generated</button><span class="done"></span></div>`;
  el.querySelector(".meta").textContent = `${s.width}x${s.height} ${s.format || ""} · ${s.created_at.replace("T", " ")}`
    + ` · models' P(fake) of the thumbnail ${pct(s.prob_fake)} · SHA-256 ${s.sha256.slice(0, 12)}…`
    + (s.pdq ? ` · PDQ ${s.pdq.slice(0, 12)}… (quality ${s.pdq_quality})` : "");
  if (s.image_kept) {
    fetch(`/v1/scans/${s.scan_id}/image`, { headers: auth() }).then((r) => (r.ok ? r.blob() : null)).then((b) => {
      if (b) { const img = document.createElement("img"); img.src = URL.createObjectURL(b); el.querySelector(".thumb").appendChild(img); }
    });
  } else {
    el.querySelector(".thumb").textContent = "image not kept (FAKELENS_KEEP_IMAGES)";
  }
  el.querySelectorAll("button.label").forEach((b) => b.addEventListener("click", async () => {
    const resp = await fetch(`/v1/scans/${s.scan_id}/review`, {
      method: "POST", headers: { ...auth(), "Content-Type": "application/json" },
      body: JSON.stringify({ label: b.dataset.label, note: el.querySelector(".note-input").value }) });
    const out = await resp.json();
    el.querySelector(".done").textContent = resp.ok ? `Reviewed as ${out.review.label}.` : (out.message || resp.statusText);
    el.classList.toggle("reviewed", resp.ok);
  }));
  return el;
}
