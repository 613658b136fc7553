"""Shared fixtures: real CIFAKE samples, free loopback ports, and the real embedded stack."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests
from PIL import Image

from bench.load import sample_test_images
from stack.launch import UNLIMITED, Ports, Stack, free_ports

ROOT = Path(__file__).resolve().parent.parent
CLIENT_ENV = {**os.environ, "PYTHONPATH": str(ROOT / "client")}  # the client's command line, as a user runs it
CLIENT_CLI = [sys.executable, "-m", "fakelens_client.cli"]
# Every gateway the tests make, in process or as `make up`, keeps its records away from the user's .data/.
os.environ["FAKELENS_DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp(prefix='fakelens-test-db-')}/fakelens.db"


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    """`fakelens ARGS...` (client/), in a process of its own."""
    return subprocess.run([*CLIENT_CLI, *args], env=CLIENT_ENV, capture_output=True,
                          text=True, timeout=600, **kw)


def png_bytes(size=(64, 48), mode="RGB", color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def cifake_samples() -> list[tuple[str, bytes, int]]:
    return sample_test_images(40)


def start_stack(tmp: Path, services=("triton", "gateway", "prometheus"), repository: Path = ROOT / "model_repository") -> Stack:
    ports = Ports(*free_ports(5))
    return Stack(ports, run_dir=tmp, repository=repository, services=services, workers=2, threads=4).start()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """tritonserver + gunicorn + prometheus serving the committed models, shared by the read-only tests."""
    s = start_stack(tmp_path_factory.mktemp("stack"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def gateway_url(stack) -> str:
    return f"http://127.0.0.1:{stack.ports.gateway}"


class Postgres:
    """A throwaway PostgreSQL cluster from Debian's package, on a free loopback port (initdb refuses root:
    it runs as the `postgres` user, in a folder that user owns)."""

    def __init__(self, port: int):
        import glob
        import shutil

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        assert bins, "PostgreSQL is not installed (apt-get install postgresql; `make test` does it)"
        self.bin = Path(bins[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="fakelens-pg-", dir="/tmp"))
        shutil.chown(self.dir, "postgres")
        self.port = port
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        self._as_postgres([self.bin / "initdb", "-D", self.dir / "data", "-U", "postgres", "-A", "trust", "-E", "UTF8",
                           "--locale=C.UTF-8"])
        self.start()

    def _as_postgres(self, argv: list) -> None:
        import subprocess

        subprocess.run(["runuser", "-u", "postgres", "--", *map(str, argv)], check=True, capture_output=True)

    def start(self) -> None:
        self._as_postgres([self.bin / "pg_ctl", "-D", self.dir / "data", "-l", self.dir / "log", "-w", "-o",
                           f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir}", "start"])

    def stop(self) -> None:
        self._as_postgres([self.bin / "pg_ctl", "-D", self.dir / "data", "-m", "fast", "-w", "stop"])


@pytest.fixture(scope="session")
def postgres():
    pg = Postgres(free_ports(1)[0])
    yield pg
    pg.stop()


def new_database(postgres: Postgres, name: str) -> str:
    """A new, empty database on the throwaway cluster; its URL."""
    import sqlalchemy as sa

    admin = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


REVIEWER, CLIENT = "reviewer-key-0123", "client-key-4567"


class Known:
    """A stack with a reviewer key and a client key, its records in a database that outlives restarts
    (a SQLite file by default)."""

    def __init__(self, tmp, database_url: str | None = None):
        (tmp / "keys").write_text(f"{REVIEWER} reviewer\n{CLIENT}\n")
        self.tmp, self.ports = tmp, Ports(*free_ports(5))
        self.env = {"FAKELENS_API_KEYS_FILE": str(tmp / "keys"), "FAKELENS_KEEP_IMAGES": "1"}
        self.database_url = database_url or f"sqlite:///{tmp / 'fakelens.db'}"
        self.start()

    def start(self) -> None:
        self.stack = Stack(self.ports, run_dir=self.tmp / "run", services=("triton", "gateway"), workers=2, threads=4,
                           gateway_env=self.env, database_url=self.database_url, limits=UNLIMITED).start()
        self.url = f"http://127.0.0.1:{self.ports.gateway}"

    def kill_gateway_and_restart(self) -> None:
        """SIGKILL every gunicorn process (nothing flushed, nothing closed), then start the stack again."""
        gateway = next(s for s in self.stack.started if s.name == "gateway")
        os.killpg(gateway.proc.pid, signal.SIGKILL)
        self.stack.stop()
        self.start()

    def predict(self, raw: bytes, key: str = CLIENT) -> dict:
        r = requests.post(self.url + "/v1/predict", files={"image": ("x", raw)}, timeout=60,
                          headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        return r.json()

    def call(self, method: str, path: str, key: str | None = REVIEWER, **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kw)
