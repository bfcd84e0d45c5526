"""Canonical MessagePack, protocol section 1.

Consensus objects are arrays of ints, str and bin only. A decoder must reject any bytes
whose re-encoding differs from the input, so that one object has exactly one encoding and
hashes of encodings are well defined. We check this the direct way the protocol states:
``packb(unpackb(b)) == b``. Maps and extension types are refused while decoding; floats,
bools and nil are refused by the typed field checks of each structure (they never satisfy
``type(x) is int``).
"""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = ["CodecError", "array_header", "check_canonical", "decode", "decode_trusted", "encode",
           "unpacker"]


class CodecError(ValueError):
    """Bytes that are not the canonical encoding of a consensus object."""


def encode(obj: Any) -> bytes:
    """The canonical encoding: msgpack ``packb(obj, use_bin_type=True)``."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


_HEADERS = msgpack.Packer()


def array_header(n: int) -> bytes:
    """The canonical header of an n-item array: an array's canonical encoding is this
    followed by its items' canonical encodings, so a decoder that checks the parts of an
    array one by one (``unpacker``) checks the whole."""
    return _HEADERS.pack_array_header(n)  # type: ignore[no-any-return]


def _no_maps(_pairs: Any) -> Any:
    raise CodecError("maps are not allowed in consensus objects")


def _no_ext(_code: int, _data: bytes) -> Any:
    raise CodecError("extension types are not allowed in consensus objects")


_UNPACK_OPTIONS: dict[str, Any] = dict(
    raw=False,
    use_list=True,
    strict_map_key=True,
    object_pairs_hook=_no_maps,
    ext_hook=_no_ext,
    # msgpack decodes ext type -1 (timestamp) itself, without calling ext_hook.
    # As an int it can never re-encode to the ext bytes, so the canonical check
    # refuses it.
    timestamp=2,
)


def check_canonical(obj: Any, data: bytes) -> None:
    """Raise CodecError unless ``data`` is exactly the canonical encoding of ``obj``."""
    try:
        again = encode(obj)
    except Exception as exc:
        raise CodecError(f"cannot re-encode: {exc}") from None
    if again != data:
        raise CodecError("non-canonical encoding")


def decode(data: bytes, max_len: int = 4 * 1024 * 1024) -> Any:
    """Decode canonical bytes; raise CodecError for anything non-canonical or malformed."""
    if len(data) > max_len:
        raise CodecError(f"encoding is {len(data)} bytes, limit {max_len}")
    obj = decode_trusted(data)
    check_canonical(obj, data)
    return obj


def decode_trusted(data: bytes) -> Any:
    """Decode bytes this node encoded itself (its own store's records): the canonical
    check, a second encoding, is left out; malformed bytes still raise CodecError. Never
    for bytes from a peer or a client."""
    try:
        return msgpack.unpackb(data, **_UNPACK_OPTIONS)
    except CodecError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for malformed input
        raise CodecError(f"malformed msgpack: {type(exc).__name__}: {exc}") from None


def unpacker(data: bytes) -> msgpack.Unpacker:
    """A streaming decoder over ``data`` with the options of ``decode``, for a caller that
    needs the byte range of each part (``tell()``). Its errors are msgpack's own (several
    unrelated types): the caller maps them, and must still ``check_canonical`` the whole."""
    up = msgpack.Unpacker(max_buffer_size=max(1, len(data)), **_UNPACK_OPTIONS)
    up.feed(data)
    return up
