"""Shared pieces of the p2p tests (no tests here).

``StoreHandler`` is a real implementation of the P2PHandler protocol, not a mock of p2p: a
dict-backed node whose items are identified by sha256(raw), where a raw item starting with
b"bad" is invalid, and which relays every new valid item the way a node would. ``RawPeer``
speaks the wire protocol by hand, to test the Network from the outside.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

from consensus.crypto import PrivateKey, sha256
from p2p.frames import FrameDecoder, encode_frame
from p2p.handshake import sign_ack, verify_ack
from p2p.messages import Hello, HelloAck, Kind, Message, decode_message
from p2p.network import Network, P2PConfig
from p2p.transport import Transport

CHAIN = sha256(b"test chain")
OTHER_CHAIN = sha256(b"another chain")


def key(i: int) -> PrivateKey:
    return PrivateKey(bytes([i]) * 32)


class StoreHandler:
    def __init__(self, blocks: int = 0) -> None:
        self.items: dict[Kind, dict[bytes, bytes]] = {k: {} for k in Kind}
        self.chain = [b"genesis"] + [b"block-%d" % h for h in range(1, blocks + 1)]
        self.received: Counter[bytes] = Counter()  # raw -> times the network delivered it
        self.calls: list[tuple[Kind, bytes, int]] = []  # (kind, peer, items) per callback
        self.heads: dict[bytes, int] = {}
        self.net: Network | None = None
        self.relay = True
        self.on_head_hook: Callable[[bytes], Awaitable[None]] | None = None

    def add(self, kind: Kind, raw: bytes) -> bytes:
        iid = sha256(raw)
        self.items[kind][iid] = raw
        return iid

    # --- P2PHandler ---------------------------------------------------------------------
    def head(self) -> tuple[int, bytes, int]:
        return len(self.chain) - 1, sha256(self.chain[-1]), 0

    def has(self, kind: Kind, item_id: bytes) -> bool:
        return item_id in self.items[kind]

    def get_items(self, kind: Kind, ids: list[bytes]) -> list[bytes]:
        store = self.items[kind]
        return [store[i] for i in ids if i in store]

    def get_blocks(self, from_height: int, count: int) -> list[bytes]:
        return self.chain[from_height : from_height + count]

    async def _on(self, kind: Kind, peer_id: bytes, raws: list[bytes]) -> list[bool]:
        self.calls.append((kind, peer_id, len(raws)))
        verdicts: list[bool] = []
        new: list[bytes] = []
        for raw in raws:
            self.received[raw] += 1
            ok = not raw.startswith(b"bad")
            verdicts.append(ok)
            if ok and sha256(raw) not in self.items[kind]:
                new.append(self.add(kind, raw))
        if new and self.relay and self.net is not None:
            self.net.announce(kind, new)
        await trio.lowlevel.checkpoint()
        return verdicts

    async def on_txs(self, peer_id: bytes, raws: list[bytes]) -> list[bool]:
        return await self._on(Kind.TX, peer_id, raws)

    async def on_blocks(self, peer_id: bytes, raws: list[bytes]) -> list[bool]:
        return await self._on(Kind.BLOCK, peer_id, raws)

    async def on_votes(self, peer_id: bytes, raws: list[bytes]) -> list[bool]:
        return await self._on(Kind.VOTE, peer_id, raws)

    async def on_head(self, peer_id: bytes, head_height: int, head_id: bytes,
                      final_height: int) -> None:
        self.heads[peer_id] = head_height
        if self.on_head_hook is not None:
            await self.on_head_hook(peer_id)
        await trio.lowlevel.checkpoint()


def fast_config(**kw: object) -> P2PConfig:
    """Short timers so real-socket tests finish in well under a second each."""
    base: dict[str, object] = dict(listen_host="127.0.0.1", listen_port=0, tick=0.05,
                                   backoff_base=0.05, backoff_max=0.4, inv_interval=0.01,
                                   handshake_timeout=5.0, peers_interval=0.2)
    base.update(kw)
    return P2PConfig(**base)  # type: ignore[arg-type]


def make_node(i: int, *, blocks: int = 0, transport: Transport | None = None,
              seeds: list[tuple[str, int]] | None = None, chain: bytes = CHAIN,
              version: int = 1, **cfg: object) -> tuple[Network, StoreHandler]:
    handler = StoreHandler(blocks)
    net = Network(key(i), chain, handler, version=version,
                  config=fast_config(seeds=seeds or [], **cfg), transport=transport,
                  rng=random.Random(i))
    handler.net = net
    return net, handler


@asynccontextmanager
async def running(*nets: Network) -> AsyncIterator[list[int]]:
    """Run networks in the background; stop them on exit. Yields their listen ports."""
    async with trio.open_nursery() as nursery:
        ports = [await nursery.start(net.run) for net in nets]
        try:
            yield ports
        finally:
            for net in nets:
                net.stop()


async def until(pred: Callable[[], bool], step: float = 0.01) -> None:
    while not pred():
        await trio.sleep(step)


class RawPeer:
    """One end of a connection driven by hand, frame by frame."""

    def __init__(self, stream: trio.abc.Stream, k: PrivateKey, chain: bytes = CHAIN,
                 version: int = 1) -> None:
        self.stream = stream
        self.key = k
        self.chain = chain
        self.version = version
        self.decoder = FrameDecoder()
        self.frames: list[bytes] = []
        self.nonce = random.Random(99).randbytes(32)

    async def send(self, msg: Message) -> None:
        await self.stream.send_all(encode_frame(msg))

    async def recv(self) -> Message | None:
        """The next message, or None at EOF."""
        while not self.frames:
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.frames.extend(self.decoder.feed(data))
        return decode_message(self.frames.pop(0))

    async def drain(self) -> list[Message]:
        """Every message until the other side closes."""
        out: list[Message] = []
        while (msg := await self.recv()) is not None:
            out.append(msg)
        return out

    def hello(self, **kw: object) -> Hello:
        fields: dict[str, object] = dict(version=self.version, chain_id=self.chain,
                                         node_pubkey=self.key.public_key, nonce=self.nonce,
                                         listen_port=0, head_height=0, head_id=sha256(b"g"))
        fields.update(kw)
        return Hello(**fields)  # type: ignore[arg-type]

    async def handshake(self) -> Hello:
        """The dialer's side of a correct handshake; returns the listener's HELLO."""
        await self.send(self.hello())
        theirs = await self.recv()
        assert isinstance(theirs, Hello)
        ack = await self.recv()
        assert isinstance(ack, HelloAck)
        assert verify_ack(ack.signature, self.chain, theirs.node_pubkey, theirs.nonce,
                          self.key.public_key, self.nonce)
        await self.send(HelloAck(sign_ack(self.key, self.chain, self.nonce,
                                          theirs.node_pubkey, theirs.nonce)))
        return theirs
