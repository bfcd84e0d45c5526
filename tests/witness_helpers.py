"""Witness daemons on 127.0.0.1 that peer with each other (real processes, tests/procs.py)."""

from __future__ import annotations

from pathlib import Path

from muxernode.node import init_data_dir
from tests.procs import Daemon


def start_witnesses(daemons: list[Daemon], data_dirs: list[Path], gdir: Path,
                    ports: list[int], *, genesis: Path | None = None) -> None:
    """Start witness i (key ``gdir/w{i+1}.key``) on ``data_dirs[i]``, p2p on ``ports[i]``,
    peered with every other; each is appended to ``daemons`` as it starts (so the caller
    stops what did start). ``genesis``: initialise the data dirs from it first."""
    n = len(data_dirs)
    for i, data in enumerate(data_dirs):
        if genesis is not None:
            init_data_dir(genesis, data)
        peers = [a for j in range(n) if j != i for a in ("--peer", f"127.0.0.1:{ports[j]}")]
        d = Daemon(data, witness_key=gdir / f"w{i + 1}.key",
                   extra_args=["--p2p", f"127.0.0.1:{ports[i]}", *peers])
        daemons.append(d)
        d.start()
