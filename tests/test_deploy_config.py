"""`muxernode config check FILE` and the MUXER_<SECTION>_<KEY> environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from muxernode.config import ConfigError, load_config
from muxernode.daemon import main as daemon_main

GOOD = """
[rpc]
listen = "0.0.0.0:8545"
max_batch = 50

[p2p]
listen = "0.0.0.0:9000"
peers = ["10.0.0.2:9000", "seed.example.org:9000"]

[log]
format = "json"
level = "info,p2p=debug"

[limits]
verify_threads = 4
"""


def _check(path: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(daemon_main, ["config", "check", str(path)], env=env)
    return result.exit_code, result.output


def test_a_good_config_is_ok(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(GOOD)
    code, out = _check(path)
    assert code == 0, out
    assert f"{path}: ok (rpc 0.0.0.0:8545, p2p 0.0.0.0:9000, 2 peer(s), no witness key)" in out


def test_every_problem_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[rpc]\nlisten = "8545"\nmax_batch = "50"\nmax_body = 3\n'
        '[p2p]\npeers = ["10.0.0.2"]\n'
        '[limits]\nmempool_txs = -1\n')
    code, out = _check(path)
    assert code == 1
    assert f"{path}: 5 problem(s)" in out
    for text in ("rpc.listen must be host:port, got '8545'", "rpc.max_batch must be a int",
                 "unknown config key rpc.max_body",
                 "each of p2p.peers must be host:port, got '10.0.0.2'",
                 "limits.mempool_txs must not be negative"):
        assert f"  - {text}" in out, (text, out)


def test_semantic_problems(tmp_path: Path) -> None:
    key = tmp_path / "w.key"
    key.write_text("00" * 32 + "\n")
    key.chmod(0o644)
    path = tmp_path / "config.toml"
    path.write_text(f'[witness]\nkey_file = "{key}"\n[log]\nlevel = "loud"\n'
                    '[limits]\nverify_threads = 0\n')
    code, out = _check(path)
    assert code == 1, out
    assert "log.level: log level 'loud' is not one of" in out
    assert f"witness.key_file: witness key {key} is readable by others (mode 644)" in out
    assert "limits.verify_threads must be at least 1" in out
    key.chmod(0o600)
    path.write_text(f'[witness]\nkey_file = "{key}"\n')
    code, out = _check(path)
    assert code == 0 and f"witness key {key})" in out, out


def test_unreadable_or_not_toml(tmp_path: Path) -> None:
    code, out = _check(tmp_path / "missing.toml")
    assert code == 1 and "cannot read config" in out and "No such file" in out
    path = tmp_path / "config.toml"
    path.write_text("[rpc\nlisten = 1\n")
    code, out = _check(path)
    assert code == 1 and "is not valid TOML" in out
    path.write_text("[nodes]\nx = 1\n")
    code, out = _check(path)
    assert code == 1 and "unknown config section [nodes]" in out


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(GOOD)
    cfg = load_config(path, env={"MUXER_RPC_LISTEN": "127.0.0.1:9545",
                                 "MUXER_P2P_PEERS": "a:1, b:2",
                                 "MUXER_HISTORY_ENABLED": "false",
                                 "MUXER_LIMITS_BLOCK_TXS": "500"})
    assert (cfg.rpc_host, cfg.rpc_port) == ("127.0.0.1", 9545)
    assert cfg.peers == ["a:1", "b:2"]
    assert cfg.history is False and cfg.block_txs == 500
    assert cfg.max_batch == 50  # from the file, untouched
    # without a file, the environment alone
    assert load_config(None, env={"MUXER_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match="MUXER_LIMITS_BLOCK_TXS must be a non-negative "
                                          "integer, got 'many'"):
        load_config(None, env={"MUXER_LIMITS_BLOCK_TXS": "many"})
    with pytest.raises(ConfigError, match=r"from the environment variable MUXER_RPC_LISTEN"):
        load_config(None, env={"MUXER_RPC_LISTEN": "nowhere"})
    code, out = _check(path, env={"MUXER_P2P_LISTEN": "x"})
    assert code == 1 and "MUXER_P2P_LISTEN" in out
