"""The handshake's proof of a node key.

Each side sends a HELLO with a fresh 32-byte nonce and then proves that it holds the key it
claims by signing the OTHER side's nonce (which it could not know in advance):

    payload(signer, verifier) = b"MUXER/p2p/v1" + chain_id
                                + verifier_pubkey + verifier_nonce
                                + signer_pubkey + signer_nonce

- The verifier's nonce makes the signature fresh: it cannot be recorded and replayed later.
- The chain id keeps a signature from one network useless on another.
- Both public keys bind the proof to this pair of nodes, so a signature obtained while
  talking to node X cannot be reflected to node Y. (A man in the middle that relays the whole
  handshake between two honest nodes is not stopped: frames are neither encrypted nor
  authenticated after the handshake. docs/p2p.md lists this as a known limit.)
"""

from __future__ import annotations

from consensus.crypto import PrivateKey, verify

__all__ = ["TAG_P2P", "ack_payload", "sign_ack", "verify_ack"]

TAG_P2P = b"MUXER/p2p/v1"


def ack_payload(chain_id: bytes, signer_pubkey: bytes, signer_nonce: bytes,
                verifier_pubkey: bytes, verifier_nonce: bytes) -> bytes:
    return (TAG_P2P + chain_id + verifier_pubkey + verifier_nonce
            + signer_pubkey + signer_nonce)


def sign_ack(key: PrivateKey, chain_id: bytes, own_nonce: bytes,
             peer_pubkey: bytes, peer_nonce: bytes) -> bytes:
    return key.sign(ack_payload(chain_id, key.public_key, own_nonce, peer_pubkey, peer_nonce))


def verify_ack(signature: bytes, chain_id: bytes, peer_pubkey: bytes, peer_nonce: bytes,
               own_pubkey: bytes, own_nonce: bytes) -> bool:
    return verify(peer_pubkey, signature,
                  ack_payload(chain_id, peer_pubkey, peer_nonce, own_pubkey, own_nonce))
