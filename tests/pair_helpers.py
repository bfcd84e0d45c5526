"""Two real nodes in one process, driven directly (LevelDB in tmp dirs, signatures
checked inline, no sockets, one clock the test sets): A is the only witness and produces,
B follows. For the tests of a node's own paths (signature checks, re-checks, intake)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from consensus.codec import encode
from consensus.crypto import TAG_TX, PrivateKey, sha256
from consensus.tx import tapos_of
from muxernode.config import NodeConfig
from muxernode.node import Node, init_data_dir
from tests.procs import accounts, make_genesis

GENESIS_TIME = 1_700_000_000


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def transfer(key: PrivateKey, chain_id: bytes, fee: int, amount: int = 1,
             memo: str = "once") -> bytes:
    """A signed transfer to a fixed payee, naming genesis (TaPoS), expiring well after
    GENESIS_TIME; ``memo`` makes otherwise equal ones distinct."""
    ref_height, ref_prefix = tapos_of(0, chain_id)
    unsigned = [1, ref_height, ref_prefix, GENESIS_TIME + 3000, key.public_key, fee,
                [1, PrivateKey(sha256(b"payee")).address, amount, memo]]
    return encode([unsigned, key.sign(TAG_TX + chain_id + encode(unsigned))])


@dataclass
class Pair:
    a: Node
    b: Node
    clock: Clock
    payers: list[PrivateKey]  # the genesis accounts' keys

    def close(self) -> None:
        self.a.close()
        self.b.close()


def open_pair(tmp_path: Path, *, accounts_n: int = 1,
              b_config: NodeConfig | None = None) -> Pair:
    gdir = tmp_path / "genesis"
    genesis = make_genesis(gdir, witnesses=1, accounts=accounts_n, seed=8,
                           genesis_time=GENESIS_TIME)
    for name in ("a", "b"):
        init_data_dir(genesis, tmp_path / name)
    wkey = PrivateKey(bytes.fromhex((gdir / "w1.key").read_text().strip()))
    payers = [PrivateKey(bytes.fromhex(a["secret"])) for a in accounts(gdir)]
    clock = Clock(GENESIS_TIME)
    a = Node(tmp_path / "a", NodeConfig(rpc_port=0), now=clock, witness_key=wkey,
             inline_verify=True, serve_rpc=False)
    b = Node(tmp_path / "b", b_config or NodeConfig(rpc_port=0), now=clock,
             inline_verify=True, serve_rpc=False)
    return Pair(a, b, clock, payers)
