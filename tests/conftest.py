"""Shared fixtures: real CIFAKE samples, free loopback ports, and the real embedded stack."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from bench.load import sample_test_images
from stack.launch import Ports, Stack, free_ports

ROOT = Path(__file__).resolve().parent.parent
# Every gateway the tests make, in process or as `make up`, keeps its records away from the user's .data/.
os.environ["FAKELENS_DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp(prefix='fakelens-test-db-')}/fakelens.db"


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
