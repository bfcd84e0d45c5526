"""Shared helpers for the benchmarks: the raw verify rate every figure is compared with."""

from __future__ import annotations

import time

from consensus.crypto import PrivateKey, verify


def verify_rate(seconds: float = 2.0) -> float:
    """Single-thread Ed25519 verifications per second, measured now on this machine."""
    key = PrivateKey(bytes([7]) * 32)
    msg = b"MUXER/bench" + bytes(100)
    sig = key.sign(msg)
    pub = key.public_key
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            verify(pub, sig, msg)
        n += 200
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)
