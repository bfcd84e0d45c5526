"""Rejection reasons of protocol section 9.

Every domain error carries one of these reason codes; the RPC returns it as
``error.data.reason`` and the CLI wallet turns it into a sentence.
"""

from __future__ import annotations

__all__ = ["REASONS", "Rejected"]

REASONS: dict[str, str] = {
    "bad_encoding": "the transaction is not a canonical MessagePack encoding of the right shape",
    "too_large": "the transaction is larger than max_tx_bytes",
    "bad_signature": "the signature does not verify against the sender's public key",
    "expired": "the transaction has expired (expiration is not after the block time)",
    "expiration_too_far": "the expiration is more than max_tx_lifetime_s after the block time",
    "unknown_ref_block": "the reference block (TaPoS) is not on this chain",
    "duplicate": "this transaction is already on the chain",
    "fee_too_low": "the fee is below the chain's base_fee",
    "insufficient_balance": "the sender's balance does not cover the fee and the amount",
    "unknown_society": "no society has this id",
    "society_exists": "a society with this id already exists",
    "bad_society_id": "a society id is 3-32 characters of a-z, 0-9 and '-'",
    "bad_rules": "the society rules are out of bounds",
    "not_member": "the sender is not a member of this society",
    "already_member": "the sender is already a member of this society",
    "observation_period": "the member is still in the society's observation period",
    "open_claim_exists": "the member already has an open claim in this society",
    "insufficient_karma": "the member does not have that much karma",
    "unknown_claim": "no claim has this id",
    "claim_closed": "the claim is closed",
    "self_vote": "a claimant cannot vote on or give to their own claim",
    "no_karma": "the voter has no karma in this society",
    "waiting_period": "the claim is not yet (or no longer) open for gifts",
    "not_approved": "the claim is not approved",
    "insufficient_escrow": "the giver's escrow does not cover the amount",
    "over_limit": "the gift would take the claim over its limit",
    "unknown_witness": "not a registered witness",
    "bad_op": "the operation is malformed",
    "mempool_full": "the node's mempool is full; retry later or raise the fee",
}


class Rejected(Exception):
    """A transaction (or block content) broke a rule; ``reason`` is a code of section 9."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason code {reason!r}")
        self.reason = reason
        self.message = message or REASONS[reason]
        super().__init__(f"{reason}: {self.message}")
