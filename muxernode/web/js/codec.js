// Transactions of protocol sections 3 and 11, built, signed and encoded in the page.
// The bytes must equal msgpack-python's packb(obj, use_bin_type=True) (the node re-encodes
// and refuses anything else), so every integer goes through `norm` first: @msgpack/msgpack
// writes a Number below 2**32 in its smallest form, but with useBigInt64 a Number at or
// above 2**32 would become a float; such values are passed as BigInt, which it writes as
// uint64 (0xcf), the smallest form msgpack has for them. Uint8Array encodes as bin, strings
// as str with the smallest header, arrays with the smallest header: as msgpack-python does.
// tests/test_web_codec.py checks the node decodes every op to the same tx id.
import { Encoder, decode } from "@msgpack/msgpack";
import * as ed from "@noble/ed25519";
import { sha256 } from "@noble/hashes/sha2.js";

const encoder = new Encoder({ useBigInt64: true, ignoreUndefined: false });
const TWO32 = 2n ** 32n;
export const MAX_AMOUNT = 2n ** 63n - 1n;
export const TX_TAG = new TextEncoder().encode("MUXER/tx/v1");

export const OPS = {
  transfer: 1, create_society: 2, join: 3, pledge: 4, claim: 5, vote: 6, give: 7,
  register_witness: 8, vote_witness: 9, create_asset: 10, issue_asset: 11,
  transfer_asset: 12, standing_pledge: 13, set_proxy: 14, charity_request: 15,
  withdraw_claim: 16, amend_claim: 17, comment: 18,
};
// field order of each op's array after the opcode (muxernode/ops.py dataclasses)
export const FIELDS = {
  transfer: ["to", "amount", "memo"],
  create_society: ["society", "name", "purpose", "rules"],
  join: ["society", "identity"],
  pledge: ["society", "amount"],
  claim: ["society", "amount", "karma", "subject", "details", "evidence"],
  vote: ["claim_id", "stance"],
  give: ["claim_id", "amount"],
  register_witness: ["signing_key", "url"],
  vote_witness: ["witnesses"],
  create_asset: ["symbol", "precision", "max_supply", "description"],
  issue_asset: ["symbol", "to", "amount", "memo"],
  transfer_asset: ["symbol", "to", "amount", "memo"],
  standing_pledge: ["society", "amount", "interval_s"],
  set_proxy: ["society", "proxy"],
  charity_request: ["society", "amount", "subject", "details", "evidence"],
  withdraw_claim: ["claim_id"],
  amend_claim: ["claim_id", "details", "evidence"],
  comment: ["claim_id", "text"],
};
const ADDRESS = new Set(["to", "proxy"]);
const BIN32 = new Set(["claim_id", "evidence", "signing_key"]);
// integer fields: a Number, a BigInt or a decimal string (the form a text input gives)
const INTS = new Set(["amount", "karma", "stance", "precision", "max_supply", "interval_s"]);
export const RULE_NAMES = ["decay_period_s", "decay_ppm", "approval_bp", "observation_s",
  "waiting_s", "claim_ttl_s", "benefit_ratio", "claim_bond", "min_pledge",
  "asset", "charity_bp", "charity_slots"];

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function unhex(text, size) {
  if (typeof text !== "string" || !/^([0-9a-f]{2})*$/.test(text)) throw new Error("bad hex");
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  if (size !== undefined && out.length !== size) throw new Error(`expected ${size} bytes`);
  return out;
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

// an integer as msgpack-python would see it: Number below 2**32, BigInt above
export function norm(v) {
  const b = BigInt(v);
  if (b < 0n) {
    if (b < -(2n ** 31n)) throw new Error("negative integer out of range");
    return Number(b);
  }
  if (b > 2n ** 64n - 1n) throw new Error("integer out of range");
  return b < TWO32 ? Number(b) : b;
}

export function packb(obj) {
  return encoder.encode(obj);
}

export function unpackb(bytes) {
  return decode(bytes, { useBigInt64: true });
}

export function addressOf(pubkey) {
  return sha256(pubkey).slice(0, 20);
}

export function addressText(addr) {
  return "mx" + hex(addr);
}

export function parseAddress(text) {
  const t = (text || "").trim();
  if (!/^mx[0-9a-f]{40}$/.test(t)) throw new Error("bad_address");
  return unhex(t.slice(2), 20);
}

function field(name, value) {
  if (ADDRESS.has(name)) {
    if (value === null || value === "" || value === undefined) return new Uint8Array(0);
    return value instanceof Uint8Array ? value : parseAddress(value);
  }
  if (BIN32.has(name)) return value instanceof Uint8Array ? value : unhex(value, 32);
  if (name === "witnesses") return value.map((a) => (a instanceof Uint8Array ? a : parseAddress(a)));
  if (name === "rules") return rulesArray(value);
  if (INTS.has(name)) return norm(value);
  if (typeof value !== "string") throw new Error(`${name} must be text`);
  return value;
}

// rules: an array (9 or 12 items) or an object with the names of 4.1 and 11.2
export function rulesArray(rules) {
  if (Array.isArray(rules)) {
    return rules.map((v) => (typeof v === "string" ? v : norm(v)));
  }
  const names = rules.asset === undefined ? RULE_NAMES.slice(0, 9) : RULE_NAMES;
  // the asset is the one text item; every other rule is an integer
  return names.map((n) => (n === "asset" ? rules[n] : norm(rules[n])));
}

// {type: "pledge", society: "x", amount: 5} -> [4, "x", 5]
export function opArray(op) {
  const code = OPS[op.type];
  if (code === undefined) throw new Error(`unknown op ${op.type}`);
  return [code, ...FIELDS[op.type].map((n) => field(n, op[n]))];
}

export function tapos(headHeight, headIdHex) {
  return [headHeight & 0xffff, parseInt(headIdHex.slice(0, 8), 16)];
}

// {seed: Uint8Array(32), chainId: Uint8Array(32), op, refBlockNum, refBlockPrefix,
//  expiration, fee} -> {raw, rawHex, txId, txIdHex}
export async function buildTx({ seed, chainId, op, refBlockNum, refBlockPrefix, expiration, fee }) {
  const pubkey = await ed.getPublicKeyAsync(seed);
  const unsigned = [1, norm(refBlockNum), norm(refBlockPrefix), norm(expiration), pubkey,
    norm(fee), opArray(op)];
  const unsignedBytes = packb(unsigned);
  const signature = await ed.signAsync(concat(TX_TAG, chainId, unsignedBytes), seed);
  const raw = packb([unsigned, signature]);
  const txId = sha256(unsignedBytes);
  return { raw, rawHex: hex(raw), txId, txIdHex: hex(txId), unsignedHex: hex(unsignedBytes) };
}

export async function publicKeyOf(seed) {
  return ed.getPublicKeyAsync(seed);
}

export function randomSeed() {
  return crypto.getRandomValues(new Uint8Array(32));
}

export function sha256Hex(bytes) {
  return hex(sha256(bytes));
}

export function utf8(text) {
  return new TextEncoder().encode(text);
}

export function utf8Len(text) {
  return utf8(text || "").length;
}
