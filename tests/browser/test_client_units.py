"""The client's pure JavaScript units (seq gate, focus fallback), run by node's runner."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from rooms.peer import RECENT_MESSAGES_KEPT

from .conftest import ROOT

pytestmark = pytest.mark.browser


def test_client_units() -> None:
    """The seq gate (seq.test.mjs) and where focus falls back (dom.test.mjs)."""
    node = shutil.which("node")
    assert node, "node is needed to build the client anyway"
    done = subprocess.run(
        [node, "--test", "src/"], cwd=ROOT / "web", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# fail 0" in done.stdout and "# pass 8" in done.stdout, done.stdout


def test_the_client_shows_no_line_a_moderator_could_not_remove() -> None:
    """Every chat line the page keeps must be one the server still lets a moderator
    remove: the page's cap may not exceed the server's recent-message window."""
    source = (ROOT / "web" / "src" / "app.js").read_text()
    found = re.search(r"^const MAX_CHAT_LINES = (\d+);", source, re.MULTILINE)
    assert found, "MAX_CHAT_LINES not found in web/src/app.js"
    assert int(found.group(1)) <= RECENT_MESSAGES_KEPT


def test_the_built_client_uses_no_replace_children() -> None:
    """Element.replaceChildren is Chrome 86+; the client promises Chrome 64+ (build.mjs).
    Screens are drawn with dom.js's fill() instead."""
    built = ROOT / "web" / "dist" / "app.js"
    assert built.exists(), "build the client first: scripts/web-build"
    assert "replaceChildren" not in built.read_text()
