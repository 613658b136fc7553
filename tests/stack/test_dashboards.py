"""Dashboards proven against the real thing: every panel query, run through the real Prometheus
after real uploads, returns data; every metric a panel names is one the services export."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest
import requests
import yaml

from dashboard import build_dashboards
from gateway import metrics
from stack.launch import prometheus_config
from tests.conftest import ROOT, start_stack

DASHBOARDS = sorted((ROOT / "dashboard" / "grafana" / "dashboards").glob("*.json"))
PROMQL_WORDS = {"rate", "sum", "by", "histogram_quantile", "or", "le", "model", "instance", "quantile", "reason",
                "status", "verdict", "endpoint", "source", "ai_generated", "without", "and", "on", "ignoring", "max",
                "min", "avg", "count", "bank", "label", "operation", "agrees"}


def targets() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) for every target of every panel."""
    out = []
    for path in DASHBOARDS:
        d = json.loads(path.read_text())
        out += [(path.name, p["title"], t["expr"]) for p in d["panels"] for t in p["targets"]]
    return out


def as_prometheus_query(expr: str) -> str:
    """What Grafana sends: template variables expanded (All), $__rate_interval resolved."""
    return expr.replace("$__rate_interval", "30s").replace('=~"$model"', '=~".*"').replace('=~"$instance"', '=~".*"')


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', "", expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {w for w in words if w not in PROMQL_WORDS and not w.startswith("__")}


def test_dashboard_json_is_generated_from_build_dashboards():
    rendered = build_dashboards.render()
    assert sorted(rendered) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        assert path.read_text() == rendered[path.name], f"{path.name} is stale: run `make dashboards`"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path):
    d = json.loads(path.read_text())
    assert d["uid"] and d["title"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert {v["name"] for v in d["templating"]["list"]} == {"model", "instance"}
    for p in d["panels"]:
        assert p["targets"] and p["datasource"]["uid"] == "prometheus", p["title"]


def test_promtool_accepts_both_prometheus_configs(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool not installed (apt-get install prometheus)"
    subprocess.run([promtool, "check", "config", str(ROOT / "dashboard" / "prometheus.yml")], check=True)
    from stack.launch import Ports
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(prometheus_config(Ports())))
    subprocess.run([promtool, "check", "config", str(local)], check=True)


def test_every_panel_query_returns_data_right_after_start_and_one_upload(tmp_path, cifake_samples):
    """A fresh stack, one upload, nothing else: every known label set starts at zero, so no panel is empty."""
    fresh = start_stack(tmp_path)
    try:
        name, raw, _ = cifake_samples[0]
        url = f"http://127.0.0.1:{fresh.ports.gateway}"
        assert requests.post(url + "/v1/predict", files={"image": (name, raw)}, timeout=30).status_code == 200
        prom = f"http://127.0.0.1:{fresh.ports.prometheus}/api/v1/query"
        pending = targets()
        deadline = time.time() + 60  # a few scrape intervals (5 s) for rates to have two points
        while pending and time.time() < deadline:
            time.sleep(3)
            still = []
            for dash, title, expr in pending:
                body = requests.get(prom, params={"query": as_prometheus_query(expr)}, timeout=10).json()
                assert body["status"] == "success", f"{dash} / {title}: {body}"
                if not body["data"]["result"]:
                    still.append((dash, title, expr))
            pending = still
    finally:
        fresh.stop()
    print(f"\nchecked {len(DASHBOARDS)} dashboards, {len({(d, t) for d, t, _ in targets()})} panels, "
          f"{len(targets())} queries: {len(targets()) - len(pending)} returned data")
    assert not pending, "queries with no data: " + "; ".join(f"{d} / {t}: {e}" for d, t, e in pending)


def test_every_error_reason_the_gateway_gives_is_initialised():
    """The reasons written in the gateway's and the core's code are metrics' known labels."""
    code = "\n".join(p.read_text() for folder in ("gateway", "fakelens") for p in (ROOT / folder).glob("*.py")
                     if p.name != "metrics.py")
    given = set(re.findall(r'(?:ApiError\(\d+, |ModelError\(|reason = |error_response\(500, )"([a-z_]+)"', code))
    given |= set(re.findall(r'\d{3}: "([a-z_]+)"', code)) | {"models_unavailable"}
    assert len(given) >= 12 and given <= set(metrics.ERROR_REASONS), given - set(metrics.ERROR_REASONS)


def test_every_metric_named_by_a_panel_is_exported(stack, gateway_url, cifake_samples):
    requests.post(gateway_url + "/v1/predict", files={"image": ("x.txt", b"junk")}, timeout=30)
    name, raw, _ = cifake_samples[0]
    requests.post(gateway_url + "/v1/predict", files={"image": (name, raw)}, timeout=30)
    exported = set()
    for port in (stack.ports.gateway, stack.ports.triton_metrics):
        for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
            if line and not line.startswith("#"):
                exported.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    exported |= {"up"}
    gpu_only = {"nv_gpu_utilization", "nv_gpu_memory_used_bytes"}  # no GPU here: the panels fall back to CPU
    for dash, title, expr in targets():
        for metric in metric_names(expr) - gpu_only:
            assert metric in exported, f"{dash} / {title}: {metric} is not exported by any service"


def test_benchmark_gauges_equal_the_benchmark_table(gateway_url):
    table = json.loads((ROOT / "training" / "results" / "benchmark.json").read_text())["models"]
    text = requests.get(gateway_url + "/metrics", timeout=10).text
    checked = 0
    for model, row in table.items():
        for key in ("f1", "precision", "recall", "accuracy", "roc_auc", "train_seconds"):
            if key not in row:
                continue
            m = re.search(rf'^fakelens_model_{key}{{model="{model}"}} (\S+)$', text, re.M)
            assert m, f"fakelens_model_{key} for {model} missing"
            assert float(m.group(1)) == pytest.approx(row[key], abs=1e-9)
            checked += 1
    assert checked >= 4 * 5
