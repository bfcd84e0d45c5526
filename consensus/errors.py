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
    "open_claim_exists": "the sender already has an open claim (or charity request) here",
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
    # version 2 (section 11)
    "asset_exists": "an asset with this symbol already exists",
    "bad_symbol": "an asset symbol is 3-16 of A-Z, 0-9 and '.', starts with a letter, not MUX",
    "unknown_asset": "no asset has this symbol (MUX moves by transfer, op 1)",
    "not_issuer": "only the asset's issuer can issue it",
    "over_supply": "the issue would take the asset over its max_supply",
    "no_standing_pledge": "the member has no standing pledge in this society to cancel",
    "proxy_chain": "proxies do not chain: the proxy has a proxy, or the sender is a proxy",
    "too_many_delegators": "the proxy already has the most delegators allowed (1000)",
    "not_in_charity_slots": "the charity request is not among the society's charity slots",
    "not_claimant": "only the claimant can withdraw or amend a claim",
    "has_votes": "a claim with votes cannot be amended",
}


class Rejected(Exception):
    """A transaction (or block content) broke a rule; ``reason`` is a code of section 9."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason code {reason!r}")
        self.reason = reason
        self.message = message or REASONS[reason]
        super().__init__(f"{reason}: {self.message}")
