// The page's shared state (language, the unlocked key, the chain head, submitted txs) and
// the one path by which a tx leaves the page: build, sign, subscribe to its status, submit.
import { useEffect, useState } from "preact/hooks";
import { buildTx, tapos, unhex } from "./codec.js";
import { getMeta, setMeta } from "./keys.js";
import { setLang } from "./i18n.js";
import { RpcError, call, live } from "./rpc.js";

const listeners = new Set();
export const state = {
  lang: "en",
  key: null, // {name, address, seed} while unlocked
  chain: null, // chain_info
  txs: [], // [{id, type, status, height?, error?}], newest first
  version: 0, // bumped when a tx of ours is included: pages reload what they show
  connected: false,
};

export function update(patch) {
  Object.assign(state, patch);
  for (const fn of listeners) fn();
}

export function useStore() {
  const [, force] = useState(0);
  useEffect(() => {
    const fn = () => force((n) => n + 1);
    listeners.add(fn);
    return () => listeners.delete(fn);
  }, []);
  return state;
}

export async function initState() {
  const lang = (await getMeta("lang").catch(() => null)) ||
    (navigator.language || "en").slice(0, 2);
  setLang(lang);
  update({ lang: lang === "ru" ? "ru" : "en", chain: await call("chain_info") });
  live.onStatus((connected) => update({ connected }));
  live.subscribe("heads", undefined, async () => {
    update({ chain: await call("chain_info") });
  });
}

export async function chooseLang(lang) {
  setLang(lang);
  update({ lang });
  await setMeta("lang", lang);
}

export class TxRejected extends Error {
  constructor(reason, message) {
    super(message);
    this.reason = reason;
  }
}

const SETTLED_SHOWN_MS = 20000;
const EXPIRES_IN = 600; // seconds after the head's time, as the CLI's --expires-in default

function setTx(id, patch) {
  update({ txs: state.txs.map((t) => (t.id === id ? { ...t, ...patch } : t)) });
}

// Sign and submit op with the unlocked key; resolves to the tx id once the node accepted it
// (pending) and shows its status as it goes included, final. A rejection throws TxRejected
// with the node's reason code.
export async function submit(op) {
  if (!state.key) throw new TxRejected("locked", "no key unlocked");
  const info = await call("chain_info");
  const [num, prefix] = tapos(info.head_height, info.head_id);
  const tx = await buildTx({ seed: state.key.seed, chainId: unhex(info.chain_id), op,
    refBlockNum: num, refBlockPrefix: prefix, expiration: info.head_time + EXPIRES_IN,
    fee: info.base_fee });
  const id = tx.txIdHex;
  const off = live.subscribe("tx", id, (r) => {
    setTx(id, { status: r.status, height: r.height });
    if (r.status === "included" || r.status === "final") update({ version: state.version + 1 });
    if (r.status === "final" || r.status === "dropped") {
      off();
      // a settled tx leaves the list after a while, so the list does not cover the page
      setTimeout(() => update({ txs: state.txs.filter((x) => x.id !== id) }), SETTLED_SHOWN_MS);
    }
  });
  await off.ready; // subscribed before submitting: no status change can be missed
  update({ txs: [{ id, type: op.type, status: "pending" }, ...state.txs].slice(0, 6) });
  try {
    await call("submit_tx", tx.rawHex);
  } catch (e) {
    off();
    update({ txs: state.txs.filter((x) => x.id !== id) });
    if (e instanceof RpcError && e.reason) throw new TxRejected(e.reason, e.message);
    throw e;
  }
  // the status may have moved on while we were submitting: ask once
  call("get_tx", id).then((r) => {
    if (r.status !== "unknown" && r.status !== "pending") setTx(id, { status: r.status, height: r.height });
  });
  return id;
}

// resolves when the tx is included (or final); rejects after timeoutMs
export function waitIncluded(id, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const check = () => {
      const tx = state.txs.find((x) => x.id === id);
      if (tx && (tx.status === "included" || tx.status === "final")) return resolve(tx);
      if (tx && tx.status === "dropped") return reject(new TxRejected("dropped", "dropped"));
      if (Date.now() - t0 > timeoutMs) return reject(new Error("timeout"));
      setTimeout(check, 100);
    };
    check();
  });
}
