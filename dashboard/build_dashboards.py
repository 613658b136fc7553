"""Generate the Grafana dashboard JSON in dashboard/grafana/dashboards/.

    python dashboard/build_dashboards.py

The panels are declared once here, compactly; the JSON files Grafana
provisions are this script's output (a test checks they are in sync).
"""
from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
MODEL = 'model=~"$model"'
R = "$__rate_interval"


def target(expr: str, legend: str = "", instant: bool = False) -> dict:
    """One query; `panel` gives it its refId (A, B, ...)."""
    t = {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
    if instant:
        t.update({"instant": True, "range": False, "format": "table"})
    return t


def panel(title: str, targets: list[dict], unit: str = "short", kind: str = "timeseries", w: int = 12, h: int = 8,
          description: str = "", **options) -> dict:
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    p = {"type": kind, "title": title, "description": description, "datasource": DATASOURCE, "targets": targets,
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}, "gridPos": {"w": w, "h": h}, "options": options}
    return p


def quantiles(metric: str, by: str, legend: str, selector: str = "") -> list[dict]:
    return [target(f"histogram_quantile({q}, sum by (le{by}) (rate({metric}_bucket{{{selector}}}[{R}])))",
                   f"p{int(q * 100)} {legend}") for q in (0.5, 0.95, 0.99)]


def triton_mean(counter: str, legend: str) -> dict:
    """Triton's durations are counters: mean per request = rate(duration) / rate(successes)."""
    return target(f"rate({counter}{{{MODEL}}}[{R}]) / rate(nv_inference_request_success{{{MODEL}}}[{R}]) / 1000",
                  legend)


def variables() -> dict:
    def var(name: str, query: str) -> dict:
        return {"name": name, "label": name, "type": "query", "datasource": DATASOURCE, "query": query,
                "definition": query, "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
                "current": {"text": "All", "value": "$__all"}}
    return {"list": [var("model", "label_values(nv_inference_request_success, model)"),
                     var("instance", "label_values(up, instance)")]}


def layout(panels: list[dict]) -> list[dict]:
    """Give each panel an id and place them left to right, top to bottom."""
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        g = p["gridPos"]
        if x + g["w"] > 24:
            x, y, row_h = 0, y + row_h, 0
        g.update({"x": x, "y": y})
        x += g["w"]
        row_h = max(row_h, g["h"])
        p["id"] = i
    return panels


def dashboard(uid: str, title: str, panels: list[dict], tags: list[str]) -> dict:
    return {"uid": uid, "title": title, "tags": tags, "timezone": "browser", "schemaVersion": 39, "version": 1,
            "refresh": "10s", "time": {"from": "now-30m", "to": "now"}, "editable": True,
            "templating": variables(), "panels": layout(panels), "annotations": {"list": []}}


def latency() -> dict:
    predict = 'endpoint=~"/v1/predict.*", instance=~"$instance"'
    return dashboard("fakelens-latency", "fakelens: latency and traffic", [
        panel("Gateway latency (predict endpoints)", quantiles("fakelens_http_request_duration_seconds", "", "",
                                                               predict), "s",
              description="End-to-end time of /v1/predict and /v1/predict/batch, from the gateway's histogram."),
        panel("Per-model Triton call latency (from the gateway)",
              quantiles("fakelens_triton_call_duration_seconds", ", model", "{{model}}", MODEL), "s"),
        panel("Triton mean request time per model", [triton_mean("nv_inference_request_duration_us", "{{model}}")],
              "ms", w=8),
        panel("Triton mean queue time per model", [triton_mean("nv_inference_queue_duration_us", "{{model}}")],
              "ms", w=8),
        panel("Triton mean compute time per model", [triton_mean("nv_inference_compute_infer_duration_us", "{{model}}")],
              "ms", w=8),
        panel("Triton request time quantiles (summary)",
              [target(f'nv_inference_request_summary_us{{{MODEL}, quantile=~"0.5|0.9|0.99"}} / 1000',
                      "{{model}} q{{quantile}}")], "ms"),
        panel("Throughput", [target(f"rate(nv_inference_request_success{{{MODEL}}}[{R}])", "{{model}} requests"),
                             target(f'sum(rate(fakelens_images_total{{instance=~"$instance"}}[{R}]))',
                                    "gateway images")], "reqps"),
        panel("Errors", [target(f"sum by (reason) (rate(fakelens_errors_total[{R}]))", "gateway {{reason}}"),
                         target(f"rate(nv_inference_request_failure{{{MODEL}}}[{R}])", "triton {{model}}"),
                         target(f"rate(fakelens_degraded_answers_total[{R}])", "degraded answers"),
                         target(f"rate(fakelens_c2pa_abandoned_total[{R}])", "C2PA reads killed at their deadline")],
              "reqps"),
        panel("Gateway requests by status", [target(
            f'sum by (status) (rate(fakelens_http_request_duration_seconds_count{{instance=~"$instance"}}[{R}]))',
            "{{status}}")], "reqps", w=8),
        panel("Pending requests in Triton", [target(f"nv_inference_pending_request_count{{{MODEL}}}", "{{model}}")],
              w=8),
        panel("Average batch size", [target(
            f"rate(nv_inference_count{{{MODEL}}}[{R}]) / rate(nv_inference_exec_count{{{MODEL}}}[{R}])", "{{model}}")],
              w=8, description="Images per model execution: how much the dynamic batcher merges."),
        panel("Utilisation (GPU where present, CPU)", [target("nv_gpu_utilization or nv_cpu_utilization",
                                                              "{{__name__}} {{gpu_uuid}}")], "percentunit"),
        panel("Memory (GPU where present, CPU)", [target("nv_gpu_memory_used_bytes or nv_cpu_memory_used_bytes",
                                                         "{{__name__}} {{gpu_uuid}}")], "bytes"),
    ], ["fakelens", "latency"])


def benchmark() -> dict:
    figures = ("f1", "precision", "recall", "accuracy", "roc_auc")
    table = panel("Benchmark table (CIFAKE test split, 20,000 images)",
                  [target(f"fakelens_model_{f}", f, instant=True) for f in figures], "percentunit", kind="table",
                  w=24, h=7, showHeader=True)
    table["transformations"] = [
        {"id": "merge"},
        {"id": "organize", "options": {"excludeByName": {"Time": True, "__name__": True, "instance": True,
                                                         "job": True},
                                       "renameByName": {f"Value #{chr(65 + i)}": f for i, f in enumerate(figures)}}}]
    return dashboard("fakelens-benchmark", "fakelens: model benchmark", [
        table,
        panel("F1 per model", [target("fakelens_model_f1", "{{model}}", instant=True)], "percentunit",
              kind="bargauge", w=8, orientation="horizontal", displayMode="gradient"),
        panel("Precision and recall", [target("fakelens_model_precision", "{{model}} precision", instant=True),
                                       target("fakelens_model_recall", "{{model}} recall", instant=True)],
              "percentunit", kind="bargauge", w=8, orientation="horizontal", displayMode="gradient"),
        panel("Training time", [target('fakelens_model_train_seconds{model!="ensemble"}', "{{model}}", instant=True)],
              "s", kind="bargauge", w=8, orientation="horizontal", displayMode="basic"),
        panel("Verdicts over time", [target(f"sum by (model, verdict) (rate(fakelens_verdicts_total[{R}]))",
                                            "{{model}} {{verdict}}")], "reqps", w=16),
        panel("Verdict shares (FAKE, UNSURE)", [target(
            f'sum(rate(fakelens_verdicts_total{{model="ensemble", verdict="{v}"}}[{R}])) '
            f'/ sum(rate(fakelens_verdicts_total{{model="ensemble"}}[{R}]))', f"{v} share")
            for v in ("FAKE", "UNSURE")], "percentunit", w=8),
        panel("Provenance evidence by source", [target(
            f"sum by (source, ai_generated) (rate(fakelens_provenance_evidence_total[{R}]))",
            "{{source}} (ai_generated {{ai_generated}})")], "reqps"),
        panel("Upload size (median, p95)", [
            target(f"histogram_quantile(0.5, sum by (le) (rate(fakelens_upload_bytes_bucket[{R}])))", "median"),
            target(f"histogram_quantile(0.95, sum by (le) (rate(fakelens_upload_bytes_bucket[{R}])))", "p95")],
              "bytes"),
        panel("Scan records: stored, and failed (database down or locked)", [
            target(f"sum(rate(fakelens_scans_recorded_total[{R}]))", "stored"),
            target(f"sum by (operation) (rate(fakelens_record_failures_total[{R}]))", "failed: {{operation}}")],
              "reqps", w=8, description="Every prediction is recorded; a failed record never fails the prediction."),
        panel("Scan record write time", quantiles("fakelens_record_duration_seconds", "", "write"), "s", w=8,
              description="Storing one request's scan records, the wait for the database's write lock included. "
                          "It rises towards the lock timeout (2 s) before records start to fail."),
        panel("Matches in banks of reviewed images", [target(f"sum by (bank) (rate(fakelens_matches_total[{R}]))",
                                                             "{{bank}}")], "reqps", w=8),
        panel("Review backlog", [target("max(fakelens_review_backlog)", "UNSURE scans not yet reviewed")], w=8,
              description="Counted in the database at scrape time."),
        panel("Reviews by label", [target(f"sum by (label) (rate(fakelens_reviews_total[{R}]))", "{{label}}")],
              "reqps", w=8),
        panel("Models' agreement with reviewers", [target(
            'sum by (model) (fakelens_review_agreement_total{agrees="true"}) '
            "/ sum by (model) (fakelens_review_agreement_total)", "{{model}}")], "percentunit", w=8,
              description="Share of reviewed scans where each model's reading of the thumbnail (and the ensemble's) "
                          "matched the reviewer's label, since the gateway started."),
    ], ["fakelens", "benchmark"])


DASHBOARDS = {"latency.json": latency, "benchmark.json": benchmark}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
