"""The layers: the core (fakelens/) imports no web framework and no other layer of the project; training/ and
bench/ use the core, never the gateway."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

# bench modules that measure the gateway's own database layer, which the core does not have (README, Layers).
GATEWAY_STORAGE_BENCHMARKS = {"bench/pdq.py", "bench/chaos.py"}


def imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("path", files("fakelens"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_core_imports_no_web_framework_and_no_other_layer(path):
    banned = {"flask", "werkzeug", "gunicorn", "prometheus_client", "sqlalchemy", "alembic", "gateway", "training",
              "bench", "stack"}
    assert not {top(n) for n in imported(path)} & banned


@pytest.mark.parametrize("path", files("training", "bench"), ids=lambda p: str(p.relative_to(ROOT)))
def test_training_and_bench_never_import_the_gateway(path):
    allowed = {"gateway.storage"} if str(path.relative_to(ROOT)) in GATEWAY_STORAGE_BENCHMARKS else set()
    assert {n for n in imported(path) if top(n) == "gateway"} <= allowed


def test_only_the_in_process_backend_imports_torch():
    assert [p.name for p in files("fakelens") if "torch" in {top(n) for n in imported(p)}] == ["torchscript.py"]


def test_the_walk_sees_imports_inside_functions(tmp_path):
    (tmp_path / "m.py").write_text("import os\n\ndef f():\n    from gateway.app import create_app\n")
    assert imported(tmp_path / "m.py") == {"os", "gateway.app"}
