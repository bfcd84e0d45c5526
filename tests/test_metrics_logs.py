"""Logs for operators: per-module levels (``--log-level p2p=debug,rpc=warning``) and
``--log-format json``, on the real logging setup and the real CLI."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from muxernode.daemon import main as daemon_main
from muxernode.logs import JsonFormatter, LogLevelError, parse_levels, setup_logging
from muxernode.node import init_data_dir
from tests.procs import make_genesis


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    names = ("muxer.p2p", "muxer.rpc", "hypercorn.error")
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for n, lvl in levels.items():
        logging.getLogger(n).setLevel(lvl)


def test_parse_levels() -> None:
    assert parse_levels("info") == ("info", {})
    assert parse_levels("p2p=debug,rpc=warning") == (
        "info", {"muxer.p2p": "debug", "muxer.rpc": "warning"})
    assert parse_levels(" WARNING , p2p = DEBUG, hypercorn.error=info") == (
        "warning", {"muxer.p2p": "debug", "hypercorn.error": "info"})
    for bad in ("loud", "p2p=verbose", "=debug", "p 2p=debug"):
        with pytest.raises(LogLevelError):
            parse_levels(bad)


def test_setup_sets_each_module(restore_logging: None) -> None:
    setup_logging("json", "warning,p2p=debug,rpc=error")
    assert logging.getLogger().level == logging.WARNING
    assert logging.getLogger("muxer.p2p").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("muxer.rpc").getEffectiveLevel() == logging.ERROR
    assert logging.getLogger("muxer.node").getEffectiveLevel() == logging.WARNING
    assert isinstance(logging.getLogger().handlers[0].formatter, JsonFormatter)
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger("muxer.p2p").debug("dialed", extra={"kv": {"peer": b"\x01\x02"}})
    logging.getLogger("muxer.node").info("not shown")
    logging.getLogger("muxer.rpc").warning("not shown either")
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert [(d["logger"], d["event"], d["peer"]) for d in lines] == [
        ("muxer.p2p", "dialed", "0102")]


def test_daemon_refuses_a_bad_level(tmp_path: Path, restore_logging: None) -> None:
    init_data_dir(make_genesis(tmp_path / "g"), tmp_path / "d")
    result = CliRunner().invoke(daemon_main, ["run", "--data-dir", str(tmp_path / "d"),
                                              "--log-level", "p2p=chatty"])
    assert result.exit_code == 2
    assert "log level 'chatty' is not one of debug" in result.output
