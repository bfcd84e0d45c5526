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

__all__ = ["CodecError", "decode", "encode"]


class CodecError(ValueError):
    """Bytes that are not the canonical encoding of a consensus object."""


def encode(obj: Any) -> bytes:
    """The canonical encoding: msgpack ``packb(obj, use_bin_type=True)``."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _no_maps(_pairs: Any) -> Any:
    raise CodecError("maps are not allowed in consensus objects")


def _no_ext(_code: int, _data: bytes) -> Any:
    raise CodecError("extension types are not allowed in consensus objects")


def decode(data: bytes, max_len: int = 4 * 1024 * 1024) -> Any:
    """Decode canonical bytes; raise CodecError for anything non-canonical or malformed."""
    if len(data) > max_len:
        raise CodecError(f"encoding is {len(data)} bytes, limit {max_len}")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            object_pairs_hook=_no_maps,
            ext_hook=_no_ext,
            # msgpack decodes ext type -1 (timestamp) itself, without calling ext_hook.
            # As an int it can never re-encode to the ext bytes, so the canonical check
            # below refuses it.
            timestamp=2,
        )
    except CodecError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for malformed input
        raise CodecError(f"malformed msgpack: {type(exc).__name__}: {exc}") from None
    try:
        again = encode(obj)
    except Exception as exc:
        raise CodecError(f"cannot re-encode: {exc}") from None
    if again != data:
        raise CodecError("non-canonical encoding")
    return obj
