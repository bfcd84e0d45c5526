"""Fuzz every decoder that reads bytes from the network (issue 6: hostile input).

    python -m bench.fuzz                          # 240,000 inputs, seed 1
    python -m bench.fuzz --inputs 1000000 --seed 7
    python -m bench.fuzz --only block,vote

Decoders: the frame splitter (p2p/frames.py), the p2p message decoder with every message
type (p2p/messages.py), the tx decoder (consensus/tx.py, plus the op decoder of a tx that
decodes), the block decoder (consensus/block.py), the vote decoder (consensus/vote.py) and
the canonical codec (consensus/codec.py). Each gets the same share of the inputs, made
three ways from one seeded Random, so a run replays exactly:

- random: plain random bytes (mostly short, some up to 4 KiB);
- structured: a random msgpack object packed (ints, bins, strs, bools, nil, floats,
  nested arrays, now and then a map or an ext), so inputs get past the msgpack parser
  into the field checks;
- mutation: a valid encoding from the corpus (every message type, txs of every op,
  blocks with txs and votes, votes) with 1-4 byte-level edits: bit flips, interesting
  bytes (msgpack markers, 0x00, 0xff), inserted, deleted, duplicated or spliced ranges,
  truncation, trailing bytes.

The oracle (``Target.run``): a decoder may only raise its documented error type
(FrameError, MessageError, Rejected, BlockError, VoteError, CodecError); whatever it
accepts must re-encode consistently (bytes-exact for the canonical consensus objects,
an equal message for p2p, re-framed bodies for frames). Anything else is counted as
``UNEXPECTED`` and makes the run exit 1. A memory pass then runs a sample of inputs plus
hand-made allocation bombs (length prefixes of 4 GiB, arrays claiming 2**32 items, deep
nesting) under tracemalloc and fails if one input makes a decoder allocate more than
``MEMORY_FACTOR`` times its size plus 1 MiB.

Figures: inputs/s per decoder and the count of each outcome, next to the single-thread
verify rate of the same run (bench/common.py), like the other benches.
tests/test_fuzz.py runs the same oracle under hypothesis in `make test`.
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from bench.common import verify_note, verify_rate
from consensus.block import Block, BlockError, decode_block, peek_block_id
from consensus.codec import CodecError, decode, encode
from consensus.crypto import PrivateKey, sha256
from consensus.errors import Rejected
from consensus.tx import SignedTx, build_tx, decode_tx
from consensus.vote import Vote, VoteError, decode_vote
from muxernode.ops import (
    DEFAULT_RULES,
    Claim,
    CreateSociety,
    Give,
    Join,
    Op,
    Pledge,
    RegisterWitness,
    Transfer,
    VoteWitness,
    decode_op,
    encode_op,
)
from muxernode.ops import Vote as VoteOp
from p2p.frames import MAX_FRAME, FrameDecoder, FrameError, encode_frame, frame
from p2p.messages import (
    BlockRange,
    Blocks,
    Bye,
    GetBlocks,
    GetData,
    GetHeads,
    Heads,
    Hello,
    HelloAck,
    Inv,
    Kind,
    Message,
    MessageError,
    NotFound,
    Peers,
    PeersReq,
    Ping,
    Pong,
    Txs,
    Votes,
    decode_message,
    encode_message,
)
from p2p.peer import HANDSHAKE_MAX_FRAME

__all__ = [
    "MAX_BLOCK_BYTES",
    "MAX_TX_BYTES",
    "MEMORY_FACTOR",
    "MEMORY_SLACK",
    "TARGETS",
    "Target",
    "Unexpected",
    "allocation_bombs",
    "corpus",
    "memory_pass",
    "mutate",
    "mutate_object",
    "random_input",
    "random_object",
    "structured_input",
]

CHAIN_ID = sha256(b"muxer-fuzz")
MAX_TX_BYTES = 8192  # the genesis defaults the node runs with
MAX_BLOCK_BYTES = 2 * 1024 * 1024
# Allowed allocation per input byte: msgpack builds a Python object per item (a 1-byte
# int item becomes a 28-byte int plus an 8-byte list slot, ~36x), and the consensus
# decoders keep the raw bytes next to the objects. Anything unbounded (an allocation sized
# by a claimed length instead of the bytes present) blows far past this.
MEMORY_FACTOR = 64
MEMORY_SLACK = 1024 * 1024


class Unexpected(AssertionError):
    """A decoder broke its contract: another exception type, or an inconsistent result."""


# --- the oracle, per decoder ------------------------------------------------------------------


def _frames(data: bytes) -> str:
    """Feed in uneven chunks: only FrameError; bodies within limits; never buffering more
    than one frame plus one chunk; the bodies re-frame to the bytes they were cut from."""
    dec = FrameDecoder(HANDSHAKE_MAX_FRAME if data[:1] != b"\x00" else MAX_FRAME)
    bodies: list[bytes] = []
    step = 1 + (data[-1] if data else 0) % 97  # deterministic, varied chunking
    try:
        for i in range(0, len(data), step):
            bodies += dec.feed(data[i : i + step])
            if dec.buffered > dec.max_frame + step:
                raise Unexpected(f"frame decoder holds {dec.buffered} bytes")
    except FrameError:
        if dec.buffered:
            raise Unexpected("a failed frame decoder still holds bytes") from None
        return "FrameError"
    for body in bodies:
        if not 0 < len(body) <= dec.max_frame:
            raise Unexpected(f"frame body of {len(body)} bytes returned")
    consumed = b"".join(frame(b) for b in bodies)
    if data[: len(consumed)] != consumed:
        raise Unexpected("frame bodies do not re-frame to their input")
    return "frames" if bodies and not dec.buffered else "incomplete"


def _message(data: bytes) -> str:
    try:
        msg = decode_message(data)
    except MessageError:
        return "MessageError"
    # p2p does not insist on canonical bytes, but what it accepted must mean one message
    if decode_message(encode_message(msg)) != msg:
        raise Unexpected(f"{type(msg).__name__} does not re-encode to itself")
    return "ok:" + type(msg).__name__


def _tx(data: bytes) -> str:
    try:
        tx = decode_tx(data, MAX_TX_BYTES)
    except Rejected as exc:
        return "Rejected:" + exc.reason
    if tx.raw != data or encode(tx.obj()) != data:
        raise Unexpected("a decoded tx does not re-encode to its bytes")
    try:
        op = decode_op(tx.op)  # the node's next step for a gossiped tx
    except Rejected:
        return "ok (op Rejected)"
    if encode_op(op) != tx.op:
        raise Unexpected("a decoded op does not re-encode to itself")
    return "ok"


def _decode_block(data: bytes, known: Callable[[bytes], SignedTx | None] | None
                  ) -> Block | str:
    try:
        return decode_block(data, MAX_BLOCK_BYTES, known)
    except BlockError as exc:
        return "BlockError:" + exc.reason


def _block(data: bytes) -> str:
    """decode_block, alone and reusing known txs (the node passes its mempool's): the same
    verdict both ways; peek_block_id (the node's shortcut for copies of known blocks)
    never raises and names the id of whatever decodes."""
    peeked = peek_block_id(data)
    if peeked is not None and len(peeked) != 32:
        raise Unexpected("peek_block_id returned something else than an id")
    block = _decode_block(data, None)
    reused = _decode_block(data, _known_txs().get)
    if isinstance(block, str) or isinstance(reused, str):
        if not isinstance(block, str) or not isinstance(reused, str):
            raise Unexpected(f"decode_block with known txs says {reused!r}, "
                             f"without {block!r}")
        return block
    if reused.id != block.id or [t.raw for t in reused.txs] != [t.raw for t in block.txs]:
        raise Unexpected("decode_block with known txs decodes another block")
    again = encode([block.header(), block.signature, [t.obj() for t in block.txs],
                    [v.obj() for v in block.votes]])
    if again != data or block.id != sha256(encode(block.header())) or peeked != block.id:
        raise Unexpected("a decoded block does not re-encode to its bytes")
    return "ok"


def _vote(data: bytes) -> str:
    try:
        vote = decode_vote(data)
    except VoteError as exc:
        return "VoteError:" + exc.reason
    if encode(vote.obj()) != data or vote.hash != sha256(data):
        raise Unexpected("a decoded vote does not re-encode to its bytes")
    return "ok"


def _codec(data: bytes) -> str:
    try:
        obj = decode(data)
    except CodecError:
        return "CodecError"
    if encode(obj) != data:
        raise Unexpected("the codec accepted bytes that do not re-encode to themselves")
    return "ok"


@dataclass(frozen=True)
class Target:
    name: str
    check: Callable[[bytes], str]  # the outcome label; raises only Unexpected

    def run(self, data: bytes) -> str:
        try:
            return self.check(data)
        except Unexpected:
            raise
        except Exception as exc:  # the point of the oracle: nothing else may escape
            raise Unexpected(f"{self.name}: {type(exc).__name__}: {exc}") from exc


TARGETS: list[Target] = [
    Target("frame", _frames),
    Target("message", _message),
    Target("tx", _tx),
    Target("block", _block),
    Target("vote", _vote),
    Target("codec", _codec),
]


# --- the corpus of valid encodings ------------------------------------------------------------


def _key(i: int) -> PrivateKey:
    return PrivateKey(sha256(b"muxer-fuzz/key" + bytes([i])))


@functools.cache
def _known_txs() -> dict[bytes, SignedTx]:
    """The corpus txs by id, as a mempool would hold them."""
    return {tx.tx_id: tx for tx in _txs()}


def _txs() -> list[SignedTx]:
    k = _key(1)
    claim_id = sha256(b"claim")
    ops: list[Op] = [
        Transfer(_key(2).address, 12_345, "rent"),
        CreateSociety("fire-aid", "Fire aid", "help after house fires", DEFAULT_RULES),
        Join("fire-aid", "alice"),
        Pledge("fire-aid", 10**8),
        Claim("fire-aid", 5 * 10**7, 100, "roof", "the roof burnt down", sha256(b"ev")),
        VoteOp(claim_id, 1),
        Give(claim_id, 10**6),
        RegisterWitness(_key(3).public_key, "https://w.example"),
        VoteWitness((_key(3).address, _key(4).address)),
    ]
    return [build_tx(k, CHAIN_ID, encode_op(op), ref_block_num=i, ref_block_prefix=7 * i,
                     expiration=1_800_000_000 + i, fee=10 + i)
            for i, op in enumerate(ops)]


def _votes() -> list[Vote]:
    w = _key(5)
    return [Vote.sign(w, CHAIN_ID, sha256(b"s%d" % i), i, sha256(b"t%d" % i), i + 1 + i * 7)
            for i in range(3)]


def _blocks(txs: list[SignedTx], votes: list[Vote]) -> list[Block]:
    w = _key(6)
    return [
        Block.build(w, CHAIN_ID, 1, CHAIN_ID, 1_800_000_001, [], [], sha256(b"d1")),
        Block.build(w, CHAIN_ID, 2, sha256(b"p"), 1_800_000_002, txs[:3], votes[:1],
                    sha256(b"d2")),
        Block.build(w, CHAIN_ID, 900, sha256(b"q"), 1_800_000_900, txs, votes, sha256(b"d3")),
    ]


def corpus() -> dict[str, list[bytes]]:
    """Valid encodings for each decoder: the seeds of the mutation inputs."""
    txs, votes = _txs(), _votes()
    blocks = _blocks(txs, votes)
    i1, i2 = sha256(b"id1"), sha256(b"id2")
    messages: list[Message] = [
        Hello(1, CHAIN_ID, _key(7).public_key, i1, 7000, 12, i2),
        HelloAck(bytes(range(64))),
        Ping(2**64 - 1), Pong(0),
        Inv(Kind.TX, [tx.tx_id for tx in txs]), Inv(Kind.VOTE, [i1]),
        GetData(Kind.BLOCK, [b.id for b in blocks]),
        Txs([tx.raw for tx in txs]), Blocks([b.raw for b in blocks[:2]]),
        Votes([v.raw for v in votes]),
        GetBlocks(5, 500), GetHeads(), Heads(10, i1, 9), PeersReq(),
        Peers([("127.0.0.1", 7000), ("node.example", 65535)]), Bye("shutdown"),
        NotFound(Kind.TX, [i1, i2]), BlockRange(3, []), BlockRange(1, [blocks[0].raw]),
    ]
    bodies = [encode_message(m) for m in messages]
    frames = [encode_frame(m) for m in messages]
    streams = [frames[i] + frames[(i + 5) % len(frames)] for i in range(len(frames))]
    # a long-frame stream, for the MAX_FRAME limit (see _frames: a leading 0 byte)
    streams.append(frame(b"\x91" + b"\x00" * 5000))
    consensus_objs = ([tx.raw for tx in txs] + [v.raw for v in votes]
                      + [b.raw for b in blocks] + [encode([1, b"x", "s", [2**64 - 1, []]])])
    return {
        "frame": streams,
        "message": bodies,
        "tx": [tx.raw for tx in txs],
        "block": [b.raw for b in blocks],
        "vote": [v.raw for v in votes],
        "codec": consensus_objs,
    }


# --- input generators -------------------------------------------------------------------------

# bytes that steer msgpack: fix/8/16/32 headers of every family, nil/bool, reserved 0xc1,
# ext and float markers, and the ends of the byte range
INTERESTING = bytes([0x00, 0x01, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2,
                     0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0,
                     0xD3, 0xD4, 0xD8, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xE0, 0xFF])


def mutate(rng: random.Random, data: bytes, others: Sequence[bytes]) -> bytes:
    """1-4 byte-level edits of a valid encoding."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(10)
        n = len(buf)
        pos = rng.randrange(n) if n else 0
        if op == 0 and n:  # bit flip
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # an interesting byte
            buf[pos] = rng.choice(INTERESTING)
        elif op == 2 and n:  # a length-ish byte off by a little
            buf[pos] = (buf[pos] + rng.choice((-2, -1, 1, 2))) & 0xFF
        elif op == 3:  # insert random bytes
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 4 and n:  # delete a range
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 5 and n:  # truncate
            del buf[pos:]
        elif op == 6 and n:  # duplicate a range in place
            end = min(n, pos + rng.randint(1, 64))
            buf[end:end] = buf[pos:end]
        elif op == 7 and others:  # splice in a piece of another valid encoding
            other = rng.choice(others)
            a = rng.randrange(len(other))
            buf[pos:pos] = other[a : a + rng.randint(1, 64)]
        elif op == 8:  # trailing bytes
            buf += rng.randbytes(rng.randint(1, 4))
        else:  # overwrite a run with a repeated byte
            buf[pos : pos + 4] = bytes([rng.choice(INTERESTING)]) * 4
    return bytes(buf)


def random_input(rng: random.Random) -> bytes:
    """Plain random bytes: mostly short, now and then up to 4 KiB."""
    n = rng.randrange(64) if rng.random() < 0.8 else rng.randrange(4096)
    return rng.randbytes(n)


def random_object(rng: random.Random, depth: int = 0) -> Any:
    """A random msgpack-able object, biased towards the shapes the decoders expect."""
    r = rng.random()
    if depth < 4 and r < 0.3:
        return [random_object(rng, depth + 1) for _ in range(rng.randrange(9))]
    choice = rng.randrange(12)
    if choice == 0:
        return rng.choice((0, 1, 2, 127, 128, 255, 256, 65535, 65536, 2**32, 2**63 - 1,
                           2**64 - 1, -1, -33, -(2**63)))
    if choice in (1, 2):
        return rng.randrange(20)
    if choice in (3, 4):
        return rng.randbytes(rng.choice((20, 32, 32, 64, rng.randrange(70))))
    if choice == 5:
        return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(12)))
    if choice == 6:
        return rng.choice((True, False, None))
    if choice == 7:
        return rng.random()
    if choice == 8 and depth < 4:
        return {str(rng.randrange(3)): random_object(rng, depth + 1)}
    if choice == 9:  # ext types, the timestamp (-1) among them
        if rng.random() < 0.3:
            return msgpack.Timestamp(rng.randrange(2**34), rng.randrange(10**9))
        return msgpack.ExtType(rng.randrange(3), rng.randbytes(rng.randrange(9)))
    return rng.randrange(2**64)


def mutate_object(rng: random.Random, obj: Any) -> Any:
    """A decoded valid object with one item somewhere replaced, dropped or duplicated:
    well-formed msgpack of nearly the right shape, which reaches the decoders' field
    checks instead of stopping in the msgpack parser."""
    if not isinstance(obj, list) or not obj or rng.random() < 0.15:
        return random_object(rng)
    out = list(obj)
    i = rng.randrange(len(out))
    op = rng.randrange(5)
    if op == 0:
        out[i] = random_object(rng)
    elif op == 1:
        del out[i]
    elif op == 2:
        out.insert(i, out[i])
    else:  # descend
        out[i] = mutate_object(rng, out[i])
    return out


def structured_input(rng: random.Random, target: str,
                     seeds: Sequence[bytes] = ()) -> bytes:
    """A packed object: half the time a valid seed with one item changed (see
    mutate_object), else a random object; for p2p, an array led by a message type."""
    obj: Any
    if target == "frame":
        seeds = ()  # frame seeds are streams; mutate message bodies instead
    if seeds and rng.random() < 0.5:
        obj = mutate_object(rng, msgpack.unpackb(rng.choice(seeds), raw=False))
    else:
        obj = random_object(rng)
        if target in ("message", "frame"):
            obj = [rng.randrange(19), *(obj if isinstance(obj, list) else [obj])]
    try:
        body: bytes = msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        body = b"\xc1"
    if target == "frame":
        return len(body).to_bytes(4, "big") + body
    return body


def allocation_bombs() -> list[bytes]:
    """Small inputs whose headers claim huge sizes, and deep nesting."""
    return [
        b"\xdd\xff\xff\xff\xff",  # array32 of 2**32-1 items
        b"\xdc\xff\xff" + b"\xc0" * 16,  # array16 of 65535 items, 16 present
        b"\xc6\xff\xff\xff\xff" + b"x" * 64,  # bin32 of 4 GiB
        b"\xdb\xff\xff\xff\xff" + b"y" * 64,  # str32 of 4 GiB
        b"\xdf\xff\xff\xff\xff",  # map32 of 2**32-1 pairs
        b"\xc9\xff\xff\xff\xff\x01",  # ext32 of 4 GiB
        b"\x91" * 100_000 + b"\x00",  # deeper nesting than msgpack allows
        b"\x94" + b"\xdd\x7f\xff\xff\xff" * 4,  # arrays of 2**31 items, nested
        b"\xff\xff\xff\xff" + b"\x00" * 32,  # a frame prefix of 4 GiB
        (MAX_FRAME).to_bytes(4, "big") + b"\x00" * 64,  # a max frame, barely started
    ]


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Result:
    inputs: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] | None = None
    unexpected: list[tuple[str, bytes]] | None = None


def run_target(target: Target, seeds: list[bytes], n: int, rng: random.Random) -> Result:
    outcomes: Counter[str] = Counter()
    unexpected: list[tuple[str, bytes]] = []
    inputs = []
    for _ in range(n):
        r = rng.random()
        if r < 0.4:
            inputs.append(random_input(rng))
        elif r < 0.6:
            inputs.append(structured_input(rng, target.name, seeds))
        else:
            inputs.append(mutate(rng, rng.choice(seeds), seeds))
    start = time.perf_counter()
    for data in inputs:  # the generation above is not part of the measured rate
        try:
            outcomes[target.run(data)] += 1
        except Unexpected as exc:
            outcomes["UNEXPECTED"] += 1
            if len(unexpected) < 10:
                unexpected.append((str(exc), data))
    return Result(n, time.perf_counter() - start, outcomes, unexpected)


def memory_pass(target: Target, inputs: list[bytes]) -> tuple[int, int, list[str]]:
    """(largest growth in bytes, its input's size, failures) over inputs run one by one
    under tracemalloc, each against MEMORY_FACTOR x its size + MEMORY_SLACK."""
    worst = (0, 0)
    failures: list[str] = []
    tracemalloc.start()
    try:
        for data in inputs:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            try:
                target.run(data)
            except Unexpected:
                pass  # counted by the main pass
            grew = tracemalloc.get_traced_memory()[1] - base
            if grew > worst[0]:
                worst = (grew, len(data))
            if grew > MEMORY_FACTOR * len(data) + MEMORY_SLACK:
                failures.append(f"{target.name}: {grew} bytes for a {len(data)}-byte input "
                                f"{data[:16].hex()}...")
    finally:
        tracemalloc.stop()
    return worst[0], worst[1], failures


def _summary(outcomes: Counter[str]) -> str:
    """Outcome counts, grouping the error reasons under their error type."""
    return ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=240_000, help="total, split evenly")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated decoder names")
    ap.add_argument("--memory-sample", type=int, default=1000,
                    help="inputs per decoder run under tracemalloc (plus the bombs)")
    args = ap.parse_args(argv)
    names = [t.name for t in TARGETS]
    chosen = [t for t in TARGETS if not args.only or t.name in args.only.split(",")]
    if not chosen:
        ap.error(f"--only: choose among {', '.join(names)}")
    seeds = corpus()
    per = max(1, args.inputs // len(chosen))
    print(f"fuzzing {', '.join(t.name for t in chosen)}: {per:,} inputs each, "
          f"seed {args.seed} (40% random, 20% structured, 40% mutated)", flush=True)

    total_bad = 0
    rows: list[tuple[str, Result]] = []
    for target in chosen:
        res = run_target(target, seeds[target.name], per,
                         random.Random(f"{args.seed}/{target.name}"))
        rows.append((target.name, res))
        bad = res.unexpected or []
        total_bad += (res.outcomes or Counter())["UNEXPECTED"]
        for why, data in bad:
            print(f"  UNEXPECTED {why}\n    input {data[:64].hex()}"
                  f"{'...' if len(data) > 64 else ''} ({len(data)} bytes)")

    print("memory pass (tracemalloc) ...", flush=True)
    mem_rows: list[tuple[str, int, int]] = []
    mem_failures: list[str] = []
    for target in chosen:
        rng = random.Random(f"{args.seed}/{target.name}/memory")
        sample = allocation_bombs() + [
            mutate(rng, rng.choice(seeds[target.name]), seeds[target.name])
            if rng.random() < 0.5 else random_input(rng)
            for _ in range(args.memory_sample)]
        grew, size, failures = memory_pass(target, sample)
        mem_rows.append((target.name, grew, size))
        mem_failures += failures

    print("measuring verify rate ...", flush=True)
    vrate = verify_rate(1.0)
    print()
    total = sum(r.inputs for _, r in rows)
    secs = sum(r.seconds for _, r in rows)
    print(f"{'decoder':<8} {'inputs':>9} {'inputs/s':>11}  outcomes")
    for name, res in rows:
        rate = res.inputs / res.seconds if res.seconds else 0.0
        print(f"{name:<8} {res.inputs:>9,} {rate:>11,.0f}  {_summary(res.outcomes or Counter())}")
    print(f"{'all':<8} {total:>9,} {total / secs if secs else 0:>11,.0f}")
    print()
    print("largest allocation growth for one input (tracemalloc peak, bombs included):")
    for name, grew, size in mem_rows:
        print(f"  {name:<8} {grew / 1024:>8,.1f} KiB  (a {size:,}-byte input)")
    print(verify_note(vrate))
    print(f"unexpected exceptions   {total_bad}")
    print(f"memory bound failures   {len(mem_failures)}")
    for line in mem_failures[:10]:
        print("  " + line)
    return 1 if total_bad or mem_failures else 0


if __name__ == "__main__":
    sys.exit(main())
