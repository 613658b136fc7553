"""`docker-compose -f docker-compose.cpu.yml up`, run for real on a Docker engine (Grafana left out: no image here).

No image registry is reachable here, so every third-party image is a stand-in built from Debian packages
(deploy/standins/) and named through the compose files' image variables; the gateway image is built from
gateway/Dockerfile by compose, as users build it. The API keys file and the database password are set the way the
README tells users to. Every request goes to 127.0.0.1; the containers talk on the deployment's own network.

The engine: one already running is used (`.ci/run` starts one); otherwise this module starts dockerd and stops it
(by its pid) at the end. Containers, volumes, networks and images it made are removed at the end, even on failure.
Each step's time is printed (pytest -s) and written to .run/compose-up-timings.json.
"""
from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
from PIL import Image

from stack.launch import free_ports
from tests.conftest import ROOT
from tests.stack.test_dashboards import as_prometheus_query, targets
from training.realworld import load_set, realworld_dir

STANDINS = ROOT / "deploy" / "standins"
SERVICES = ["triton", "postgres", "gateway", "nginx", "prometheus"]  # Grafana: no image here
IMAGE_VARS = {"python": "PYTHON_IMAGE", "nginx": "NGINX_IMAGE", "postgres": "POSTGRES_IMAGE",
              "prometheus": "PROMETHEUS_IMAGE", "triton": "TRITON_IMAGE"}
REVIEWER, CLIENT = "compose-reviewer-" + secrets.token_hex(8), "compose-client-" + secrets.token_hex(8)
HEALTHY_WITHIN_S = 300
TIMINGS: dict[str, float] = {}


def run(argv: list[str], timeout: float = 900, check: bool = True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


class timed:
    def __init__(self, step: str):
        self.step = step

    def __enter__(self):
        self.start = time.monotonic()

    def __exit__(self, *exc):
        TIMINGS[self.step] = round(time.monotonic() - self.start, 1)
        print(f"\n[compose-up] {self.step}: {TIMINGS[self.step]} s", flush=True)


def engine_answers() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="module")
def engine():
    """A Docker engine: the one running, or dockerd started here (and stopped here, by its pid)."""
    if engine_answers():
        yield None
        return
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    assert Path(dockerd).exists(), "no Docker engine: apt-get install docker.io (make compose-test does it)"
    log = open(Path(tempfile.mkdtemp(prefix="fakelens-dockerd-")) / "dockerd.log", "wb")
    proc = subprocess.Popen([dockerd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while not engine_answers():
            assert proc.poll() is None and time.time() < deadline, f"dockerd did not start; see {log.name}"
            time.sleep(0.5)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Deployment:
    def __init__(self, tmp: Path):
        self.tag = secrets.token_hex(4)
        self.project = f"fakelens-composetest-{self.tag}"
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.images = {name: f"fakelens-standin-{name}:{self.tag}" for name in ["base", *IMAGE_VARS]}
        self.images["gateway"] = f"fakelens-gateway:composetest-{self.tag}"
        self.password = secrets.token_hex(12)
        keys = tmp / "keys"  # as the README says: printf 'KEY reviewer\n' > keys (mode 644 under umask 022)
        keys.write_text(f"{REVIEWER} reviewer\n{CLIENT}\n")
        keys.chmod(0o644)
        self.env = {**os.environ, "COMPOSE_PROJECT_NAME": self.project, "DOCKER_BUILDKIT": "0",
                    "GATEWAY_PORT": f"127.0.0.1:{self.port}", "GRAFANA_ADMIN_PASSWORD": "unused-grafana-not-started",
                    "POSTGRES_PASSWORD": self.password, "FAKELENS_API_KEYS_FILE": str(keys),
                    "GATEWAY_IMAGE": self.images["gateway"],
                    # the Triton stand-in runs the project's venv, mounted read-only at its own path
                    "STANDIN_VENV": str(Path(sys.prefix).resolve()), "STANDIN_PYTHON_PREFIX": sys.base_prefix,
                    **{var: self.images[name] for name, var in IMAGE_VARS.items()}}
        self.compose = ["docker-compose", "-f", "docker-compose.cpu.yml", "-f", "docker-compose.keys.yml",
                        "-f", "deploy/standins/compose.standins.yml"]
        self.tmp = tmp

    def dc(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
        return run([*self.compose, *args], timeout=timeout, check=check, cwd=ROOT, env=self.env)

    def build(self) -> None:
        with timed("base image (mmdebstrap + docker import)"):
            tar = self.tmp / "base.tar"
            run(["mmdebstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                 # pip and apt inside containers reach the registries only with this machine's CA bundle
                 '--customize-hook=cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/host-ca.crt"',
                 "bookworm", str(tar)])
            run(["docker", "import", str(tar), self.images["base"]])
            tar.unlink()
        for name in IMAGE_VARS:
            with timed(f"build {name} stand-in"):
                run(["docker", "build", "-q", "--build-arg", f"BASE={self.images['base']}", "-f",
                     str(STANDINS / f"{name}.Dockerfile"), "-t", self.images[name], str(STANDINS)],
                    env={**os.environ, "DOCKER_BUILDKIT": "0"})
        with timed("build gateway image (docker-compose build gateway)"):
            self.dc("build", "gateway")

    def containers(self, running_only: bool = False) -> list[str]:
        argv = ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}"]
        return run(argv if running_only else [*argv, "-a"]).stdout.split()

    def container(self, service: str) -> str:
        ids = self.dc("ps", "-q", service).stdout.split()
        assert len(ids) == 1, f"{service}: {ids}"
        return ids[0]

    def inspect(self, service: str) -> dict:
        return json.loads(run(["docker", "inspect", self.container(service)]).stdout)[0]

    def up(self, step: str) -> None:
        with timed(step):
            self.dc("up", "-d", *SERVICES)
            deadline = time.time() + HEALTHY_WITHIN_S
            while (health := {s: self.inspect(s)["State"].get("Health", {}).get("Status") for s in SERVICES}) \
                    != dict.fromkeys(SERVICES, "healthy"):
                if time.time() > deadline:
                    logs = self.dc("logs", "--tail", "40", check=False).stdout
                    raise AssertionError(f"not all healthy after {HEALTHY_WITHIN_S} s: {health}\n{logs[-6000:]}")
                time.sleep(2)

    def exec(self, service: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(["docker", "exec", self.container(service), *argv], timeout=60, check=check)

    def prometheus(self, path: str, **params) -> dict:
        """Prometheus's API, asked from inside its own container (it is not published)."""
        url = f"http://127.0.0.1:9090{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        return json.loads(self.exec("prometheus", "wget", "-q", "-O", "-", url).stdout)

    def predict(self, raw: bytes, key: str | None = CLIENT, name: str = "upload") -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.post(self.url + "/v1/predict", files={"image": (name, raw)}, headers=headers, timeout=60)

    def remove(self) -> None:
        """Everything this deployment made: containers, networks, volumes, images."""
        self.dc("down", "-v", "--remove-orphans", timeout=300, check=False)
        for image in self.images.values():
            run(["docker", "rmi", "-f", image], check=False)


@pytest.fixture(scope="module")
def deployment(engine, tmp_path_factory):
    d = Deployment(tmp_path_factory.mktemp("compose-up"))
    try:
        d.build()
        d.up("up -d to every service healthy")
        yield d
    finally:
        d.remove()
        label = f"label=com.docker.compose.project={d.project}"
        left = {kind: run(["docker", kind, "ls", "-q", "--filter", label]).stdout.split()
                for kind in ("volume", "network")}
        left["container"] = d.containers()
        left["image"] = [i for i in d.images.values() if run(["docker", "image", "inspect", i], check=False).returncode == 0]
        print(f"\n[compose-up] timings: {json.dumps(TIMINGS)}")
        (ROOT / ".run").mkdir(exist_ok=True)
        (ROOT / ".run" / "compose-up-timings.json").write_text(json.dumps(TIMINGS, indent=1) + "\n")
        assert not any(left.values()), f"left behind: {left}"


@pytest.fixture(scope="module")
def photo() -> bytes:
    """A phone-sized real photo from the real-world dev set (a rocket launch): outside what the models judge."""
    return [item["raw"] for item in load_set(realworld_dir()) if item["label"] == "real_photo"][3]


def copy_of(raw: bytes) -> bytes:
    """The picture resized to 0.7x and re-saved as JPEG q75."""
    img = Image.open(io.BytesIO(raw)).convert("RGB")
    buf = io.BytesIO()
    img.resize((round(img.width * 0.7), round(img.height * 0.7)), Image.LANCZOS).save(buf, "JPEG", quality=75)
    return buf.getvalue()


def test_every_service_is_healthy_and_the_gateway_runs_read_only_and_not_as_root(deployment):
    assert {s: deployment.inspect(s)["State"]["Health"]["Status"] for s in SERVICES} == dict.fromkeys(SERVICES, "healthy")
    gw = deployment.inspect("gateway")
    assert gw["Config"]["Image"] == deployment.images["gateway"] and gw["HostConfig"]["ReadonlyRootfs"] is True
    uids = [line.split()[1] for line in run(["docker", "top", gw["Id"], "-o", "pid,uid"]).stdout.splitlines()[1:]]
    assert len(uids) >= 3 and set(uids) == {"10001"}, uids  # gunicorn's master and its two workers
    assert deployment.exec("gateway", "touch", "/app/x", check=False).returncode != 0  # read-only root
    assert deployment.exec("gateway", "touch", "/tmp/x").returncode == 0  # the tmpfs
    no_torch = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"
    assert deployment.exec("gateway", "python", "-c", no_torch, check=False).returncode == 0
    # Only nginx is published, and on loopback only (the test's GATEWAY_PORT)
    published = {s: {k: v for k, v in (deployment.inspect(s)["NetworkSettings"]["Ports"] or {}).items() if v}
                 for s in SERVICES}
    assert published == {**{s: {} for s in SERVICES},
                         "nginx": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(deployment.port)}]}}


def test_an_upload_through_nginx_is_answered_by_all_three_models(deployment, cifake_samples, photo):
    assert deployment.predict(cifake_samples[0][1], key=None).status_code == 401  # the keys file reached the gateway
    right = []
    for name, raw, label in cifake_samples[:6]:
        assert Image.open(io.BytesIO(raw)).size == (32, 32)
        r = deployment.predict(raw, name=name)
        assert r.status_code == 200, r.text
        body = r.json()
        assert sorted(body["models"]) == ["baseline_cnn", "resnet50", "tuned_cnn"] and not body["missing"]
        assert all(0 <= m["prob_fake"] <= 1 for m in body["models"].values())
        assert body["decided_by"] == "models" and body["recorded"] is True and body["scan_id"], body
        right.append(body["verdict"] == ("REAL", "FAKE")[label])
    # Decided (REAL/FAKE, not UNSURE) and mostly right: the models are ~95% accurate on CIFAKE, not 100%
    # (here the second sample, a REAL, was answered FAKE with confidence 0.99).
    assert sum(right) >= 5 and right[0], right
    body = deployment.predict(photo, name="launch.jpg").json()
    assert body["verdict"] == "UNSURE" and body["decided_by"] is None and body["recorded"] is True, body  # nobody decided
    assert sorted(body["models"]) == ["baseline_cnn", "resnet50", "tuned_cnn"]


def test_each_models_latency_is_the_calls_own(deployment, cifake_samples):
    """It was the process clock once (fakelens/triton.py reused the start time's name): no more than the request."""
    start = time.perf_counter()
    body = deployment.predict(cifake_samples[5][1]).json()
    wall_ms = (time.perf_counter() - start) * 1000
    assert all(0 < m["latency_ms"] <= wall_ms for m in body["models"].values()), (body["models"], wall_ms)


def test_prometheus_scrapes_triton_and_the_gateway_and_every_panel_query_has_data(deployment, cifake_samples):
    health = {}
    deadline = time.time() + 60
    while time.time() < deadline:
        active = deployment.prometheus("/api/v1/targets")["data"]["activeTargets"]
        health = {t["labels"]["job"]: (t["health"], t["scrapeUrl"]) for t in active}
        if all(h == "up" for h, _ in health.values()) and len(health) == 3:
            break
        time.sleep(2)
    assert health == {"triton": ("up", "http://triton:8002/metrics"), "gateway": ("up", "http://gateway:8080/metrics"),
                      "prometheus": ("up", "http://prometheus:9090/metrics")}, health
    for _, raw, _ in cifake_samples[6:10]:  # traffic within the last scrape intervals, for the rates
        assert deployment.predict(raw).status_code == 200
    pending = targets()
    deadline = time.time() + 90
    while pending and time.time() < deadline:
        time.sleep(3)
        still = []
        for dash, title, expr in pending:
            body = deployment.prometheus("/api/v1/query", query=as_prometheus_query(expr))
            assert body["status"] == "success", (dash, title, body)
            if not body["data"]["result"]:
                still.append((dash, title, expr))
        pending = still
    assert not pending, "queries with no data: " + "; ".join(f"{d} / {t}: {e}" for d, t, e in pending)


def test_a_review_survives_down_and_up_on_the_postgres_volume_and_decides_a_resized_copy(deployment, photo):
    scan = deployment.predict(photo).json()
    assert scan["verdict"] == "UNSURE" and scan["scan_id"], scan
    review = {"label": "REAL", "note": "camera original, checked under compose"}
    url = f"{deployment.url}/v1/scans/{scan['scan_id']}/review"
    assert requests.post(url, json=review, headers={"Authorization": f"Bearer {CLIENT}"}, timeout=30).status_code == 403
    r = requests.post(url, json=review, headers={"Authorization": f"Bearer {REVIEWER}"}, timeout=30)
    assert r.status_code == 201, r.text

    # POSTGRES_PASSWORD reached the database: over the network only that password is accepted
    connect = "import psycopg, sys; psycopg.connect(f'postgresql://fakelens:{sys.argv[1]}@postgres:5432/fakelens').close()"
    assert deployment.exec("gateway", "python", "-c", connect, deployment.password).returncode == 0
    wrong = deployment.exec("gateway", "python", "-c", connect, "fakelens", check=False)
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr, wrong.stderr[-500:]

    with timed("docker-compose down (volumes kept)"):
        deployment.dc("down")
    assert deployment.containers() == []  # none left running, none left stopped
    deployment.up("up -d again to every service healthy (postgres volume reused)")

    record = requests.get(f"{deployment.url}/v1/scans/{scan['scan_id']}", timeout=30,
                          headers={"Authorization": f"Bearer {REVIEWER}"}).json()
    assert {k: record["review"][k] for k in review} == review, record
    copy = deployment.predict(copy_of(photo)).json()
    assert copy["verdict"] == "REAL" and copy["decided_by"] == "review", copy
    assert copy["match"]["scan_id"] == scan["scan_id"] and copy["match"]["note"] == review["note"]


def test_down_leaves_no_container_running(deployment):
    with timed("docker-compose down"):
        deployment.dc("down")
    assert deployment.containers(running_only=True) == [] and deployment.containers() == []
