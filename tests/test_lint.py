"""Static checks of the Python code: ruff, with the rules in pyproject.toml's [tool.ruff] block."""

from __future__ import annotations

import shutil
import subprocess
import sys

from conftest import ROOT


def test_ruff_passes():
    ruff = shutil.which("ruff") or str((ROOT / ".venv" / "bin" / "ruff"))
    proc = subprocess.run([ruff, "check", "--output-format", "concise", "."], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={"PATH": f"{sys.prefix}/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
