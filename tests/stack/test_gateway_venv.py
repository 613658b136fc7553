"""The gateway runs from gateway/requirements.txt alone: no torch, no training code (what its image installs)."""
from __future__ import annotations

import subprocess
import venv

from tests.conftest import ROOT


def test_gateway_unit_tests_pass_in_a_venv_built_from_its_requirements(tmp_path):
    env_dir = tmp_path / "gateway-venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["-r", str(ROOT / "gateway" / "requirements.txt"), "pytest"], check=True)
    assert subprocess.run([str(py), "-c", "import torch"], capture_output=True).returncode != 0
    subprocess.run([str(py), "-c", "from gateway.app import create_app; create_app()"], cwd=ROOT, check=True)
    subprocess.run([str(py), "-m", "pytest", "-q", "--noconftest", "-p", "no:cacheprovider",
                    "tests/unit/test_gateway_unit.py"], cwd=ROOT, check=True)
