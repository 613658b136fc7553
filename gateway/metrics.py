"""Prometheus metrics of the gateway (multiprocess mode under gunicorn) and the benchmark gauges."""
from __future__ import annotations

import json
import os
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from fakelens.backends import FanOut
from fakelens.judge import Judgement
from gateway.storage import ScanStore

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10)

REQUEST_SECONDS = Histogram("fakelens_http_request_duration_seconds", "Gateway request latency",
                            ["endpoint", "method", "status"], buckets=LATENCY_BUCKETS)
TRITON_SECONDS = Histogram("fakelens_triton_call_duration_seconds", "Latency of one model's Triton call",
                           ["model"], buckets=LATENCY_BUCKETS)
VERDICTS = Counter("fakelens_verdicts_total", "Verdicts given, per model and for the ensemble",
                   ["model", "verdict"])
ERRORS = Counter("fakelens_errors_total", "Failed requests or model calls, by reason", ["reason"])
DEGRADED = Counter("fakelens_degraded_answers_total", "Answers given without every model")
UPLOAD_BYTES = Histogram("fakelens_upload_bytes", "Size of uploaded image files",
                         buckets=(1e3, 1e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7))
IMAGES = Counter("fakelens_images_total", "Images classified", ["endpoint"])
PROVENANCE = Counter("fakelens_provenance_evidence_total", "Provenance evidence found in uploads, by source "
                     "and by what it claims (ai_generated: true, false or none)", ["source", "ai_generated"])
C2PA_ABANDONED = Counter("fakelens_c2pa_abandoned_total", "C2PA manifest reads killed at their deadline")
SCANS_RECORDED = Counter("fakelens_scans_recorded_total", "Scan records stored")
RECORD_SECONDS = Histogram("fakelens_record_duration_seconds", "Time to store one request's scan records, the wait "
                           "for the database's write lock included", buckets=LATENCY_BUCKETS)
RECORD_FAILURES = Counter("fakelens_record_failures_total", "Scans answered without a record, or bank syncs "
                          "missed, because the database was down or locked", ["operation"])
MATCHES = Counter("fakelens_matches_total", "Uploads matched to a bank of reviewed images", ["bank"])
REVIEWS = Counter("fakelens_reviews_total", "Reviews by people, by the label they gave", ["label"])
AGREEMENT = Counter("fakelens_review_agreement_total", "Reviewed scans: whether each model's reading of the "
                    "thumbnail (and the ensemble's) agreed with the reviewer", ["model", "agrees"])

# Label values known in advance, written as zeros when a worker starts, so that every dashboard panel has
# a series to show on a fresh stack (a counter that was never incremented does not exist for Prometheus).
# tests/stack/test_dashboards.py checks that every reason the gateway can give is listed here.
VERDICT_LABELS = ("REAL", "FAKE", "UNSURE")
EVIDENCE_SOURCES = ("c2pa", "xmp", "png_text", "exif", "watermark")
ERROR_REASONS = ("bad_request", "missing_image", "too_many_images", "bad_image", "too_many_pixels", "too_large",
                 "not_found", "method_not_allowed", "unsupported_media_type", "unauthorized", "internal",
                 "no_verdict_rule", "triton_unavailable", "timeout", "model_error", "models_unavailable",
                 "no_reviewer_keys", "not_a_reviewer", "records_off", "database_unavailable", "unknown_scan", "no_image",
                 "bad_label", "bad_note", "note_too_large", "bad_bank", "bad_verdict", "bad_reviewed", "bad_limit",
                 "bad_cursor", "bad_csv")
ENDPOINTS = ("predict", "batch")
BANKS = ("reviewed",)


def init_labels(models: tuple[str, ...] = ("ensemble",)) -> None:
    """Zero every known label set (per model once the models are known: Triton's index)."""
    for model in models:
        for verdict in VERDICT_LABELS:
            VERDICTS.labels(model, verdict)
        for agrees in ("true", "false"):
            AGREEMENT.labels(model, agrees)
        if model != "ensemble":
            TRITON_SECONDS.labels(model)
    for bank in BANKS:
        MATCHES.labels(bank)
    for label in ("REAL", "FAKE"):
        REVIEWS.labels(label)
    for operation in ("record", "sync"):
        RECORD_FAILURES.labels(operation)
    for source in EVIDENCE_SOURCES:
        for claim in ("true", "false", "none"):
            PROVENANCE.labels(source, claim)
    for reason in ERROR_REASONS:
        ERRORS.labels(reason)
    for endpoint in ENDPOINTS:
        IMAGES.labels(endpoint)

def observe_fanout(fanout: FanOut, images: int, endpoint: str) -> None:
    """One batch asked of the models: each model's call time, the models that failed and why."""
    for err in fanout.errors.values():
        ERRORS.labels(err.reason).inc()
    for model, answer in fanout.answers.items():
        TRITON_SECONDS.labels(model).observe(answer.latency_ms / 1000)
    IMAGES.labels(endpoint).inc(images)
    if fanout.errors:
        DEGRADED.inc(images)


def observe_judgements(judgements: list[Judgement]) -> None:
    """Each model's reading, the verdict, the provenance found and the bank matched, per upload."""
    for j in judgements:
        for model, answer in j.models.items():
            VERDICTS.labels(model, answer.verdict).inc()
        VERDICTS.labels("ensemble", j.decision.verdict).inc()
        for e in j.examined.provenance.evidence:
            PROVENANCE.labels(e.source, str(e.ai_generated).lower()).inc()
        if j.match is not None:
            MATCHES.labels(j.match.bank).inc()


# Benchmark-table figure -> gauge name. One gauge per figure, labelled by model.
BENCHMARK_GAUGES = {"f1": "fakelens_model_f1", "precision": "fakelens_model_precision",
                    "recall": "fakelens_model_recall", "accuracy": "fakelens_model_accuracy",
                    "roc_auc": "fakelens_model_roc_auc", "ece": "fakelens_model_ece",
                    "train_seconds": "fakelens_model_train_seconds", "parameters": "fakelens_model_parameters"}


def load_benchmark(results_dir: str | Path, name: str = "benchmark.json") -> dict:
    """A table written by `make evaluate` (benchmark.json, realworld.json), or {} if there is none."""
    path = Path(results_dir) / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class BenchmarkCollector:
    """Exports the benchmark table as gauges, read at scrape time (so no per-process state)."""

    def __init__(self, results_dir: str | Path):
        self.results_dir = results_dir

    def collect(self):
        rows = load_benchmark(self.results_dir).get("models", {})
        for key, name in BENCHMARK_GAUGES.items():
            g = GaugeMetricFamily(name, f"Benchmark table: {key} on the CIFAKE test split", labels=["model"])
            for model, row in rows.items():
                if isinstance(row.get(key), (int, float)):
                    g.add_metric([model], float(row[key]))
            yield g


class BacklogCollector:
    """The review backlog (UNSURE scans nobody reviewed), counted in the database at scrape time."""

    def __init__(self, scans: ScanStore):
        self.scans = scans

    def collect(self):
        g = GaugeMetricFamily("fakelens_review_backlog", "UNSURE scans not yet reviewed")
        try:
            g.add_metric([], float(self.scans.backlog()))
        except Exception:  # noqa: BLE001 - the database is down: no figure rather than a failed scrape
            return
        yield g


class _DefaultRegistry:
    """Without gunicorn (tests, `flask run`) the metrics live in the default registry."""

    def collect(self):
        return REGISTRY.collect()


def render(results_dir: str | Path, scans: ScanStore | None = None) -> bytes:
    """The /metrics page: every worker's metrics, the benchmark gauges and, with `scans`, the review backlog."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_DefaultRegistry())
    registry.register(BenchmarkCollector(results_dir))
    if scans is not None:
        registry.register(BacklogCollector(scans))
    return generate_latest(registry)
