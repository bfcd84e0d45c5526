"""Length-prefixed frames: a 4-byte big-endian body length, then the msgpack body.

``FrameDecoder`` is sans-IO (feed it bytes, get whole frame bodies back), in the manner of
h11: the same object works under TCP, memory streams and plain unit tests. Its rules:

- a body is 1..MAX_FRAME bytes; a prefix of 0 or above MAX_FRAME raises FrameError as soon
  as the 4 prefix bytes are in, before any of the body is buffered, so a peer cannot make us
  hold more than MAX_FRAME + one read of memory by announcing a huge frame;
- after a FrameError the decoder is poisoned: the stream is out of sync and the only safe
  thing left is to drop the connection.
"""

from __future__ import annotations

from p2p.messages import Message, encode_message

__all__ = ["HEADER_LEN", "MAX_FRAME", "FrameDecoder", "FrameError", "encode_frame", "frame"]

MAX_FRAME = 4 * 1024 * 1024  # protocol section 8: frames of at most 4 MiB
HEADER_LEN = 4


class FrameError(ValueError):
    """A length prefix that breaks the framing rules (empty or oversized frame)."""


def frame(body: bytes) -> bytes:
    """Prefix an encoded body with its length."""
    if not 0 < len(body) <= MAX_FRAME:
        raise FrameError(f"frame body of {len(body)} bytes, limit 1..{MAX_FRAME}")
    return len(body).to_bytes(HEADER_LEN, "big") + body


def encode_frame(msg: Message) -> bytes:
    """One message as a complete frame, ready for ``send_all``."""
    return frame(encode_message(msg))


class FrameDecoder:
    """Sans-IO frame splitter. ``feed`` returns every completed body at once; ``add`` and
    ``next_frame`` pull them one by one, which lets a caller change ``max_frame`` between
    frames (the network allows only small frames until the handshake is done)."""

    __slots__ = ("_buf", "_failed", "_need", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._need: int | None = None  # body length of the frame being read, once known
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet make a whole frame."""
        return len(self._buf)

    def add(self, data: bytes | bytearray) -> None:
        """Append bytes read from the stream (call ``next_frame`` right after)."""
        if self._failed:
            raise FrameError("decoder failed earlier; the stream is out of sync")
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next complete frame body, or None until more bytes arrive."""
        if self._failed:
            raise FrameError("decoder failed earlier; the stream is out of sync")
        buf = self._buf
        if self._need is None:
            if len(buf) < HEADER_LEN:
                return None
            n = int.from_bytes(buf[:HEADER_LEN], "big")
            if n == 0 or n > self.max_frame:
                # refuse on the prefix alone: never wait for (or hold) an oversized body
                self._failed = True
                buf.clear()
                raise FrameError(f"frame length {n}, limit 1..{self.max_frame}")
            del buf[:HEADER_LEN]  # CPython trims a bytearray's front in O(1)
            self._need = n
        if len(buf) < self._need:
            return None
        body = bytes(buf[: self._need])
        del buf[: self._need]
        self._need = None
        return body

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        """Add bytes from the stream; return every frame body they complete, in order."""
        self.add(data)
        out: list[bytes] = []
        while (body := self.next_frame()) is not None:
            out.append(body)
        return out
