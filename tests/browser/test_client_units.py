"""The client's pure JavaScript units (the seq gate), run by node's test runner."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.browser


def test_seq_gate_units() -> None:
    node = shutil.which("node")
    assert node, "node is needed to build the client anyway"
    done = subprocess.run(
        [node, "--test", "src/"], cwd=ROOT / "web", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# fail 0" in done.stdout and "# pass 6" in done.stdout, done.stdout
