"""MUXER peer-to-peer networking on trio (protocol section 8; reference: docs/p2p.md).

p2p moves bytes between nodes and knows nothing of block validity: it hands decoded items to
the node through the ``P2PHandler`` protocol and takes the node's verdicts back.
"""

from p2p.frames import MAX_FRAME, FrameDecoder, FrameError, encode_frame
from p2p.messages import Kind, MessageError, decode_message, encode_message
from p2p.network import (
    PENALTIES,
    PROTOCOL_VERSION,
    Network,
    NodeKey,
    P2PConfig,
    P2PHandler,
    PeerUnavailable,
)
from p2p.transport import MemoryNetwork, MemoryTransport, TcpTransport, Transport

__all__ = [
    "MAX_FRAME",
    "PENALTIES",
    "PROTOCOL_VERSION",
    "FrameDecoder",
    "FrameError",
    "Kind",
    "MemoryNetwork",
    "MemoryTransport",
    "MessageError",
    "Network",
    "NodeKey",
    "P2PConfig",
    "P2PHandler",
    "PeerUnavailable",
    "TcpTransport",
    "Transport",
    "decode_message",
    "encode_frame",
    "encode_message",
]
