"""Who may do what to a node, and what stays secret (issue 6, part 5).

- The RPC listens on 127.0.0.1 unless configured otherwise (checked on the real socket).
- Admin methods (add_peer, drop_peer, ban_peer, unban_peer) need the token of
  ``<data_dir>/rpc.token`` (created 0600 on first start) as ``Authorization: Bearer``;
  without it they answer -32003 and change nothing. Read methods stay open.
- Key files: the daemon refuses a witness key (or token) that others may read; keystore
  files are 0600.
- No secret reaches a log: a daemon with a witness key, debug logging, wallet
  transactions and admin calls; its whole log is searched for every secret involved.

Networking is on 127.0.0.1 only; every process started here is stopped by its pid.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from click.testing import CliRunner

from muxernode.config import NodeConfig, load_config
from muxernode.node import Node, NodeError, init_data_dir
from muxernode.rpc import (
    INVALID_PARAMS,
    TOKEN_FILE,
    UNAUTHORIZED,
    JsonRpcApp,
    TokenError,
    load_or_create_token,
)
from muxernode.wallet import main as wallet_main
from tests.procs import REPO, Daemon, accounts, make_genesis, wait_for
from tests.rpc_helpers import LedgerBackend, served

TIMEOUT = 30
PASS = "secret passphrase 7f3a"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the LISTEN sockets on ``port``, from /proc/net/tcp{,6}."""
    out: set[str] = set()
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            local, state = cols[1], cols[3]
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            if len(addr_hex) == 8:  # IPv4, little-endian
                out.add(".".join(str(b) for b in reversed(bytes.fromhex(addr_hex))))
            else:
                out.add("ipv6:" + addr_hex)
    return out


# --- listening address ------------------------------------------------------------------


async def test_rpc_listens_on_loopback_unless_configured(tmp_path: Path) -> None:
    assert NodeConfig().rpc_host == "127.0.0.1"
    cfg_file = tmp_path / "node.toml"
    cfg_file.write_text("[rpc]\nmax_batch = 5\nmax_connections = 7\n", encoding="utf-8")
    cfg = load_config(cfg_file)
    assert (cfg.rpc_host, cfg.max_batch, cfg.max_connections) == ("127.0.0.1", 5, 7)
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs /proc/net/tcp to see the bound address")
    init_data_dir(make_genesis(tmp_path / "genesis", accounts=1, seed=3), tmp_path / "node")
    node = Node(tmp_path / "node", NodeConfig(rpc_port=0))  # the default host
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(node.run)
            try:
                assert listening_addresses(port) == {"127.0.0.1"}
                assert node.p2p_port is not None
                assert listening_addresses(node.p2p_port) == {"127.0.0.1"}
            finally:
                node.stop()


# --- the token file ---------------------------------------------------------------------


def test_token_file_is_private_and_kept(tmp_path: Path) -> None:
    token = load_or_create_token(tmp_path)
    path = tmp_path / TOKEN_FILE
    assert mode_of(path) == 0o600
    assert len(token) == 64 and int(token, 16) >= 0
    assert load_or_create_token(tmp_path) == token  # created once, then reused
    other = tmp_path / "other"
    other.mkdir()
    assert load_or_create_token(other) != token  # random, not derived
    path.chmod(0o644)
    with pytest.raises(TokenError, match=r"readable by others.*chmod 600"):
        load_or_create_token(tmp_path)


def test_node_refuses_a_readable_token(tmp_path: Path) -> None:
    init_data_dir(make_genesis(tmp_path / "genesis", accounts=1, seed=4), tmp_path / "node")
    node = Node(tmp_path / "node", NodeConfig(rpc_port=0))
    token_path = tmp_path / "node" / TOKEN_FILE
    assert node.rpc_token == token_path.read_text().strip()
    assert mode_of(token_path) == 0o600
    node.close()
    token_path.chmod(0o640)
    with pytest.raises(NodeError, match="readable by others"):
        Node(tmp_path / "node", NodeConfig(rpc_port=0))


# --- admin methods need the token (RPC level) -------------------------------------------

ADMIN_CALLS: list[tuple[str, list[Any]]] = [
    ("add_peer", ["127.0.0.1:30333"]),
    ("drop_peer", ["ab" * 32]),
    ("ban_peer", ["ab" * 32, 60]),
    ("ban_peer", ["ab" * 32]),
    ("unban_peer", ["ab" * 32]),
]


async def test_admin_methods_need_the_token() -> None:
    token = "c0ffee" * 10 + "beef"
    b = LedgerBackend()
    wrong = [None, "", "Bearer", f"Bearer {token[:-1]}", f"Bearer {token}0",
             f"Basic {token}", f"Token {token}", token, f"Bearer {token.upper()}"]
    with trio.fail_after(TIMEOUT):
        async with served(JsonRpcApp(b, admin_token=token)) as client:
            for method, params in ADMIN_CALLS:
                for header in wrong:
                    headers = {} if header is None else {"authorization": header}
                    r = await client.post("/rpc", headers=headers, json={
                        "jsonrpc": "2.0", "method": method, "params": params, "id": 1})
                    assert r.json()["error"] == {"code": UNAUTHORIZED,
                                                 "message": "unauthorized"}, (method, header)
            # checked before the params: bad params without the token say nothing
            r = await client.post("/rpc", json={"jsonrpc": "2.0", "method": "add_peer",
                                                "params": ["nonsense"], "id": 1})
            assert r.json()["error"]["code"] == UNAUTHORIZED
            assert b.admin_calls == [], "an unauthorized call reached the node"
            # read methods stay open, in the same batch as a refused admin call
            r = await client.post("/rpc", json=[
                {"jsonrpc": "2.0", "method": "peers", "params": [], "id": 1},
                {"jsonrpc": "2.0", "method": "unban_peer", "params": ["ab" * 32], "id": 2},
                {"jsonrpc": "2.0", "method": "list_evidence", "params": [], "id": 3}])
            assert [("result" in d, d.get("error", {}).get("code")) for d in r.json()] == [
                (True, None), (False, UNAUTHORIZED), (True, None)]
            assert b.admin_calls == []

            auth = {"authorization": f"Bearer {token}"}
            for method, params in ADMIN_CALLS:
                r = await client.post("/rpc", headers=auth, json={
                    "jsonrpc": "2.0", "method": method, "params": params, "id": 1})
                assert "result" in r.json(), (method, r.json())
            r = await client.post("/rpc", headers={"authorization": f"bearer  {token}"},
                                  json={"jsonrpc": "2.0", "method": "drop_peer",
                                        "params": ["cd" * 32], "id": 1})
            assert "result" in r.json()  # the scheme is case-insensitive, spaces skipped
            assert b.admin_calls == [
                ("add_peer", ["127.0.0.1", 30333]), ("drop_peer", [b"\xab" * 32]),
                ("ban_peer", [b"\xab" * 32, 60]), ("ban_peer", [b"\xab" * 32, None]),
                ("unban_peer", [b"\xab" * 32]), ("drop_peer", [b"\xcd" * 32])]
            # with the token, params are checked as usual
            bad_params: list[tuple[str, list[Any]]] = [
                ("add_peer", ["x"]), ("add_peer", ["h:0"]), ("add_peer", ["h:65536"]),
                ("add_peer", [5]), ("add_peer", ["a b:1"]), ("drop_peer", ["ab" * 31]),
                ("ban_peer", ["ab" * 32, 0]), ("ban_peer", ["ab" * 32, 1.5]),
                ("ban_peer", ["ab" * 32, True]), ("ban_peer", []),
                ("unban_peer", ["ab" * 32, 1])]
            for method, params in bad_params:
                r = await client.post("/rpc", headers=auth, json={
                    "jsonrpc": "2.0", "method": method, "params": params, "id": 1})
                assert r.json()["error"]["code"] == INVALID_PARAMS, (method, params)
            assert len(b.admin_calls) == 6
        # an app without a token refuses every admin call, whatever is sent
        async with served(JsonRpcApp(b)) as client:
            r = await client.post("/rpc", headers={"authorization": "Bearer"}, json={
                "jsonrpc": "2.0", "method": "add_peer", "params": ["h:1"], "id": 1})
            assert r.json()["error"]["code"] == UNAUTHORIZED
        assert len(b.admin_calls) == 6


# --- admin methods on real nodes --------------------------------------------------------


@asynccontextmanager
async def two_nodes(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    """Two nodes of one chain (no witness, no seeds), RPC and p2p on 127.0.0.1 port 0."""
    genesis = make_genesis(tmp_path / "genesis", accounts=1, seed=9)
    nodes = []
    for name in ("a", "b"):
        init_data_dir(genesis, tmp_path / name)
        nodes.append(Node(tmp_path / name, NodeConfig(rpc_port=0)))
    async with trio.open_nursery() as nursery:
        for n in nodes:
            await nursery.start(n.run)
        try:
            yield nodes[0], nodes[1]
        finally:
            for n in nodes:
                n.stop()


async def until(predicate: Any, timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.05)):  # bounded in count and time
        if predicate():
            return
        await trio.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


async def test_admin_controls_peers_of_a_real_node(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with two_nodes(tmp_path) as (a, b), httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{a.rpc_port}/rpc"
            good = {"authorization": f"Bearer {a.rpc_token}"}
            bad = {"authorization": f"Bearer {b.rpc_token}"}  # another node's token
            b_id = b.node_key.public_key
            assert a.network is not None and b.p2p_port is not None
            net = a.network

            async def call(method: str, params: list[Any], headers: dict[str, str]) -> Any:
                r = await http.post(url, headers=headers, json={
                    "jsonrpc": "2.0", "method": method, "params": params, "id": 1})
                return r.json()

            async def peer_ids() -> set[str]:
                doc = await call("peers", [], {})
                return {p["node_id"] for p in doc["result"]}

            addr = f"127.0.0.1:{b.p2p_port}"
            assert (await call("add_peer", [addr], bad))["error"]["code"] == UNAUTHORIZED
            await trio.sleep(1.5)  # longer than the dial loop's tick
            assert await peer_ids() == set() and ("127.0.0.1", b.p2p_port) not in net._book

            assert (await call("add_peer", [addr], good))["result"] == {"address": addr}
            await until(lambda: b_id in net.peer_ids(), 10, "a dials b")
            assert b_id.hex() in await peer_ids()

            old = net._peers[b_id]
            assert (await call("drop_peer", [b_id.hex()], {}))["error"]["code"] == UNAUTHORIZED
            assert net._peers.get(b_id) is old
            assert (await call("drop_peer", [b_id.hex()], good))["result"] == {
                "node_id": b_id.hex(), "dropped": True}
            await until(lambda: net._peers.get(b_id) is not old, 5, "the connection ends")

            assert (await call("ban_peer", [b_id.hex(), 60], bad))["error"]["code"] == (
                UNAUTHORIZED)
            assert not net.is_banned(b_id)
            assert (await call("ban_peer", [b_id.hex(), 60], good))["result"] == {
                "node_id": b_id.hex(), "seconds": 60}
            assert net.is_banned(b_id)
            await until(lambda: b_id not in net.peer_ids(), 5, "the banned peer goes")
            for _ in range(25):  # 2.5 s: neither side's redial gets through
                assert b_id not in net.peer_ids()
                await trio.sleep(0.1)

            assert (await call("unban_peer", [b_id.hex()], {}))["error"]["code"] == (
                UNAUTHORIZED)
            assert net.is_banned(b_id)
            assert (await call("unban_peer", [b_id.hex()], good))["result"] == {
                "node_id": b_id.hex(), "unbanned": True}
            assert not net.is_banned(b_id)
            await until(lambda: b_id in net.peer_ids(), 10, "reconnected after the unban")
            assert (await call("unban_peer", [b_id.hex()], good))["result"]["unbanned"] is False


# --- key files --------------------------------------------------------------------------


def _run_daemon(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "muxernode.daemon", "run", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_daemon_refuses_readable_witness_key_and_token(tmp_path: Path) -> None:
    gdir = tmp_path / "genesis"
    init_data_dir(make_genesis(gdir, accounts=1, seed=6), tmp_path / "node")
    key = gdir / "w1.key"
    assert mode_of(key) == 0o600  # as `genesis new` writes it
    key.chmod(0o644)
    out = _run_daemon("--data-dir", str(tmp_path / "node"), "--rpc", "127.0.0.1:0",
                      "--witness-key", str(key))
    assert out.returncode == 2, out
    assert "readable by others (mode 644)" in out.stderr and f"chmod 600 {key}" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "node" / "rpc.addr").exists()  # it never served

    key.chmod(0o600)
    token = tmp_path / "node" / TOKEN_FILE
    token.write_text("ab" * 32 + "\n")
    token.chmod(0o604)
    out = _run_daemon("--data-dir", str(tmp_path / "node"), "--rpc", "127.0.0.1:0",
                      "--witness-key", str(key))
    assert out.returncode == 2 and "rpc.token is readable by others" in out.stderr, out


def test_daemon_says_in_one_line_that_a_port_is_taken(tmp_path: Path) -> None:
    """A p2p or RPC address another process holds: exit 2, one line naming what could
    not listen where, no traceback, nothing served."""
    init_data_dir(make_genesis(tmp_path / "genesis", accounts=1, seed=6), tmp_path / "node")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for flag, what in (("--p2p", "p2p"), ("--rpc", "rpc")):
            args = ["--data-dir", str(tmp_path / "node"), flag, f"127.0.0.1:{port}"]
            if flag == "--p2p":
                args += ["--rpc", "127.0.0.1:0"]
            out = _run_daemon(*args)
            assert out.returncode == 2, out
            assert (f"error: cannot listen for {what} on 127.0.0.1:{port}: "
                    "Address already in use") in out.stderr, out.stderr
            assert "Traceback" not in out.stderr
            assert not (tmp_path / "node" / "rpc.addr").exists()


# --- no secret in the logs --------------------------------------------------------------


def test_no_secret_reaches_the_logs(tmp_path: Path) -> None:
    """Everything a node operator and a wallet user do, at debug log level; then the
    daemon's whole output is searched for every secret: witness seed, node key, RPC
    token, a wrong token tried, the keystore passphrase, the account seed."""
    gdir = tmp_path / "genesis"
    init_data_dir(make_genesis(gdir, accounts=2, seed=8), tmp_path / "node")
    config = tmp_path / "node.toml"
    config.write_text('[log]\nlevel = "debug"\n', encoding="utf-8")
    daemon = Daemon(tmp_path / "node", witness_key=gdir / "w1.key",
                    extra_args=["--config", str(config)])
    funded = accounts(gdir)
    wrong_token = "ee" * 32
    url = daemon.start()
    try:
        data_dir = tmp_path / "node"
        token = (data_dir / TOKEN_FILE).read_text().strip()
        assert mode_of(data_dir / TOKEN_FILE) == 0o600
        wait_for(lambda: daemon.rpc("chain_info")["head_height"] >= 1, timeout=TIMEOUT)
        keystore = tmp_path / "keys"
        env = {"MUXER_KEYSTORE": str(keystore), "MUXER_PASSPHRASE": PASS, "MUXER_RPC": url}

        def wallet(*args: str, extra: dict[str, str | None] | None = None) -> str:
            r = CliRunner().invoke(wallet_main, list(args), env={**env, **(extra or {})},
                                   catch_exceptions=False, prog_name="muxer")
            assert r.exit_code == 0, r.output
            assert token not in r.output  # the wallet never prints the token either
            return r.output

        wallet("keys", "import", "alice", extra={"MUXER_SEED": funded[0]["secret"]})
        files = list(keystore.iterdir())
        assert files and all(mode_of(f) == 0o600 for f in files)
        assert mode_of(keystore) == 0o700
        wallet("transfer", "alice", funded[1]["address"], "1.5", "--wait", "included",
               "--timeout", str(TIMEOUT))
        admin = ["admin", "--data-dir", str(data_dir)]
        out = wallet(*admin, "add-peer", "127.0.0.1:9")  # nothing there: a failing dial
        assert "127.0.0.1:9" in out
        peer = "12" * 32
        wallet(*admin, "ban-peer", peer, "--seconds", "30")
        out = wallet("--json", *admin, "unban-peer", peer, extra={"MUXER_RPC": None})
        assert '"unbanned": true' in out  # the URL came from the data dir's rpc.addr
        wallet(*admin, "drop-peer", peer)
        wallet(*admin, "peers")
        wallet(*admin, "evidence")
        refused = httpx.post(url, headers={"authorization": f"Bearer {wrong_token}"}, json={
            "jsonrpc": "2.0", "method": "add_peer", "params": ["127.0.0.1:10"], "id": 1})
        assert refused.json()["error"]["code"] == UNAUTHORIZED
        # a wallet given another node's data dir gets a clear refusal, not a traceback
        other = tmp_path / "other"
        other.mkdir()
        (other / TOKEN_FILE).write_text(wrong_token + "\n")
        r = CliRunner().invoke(wallet_main, ["admin", "--data-dir", str(other), "add-peer",
                                             "127.0.0.1:11"], env=env, prog_name="muxer")
        assert r.exit_code == 1 and "refused the admin call" in r.output, r.output
        assert wrong_token not in r.output
        time.sleep(1.5)  # let the node log the failing dial
    finally:
        code = daemon.stop()
    assert code == 0
    log = (tmp_path / "node" / "node.log").read_text(errors="replace")
    # the log is the real thing: it shows what was done
    assert "event=produced" in log and "method=add_peer" in log and "method=ban_peer" in log
    assert " debug " in log  # debug logging was on: the most a log could say
    secrets = {
        "witness seed": (gdir / "w1.key").read_text().strip(),
        "node key": (data_dir / "node.key").read_text().strip(),
        "rpc token": token,
        "wrong token": wrong_token,
        "passphrase": PASS,
        "account seed": funded[0]["secret"],
    }
    for what, secret in secrets.items():
        for form in {secret, secret.upper()}:
            assert form not in log, f"the {what} is in the daemon's log"
    assert os.environ.get("MUXER_PASSPHRASE") is None  # the test did not leak it to itself
