"""The Kubernetes manifests (deploy/k8s), validated without a cluster: kustomize builds every overlay,
every built-in object validates against the Kubernetes schema (kubernetes-validate, offline), and
the facts that must agree with the rest of the repository do."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from gateway.config import DEFAULTS
from tests.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["gpu", "cpu"]
KUBERNETES = "1.37.0"
CRDS = {("monitoring.coreos.com/v1", kind) for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule")}


def build(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is not installed"
    out = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                         check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def one(objects: list[dict], kind: str, name: str) -> dict:
    [obj] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name)]
    return obj


def containers(obj: dict) -> list[dict]:
    spec = obj["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


@pytest.fixture(scope="module", params=OVERLAYS)
def built(request) -> tuple[str, list[dict]]:
    return request.param, build(request.param)


def test_every_object_validates(built):
    _, objects = built
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRDS:  # no schema offline: checked below, field by field
            assert obj["spec"], obj["metadata"]["name"]
            continue
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_images_pinned_probes_present_and_non_root(built):
    _, objects = built
    for obj in (o for o in objects if o["kind"] == "Deployment"):
        pod = obj["spec"]["template"]["spec"]
        for c in containers(obj):
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image
            assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]
        for c in pod["containers"]:
            assert c.get("livenessProbe") and c.get("readinessProbe"), (obj["metadata"]["name"], c["name"])
        assert pod["securityContext"]["runAsNonRoot"] is True
    triton = one(objects, "Deployment", "triton")["spec"]["template"]["spec"]["containers"][0]
    assert triton["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["startupProbe"]["periodSeconds"] * triton["startupProbe"]["failureThreshold"] >= 300
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    gateway = one(objects, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    assert {c["readinessProbe"]["httpGet"]["path"] for c in gateway} == {"/readyz", "/healthz"}
    assert all(c["securityContext"]["readOnlyRootFilesystem"] for c in gateway)
    assert all(one(objects, "Service", n)["spec"]["type"] == "ClusterIP" for n in ("triton", "gateway"))


def test_no_secret_in_the_manifests(built):
    _, objects = built
    assert not [o for o in objects if o["kind"] == "Secret"]
    text = json.dumps(objects).lower()
    assert "password" not in text


def test_overlays_differ_only_as_compose_files_do(built):
    overlay, objects = built
    triton = one(objects, "Deployment", "triton")["spec"]["template"]["spec"]["containers"][0]
    compose_file = "docker-compose.yml" if overlay == "gpu" else "docker-compose.cpu.yml"
    compose = yaml.safe_load((ROOT / compose_file).read_text())["services"]["triton"].get("command")
    compose = compose or yaml.safe_load((ROOT / "compose.base.yml").read_text())["services"]["triton"]["command"]
    assert set(triton["args"]) == set(compose)
    gpu = triton["resources"]["limits"].get("nvidia.com/gpu")
    assert (gpu == 1) if overlay == "gpu" else gpu is None


def test_hpa_metric_is_the_recording_rule_through_the_adapter(built):
    _, objects = built
    hpa = one(objects, "HorizontalPodAutoscaler", "triton")["spec"]
    metric = hpa["metrics"][0]["pods"]["metric"]["name"]
    [record] = [r["record"] for g in one(objects, "PrometheusRule", "fakelens")["spec"]["groups"] for r in g["rules"]]
    [rule] = yaml.safe_load(one(objects, "ConfigMap", "prometheus-adapter-fakelens")["data"]["config.yaml"])["rules"]
    assert record in rule["seriesQuery"] and rule["name"]["matches"] == f"^{record}$"
    assert rule["name"]["as"] == metric
    assert hpa["scaleTargetRef"]["name"] == "triton" and 1 <= hpa["minReplicas"] < hpa["maxReplicas"]


def test_generated_config_maps_equal_their_sources(built):
    _, objects = built
    spec = importlib.util.spec_from_file_location("generate", K8S / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for name, text in generate.render().items():  # stale output fails here: run `make k8s`
        assert (K8S / "base" / "generated" / name).read_text() == text, name
    sources = sorted((ROOT / "dashboard" / "grafana" / "dashboards").glob("*.json"))
    maps = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"].get("labels", {}).get("grafana_dashboard")]
    assert {k: v for m in maps for k, v in m["data"].items()} == {p.name: p.read_text() for p in sources}
    proxy = one(objects, "ConfigMap", "fakelens-proxy")["data"]
    assert proxy == {"fakelens.conf.template": (ROOT / "proxy" / "fakelens.conf.template").read_text()}
    settings = one(objects, "ConfigMap", "fakelens-settings")["data"]
    assert int(settings["FAKELENS_MAX_UPLOAD_BYTES"]) == DEFAULTS["MAX_CONTENT_LENGTH"]


def test_the_gateway_reads_its_database_url_from_a_secret_the_operator_creates(built):
    _, objects = built
    [gateway] = [c for c in one(objects, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
                 if c["name"] == "gateway"]
    [url] = [e for e in gateway["env"] if e["name"] == "FAKELENS_DATABASE_URL"]
    assert url["valueFrom"]["secretKeyRef"] == {"name": "fakelens-database", "key": "url"}


def test_the_optional_postgres_overlay_is_one_stateful_replica_with_a_volume():
    objects = build("cpu-postgres")
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) not in CRDS:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    pg = one(objects, "StatefulSet", "postgres")
    assert pg["metadata"]["namespace"] == "fakelens" and pg["spec"]["replicas"] == 1
    assert pg["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    [c] = pg["spec"]["template"]["spec"]["containers"]
    assert c["image"].startswith("postgres:15") and c["readinessProbe"]["exec"]["command"][0] == "pg_isready"
    [password] = [e for e in c["env"] if e["name"] == "POSTGRES_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"]["name"] == "fakelens-postgres"
    assert one(objects, "Service", "postgres")["spec"]["ports"][0]["port"] == 5432
    assert not [o for o in objects if o["kind"] == "Secret"]  # the operator creates both Secrets
