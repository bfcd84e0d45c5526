"""Shared pieces of the member web app's browser tests (tests/test_web_*.py).

The browser is Debian's Chromium (``apt-get install chromium``; .ci/run installs it), driven
by Playwright for Python with ``executable_path``: Playwright's own browser downloads are
never used. ``require_tool`` skips without Chromium on a developer's machine and fails
under MUXER_CI=1.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from consensus.crypto import PrivateKey
from muxernode.node import init_data_dir
from tests.conftest import require_tool
from tests.procs import Daemon, accounts, make_genesis, wait_for

REPO = Path(__file__).resolve().parent.parent
DOCS_IMG = REPO / "docs" / "img"
DOCS_IMG_ENV = "MUXER_DOCS_IMG"
TIMEOUT = 30.0


@dataclass
class Node:
    daemon: Daemon
    rpc_url: str
    web_url: str
    chain_id: bytes
    keys: dict[str, PrivateKey]
    secrets: dict[str, str]


def start_node(base: Path, *, seed: int) -> tuple[Daemon, Node]:
    gdir = base / "genesis"
    genesis = init_data_dir(make_genesis(gdir, accounts=4, seed=seed), base / "node")
    secrets = {a["name"]: a["secret"] for a in accounts(gdir)}
    keys = {n: PrivateKey(bytes.fromhex(s)) for n, s in secrets.items()}
    daemon = Daemon(base / "node", witness_key=gdir / "w1.key")
    url = daemon.start()
    node = Node(daemon, url, url.removesuffix("rpc"), genesis.chain_id, keys, secrets)
    wait_for(lambda: daemon.rpc("chain_info")["head_height"] >= 1, timeout=TIMEOUT)
    return daemon, node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    daemon, n = start_node(tmp_path_factory.mktemp("webnode"), seed=141)
    try:
        yield n
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


# every control's accessible name: its label, its text or its aria-label (the file input
# and the radio buttons are named by the label around them)
UNNAMED = """() => [...document.querySelectorAll(
    'input, select, textarea, button, a[href], summary')]
  .filter((e) => !((e.labels && [...e.labels].some((l) => l.textContent.trim()))
                   || (e.textContent || '').trim() || e.getAttribute('aria-label')))
  .map((e) => e.outerHTML.slice(0, 120))"""


def shot(page: Any, out: Path, name: str, *, docs: bool = False) -> None:
    """A full-page screenshot in the test's output dir, after checking that every control
    on the page has an accessible name. With MUXER_DOCS_IMG=1 the main ones (``docs``)
    are also copied to docs/img/web-<name>.png: a plain test run changes no tracked file."""
    assert page.evaluate(UNNAMED) == [], f"controls without a name on {name}"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if docs and os.environ.get(DOCS_IMG_ENV, "") not in ("", "0"):
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / f"web-{name}.png")
