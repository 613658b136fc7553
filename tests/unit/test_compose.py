"""Docker Compose files, validated without an engine, and the gateway image's requirements without torch."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

FILES = ["docker-compose.yml", "docker-compose.cpu.yml"]
ENV = {**os.environ, "GRAFANA_ADMIN_PASSWORD": "test-only"}


def resolved(name: str) -> dict:
    """The file as docker-compose resolves it (extends applied, variables substituted)."""
    out = subprocess.run(["docker-compose", "-f", str(ROOT / name), "config"], capture_output=True, text=True,
                         env=ENV, cwd=ROOT, check=True).stdout
    return yaml.safe_load(out)


@pytest.fixture(scope="module", autouse=True)
def compose_cli():
    assert shutil.which("docker-compose"), "docker-compose not installed (apt-get install docker-compose)"


@pytest.mark.parametrize("name", FILES)
def test_config_is_valid(name):
    subprocess.run(["docker-compose", "-f", str(ROOT / name), "config", "-q"], env=ENV, cwd=ROOT, check=True)


def test_grafana_password_has_no_default():
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    r = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], env=env,
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in r.stderr


def test_gpu_file_reserves_a_gpu_and_cpu_file_does_not():
    gpu, cpu = resolved("docker-compose.yml"), resolved("docker-compose.cpu.yml")
    devices = gpu["services"]["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "deploy" not in cpu["services"]["triton"]
    assert "--model-config-name=cpu" in cpu["services"]["triton"]["command"]
    for name in ("baseline_cnn", "tuned_cnn", "resnet50"):
        assert (ROOT / "model_repository" / name / "configs" / "cpu.pbtxt").is_file()


@pytest.mark.parametrize("name", FILES)
def test_images_pinned_and_mounts_exist(name):
    cfg = resolved(name)
    for svc_name, svc in cfg["services"].items():
        if "build" not in svc:
            image = svc["image"]
            assert ":" in image and not image.endswith(":latest"), f"{svc_name}: {image} is not pinned"
        for vol in svc.get("volumes", []):  # "source:target:mode"; named volumes have no slash
            source = vol.split(":")[0]
            if source.startswith("/"):
                assert Path(source).exists(), f"{svc_name}: {source} missing"
    gw = cfg["services"]["gateway"]
    assert gw["depends_on"]["triton"]["condition"] == "service_healthy"
    assert all(s.get("restart") for s in cfg["services"].values())


@pytest.mark.parametrize("name", FILES)
def test_the_gateway_keeps_its_records_in_postgres_on_a_named_volume(name):
    cfg = resolved(name)
    pg, gw = cfg["services"]["postgres"], cfg["services"]["gateway"]
    assert gw["depends_on"]["postgres"]["condition"] == "service_healthy"  # the gateway waits for it
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.startswith("postgres-data:") for v in pg["volumes"]) and "postgres-data" in cfg["volumes"]
    url = gw["environment"]["FAKELENS_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://fakelens:") and url.endswith("@postgres:5432/fakelens")
    assert not pg.get("ports")  # on the compose network only


@pytest.mark.parametrize("name", FILES)
def test_prometheus_targets_match_compose_services(name):
    cfg = resolved(name)
    prom = yaml.safe_load((ROOT / "dashboard" / "prometheus.yml").read_text())
    for job in prom["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host, port = target.split(":")
            assert host in cfg["services"], f"{target}: no service {host}"
            svc = cfg["services"][host]
            listening = {int(p["target"]) for p in svc.get("ports", [])} | {int(p) for p in svc.get("expose", [])}
            assert int(port) in listening, f"{target}: {host} does not listen on {port}"


@pytest.mark.parametrize("name", FILES)
def test_only_the_front_door_and_grafana_are_published(name):
    cfg = resolved(name)
    published = {svc: [int(p["published"]) for p in s.get("ports", [])] for svc, s in cfg["services"].items()}
    assert {svc for svc, ports in published.items() if ports} == {"nginx", "grafana"}, published
    assert published["nginx"] == [8080]
    triton = cfg["services"]["triton"]["command"]
    # Nobody can load or unload a model over Triton's API: explicit mode is off, and nothing is loaded by name.
    assert "--model-control-mode=none" in triton and not [a for a in triton if a.startswith("--load-model")]
    gateway = cfg["services"]["gateway"]
    assert gateway["read_only"] is True and gateway["environment"]["FAKELENS_MAX_UPLOAD_BYTES"] == \
        cfg["services"]["nginx"]["environment"]["FAKELENS_MAX_UPLOAD_BYTES"]


def test_upload_limit_default_is_the_gateways():
    from gateway.config import DEFAULTS

    for name in FILES:
        env = resolved(name)["services"]["nginx"]["environment"]
        assert int(env["FAKELENS_MAX_UPLOAD_BYTES"]) == DEFAULTS["MAX_CONTENT_LENGTH"]


def test_debug_override_publishes_on_loopback_only():
    out = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "-f",
                          str(ROOT / "docker-compose.debug.yml"), "config"], capture_output=True, text=True,
                         env=ENV, cwd=ROOT, check=True).stdout
    cfg = yaml.safe_load(out)
    for svc in ("triton", "prometheus"):
        ports = cfg["services"][svc]["ports"]
        # docker-compose 1.29 writes a host address as "127.0.0.1:9090:9090/tcp"
        assert ports and all((p.startswith("127.0.0.1:") if isinstance(p, str) else p.get("host_ip") == "127.0.0.1")
                             for p in ports), (svc, ports)


def test_proxy_template_renders_for_the_nginx_image(tmp_path):
    """The same template the launcher renders: nginx -t accepts it once the image's envsubst has run."""
    from stack.launch import render_proxy_config

    text = render_proxy_config({"FAKELENS_LISTEN": "127.0.0.1:18080", "FAKELENS_UPSTREAM": "127.0.0.1:18081",
                                "FAKELENS_ACCESS_LOG": str(tmp_path / "access.log"),
                                "FAKELENS_MAX_UPLOAD_BYTES": "20971520", "FAKELENS_RATE_LIMIT": "50",
                                "FAKELENS_RATE_BURST": "100", "FAKELENS_CONN_LIMIT": "32"})
    (tmp_path / "fakelens.conf").write_text(text)
    temps = "".join(f"{k}_temp_path {tmp_path / k}; " for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(f"pid {tmp_path / 'nginx.pid'}; events {{}} "
                                         f"http {{ {temps} include {tmp_path / 'fakelens.conf'}; }}")
    r = subprocess.run([shutil.which("nginx") or "/usr/sbin/nginx", "-t", "-p", str(tmp_path), "-c",
                        str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_gateway_requirements_have_no_torch():
    lines = (ROOT / "gateway" / "requirements.txt").read_text().lower().splitlines()
    packages = [line.split("==")[0] for line in lines if line.strip() and not line.startswith("#")]
    assert packages and not [p for p in packages if "torch" in p], packages


STOCK = {"triton": "nvcr.io/nvidia/tritonserver:25.11-py3", "nginx": "nginx:1.27.3-alpine",
         "postgres": "postgres:15.10-alpine", "prometheus": "prom/prometheus:v2.53.2", "grafana": "grafana/grafana:11.3.0"}
IMAGE_VARS = {"triton": "TRITON_IMAGE", "nginx": "NGINX_IMAGE", "postgres": "POSTGRES_IMAGE",
              "prometheus": "PROMETHEUS_IMAGE", "grafana": "GRAFANA_IMAGE"}


@pytest.mark.parametrize("name", FILES)
def test_images_default_to_the_stock_ones_and_each_is_a_variable(name, monkeypatch):
    for var in [*IMAGE_VARS.values(), "PYTHON_IMAGE", "GATEWAY_IMAGE"]:
        monkeypatch.delitem(ENV, var, raising=False)
    cfg = resolved(name)["services"]
    assert {svc: cfg[svc]["image"] for svc in STOCK} == STOCK
    assert cfg["gateway"]["build"]["args"] == {"PYTHON_IMAGE": "python:3.11-slim"}
    assert cfg["gateway"]["image"] == "fakelens-gateway:latest"
    # The Dockerfile's own default is the same stock image, for a plain `docker build`.
    assert "ARG PYTHON_IMAGE=python:3.11-slim\nFROM ${PYTHON_IMAGE}\n" in (ROOT / "gateway" / "Dockerfile").read_text()
    for svc, var in IMAGE_VARS.items():
        monkeypatch.setitem(ENV, var, f"standin-{svc}:test")
    monkeypatch.setitem(ENV, "PYTHON_IMAGE", "standin-python:test")
    cfg = resolved(name)["services"]
    assert {svc: cfg[svc]["image"] for svc in STOCK} == {svc: f"standin-{svc}:test" for svc in STOCK}
    assert cfg["gateway"]["build"]["args"] == {"PYTHON_IMAGE": "standin-python:test"}
