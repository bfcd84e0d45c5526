"""Shared helpers for the benchmarks: the raw verify rate every figure is compared with.

The yardstick is a fixed reference operation, one Ed25519 verify by OpenSSL (through
``cryptography``, single thread), the floor the targets were set against: ratios to it
normalize for the speed of the machine, which drifts on shared hosts. The node itself
verifies with libsodium (consensus/crypto.py), about twice as fast; each bench prints
that rate too, so both comparisons can be read.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consensus.crypto import PrivateKey, verify


def _rate(check: Callable[[], object], seconds: float) -> float:
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            check()
        n += 200
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def _sample() -> tuple[PrivateKey, bytes, bytes]:
    key = PrivateKey(bytes([7]) * 32)
    msg = b"MUXER/bench" + bytes(100)
    return key, msg, key.sign(msg)


def verify_rate(seconds: float = 2.0) -> float:
    """The reference: single-thread OpenSSL Ed25519 verifications per second, now."""
    key, msg, sig = _sample()
    pub = Ed25519PublicKey.from_public_bytes(key.public_key)

    def check() -> None:
        try:
            pub.verify(sig, msg)
        except InvalidSignature:
            raise AssertionError("the reference signature must verify") from None

    return _rate(check, seconds)


def node_verify_rate(seconds: float = 1.0) -> float:
    """Single-thread verifications per second by the node's own verifier (libsodium)."""
    key, msg, sig = _sample()
    return _rate(lambda: verify(key.public_key, sig, msg), seconds)


def verify_note(vrate: float) -> str:
    """The line every bench prints with its figures."""
    return (f"raw verify/s (1 thread) {vrate:,.0f}  (OpenSSL, the reference; the node's "
            f"libsodium verifier: {node_verify_rate():,.0f}/s)")


def keep_or_remove(root: Path, keep: bool) -> None:
    """End of a bench run: keep the data and logs under ``root`` for a look (``--keep``), or
    remove them."""
    if keep:
        print(f"data and logs kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
