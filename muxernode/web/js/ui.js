// Small shared pieces of the UI: htm bound to Preact, the form helper that keeps what the
// member typed on every error, amounts of an asset, progress bars, the key gate.
import { h } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";
import { fmtAmount, parseAmount, reasonText, t } from "./i18n.js";
import { call } from "./rpc.js";
import { TxRejected, state, submit, useStore } from "./state.js";
import { KeyError } from "./keys.js";

export const html = htm.bind(h);

const assetCache = new Map([["MUX", { symbol: "MUX", precision: 5 }]]);

export async function assetInfo(symbol) {
  if (!assetCache.has(symbol)) {
    const a = await call("get_asset", symbol);
    assetCache.set(symbol, a || { symbol, precision: 0 });
  }
  return assetCache.get(symbol);
}

export function useAsset(symbol) {
  const [a, setA] = useState(assetCache.get(symbol || "MUX") || null);
  useEffect(() => {
    if (symbol) assetInfo(symbol).then(setA);
  }, [symbol]);
  return a || { symbol: symbol || "MUX", precision: 0 };
}

export function Amount({ units, asset }) {
  return html`<span class="amount">${fmtAmount(units, asset.precision, asset.symbol)}</span>`;
}

export const amountOf = (units, asset) => fmtAmount(units, asset.precision, asset.symbol);

// Karma counts in the units of the society's asset (a pledge of 10 MUX earns 5 karma), so
// it is shown and typed in that asset's whole units, without a symbol, as the CLI does
export const karmaOf = (units, asset) => fmtAmount(units, asset.precision, "");

export function karmaField(text, asset) {
  const r = parseAmount(text, asset.precision);
  if (r.error) throw new FormError(r.error, r.vars);
  need(r.units > 0n, "form.karma_positive");
  return r.units;
}

// a message for any error a form can meet, in the chosen language
export function errorText(e) {
  if (e instanceof TxRejected) {
    if (e.reason === "locked") return t("keys.locked_hint");
    return t("tx.rejected", { reason: reasonText(e.reason, e.message) });
  }
  if (e instanceof KeyError) return t(`keyerr.${e.code}`);
  if (e && e.formKey) return t(e.formKey, e.vars);
  return t("error.network", { message: e && e.message ? e.message : String(e) });
}

export class FormError extends Error {
  constructor(formKey, vars) { super(formKey); this.formKey = formKey; this.vars = vars; }
}

export function need(cond, key, vars) {
  if (!cond) throw new FormError(key, vars);
}

export function amountField(text, asset, { min = 1n, max = null, maxKey = "form.over_balance" } = {}) {
  const r = parseAmount(text, asset.precision);
  if (r.error) throw new FormError(r.error, r.vars);
  need(r.units >= min, min > 1n ? "form.below_min" : "form.positive",
    { min: fmtAmount(min, asset.precision, asset.symbol) });
  if (max !== null) {
    need(r.units <= BigInt(max), maxKey, { max: fmtAmount(max, asset.precision, asset.symbol) });
  }
  return r.units;
}

export function bytesMax(text, n, key = "form.too_long") {
  need(new TextEncoder().encode(text || "").length <= n, key, { n });
  return text || "";
}

// The values of a form, its error and busy state. run(fn) calls fn(values); on success
// the form resets (or keeps its values with {keep: true}); on an error the message shows
// and every value stays as typed.
export function useForm(initial) {
  const [values, setValues] = useState(initial);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState(null);
  const set = (name) => (ev) => {
    const el = ev.currentTarget;
    setValues((v) => ({ ...v, [name]: el.type === "checkbox" ? el.checked : el.value }));
  };
  const run = (fn, { keep = false, doneKey = "tx.sent" } = {}) => async (ev) => {
    if (ev) ev.preventDefault();
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      await fn(values);
      if (!keep) setValues(initial);
      setDone(doneKey);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return { values, set, setValues, error, busy, done, run, setError };
}

export function FormStatus({ form }) {
  return html`${form.error && html`<p class="error" role="alert">${form.error}</p>`}
    ${form.done && !form.error && html`<p class="notice" role="status">${t(form.done)}</p>`}`;
}

export function Progress({ value, max, label, cls = "" }) {
  const v = Number(value), m = Math.max(Number(max), 1);
  const pct = Math.max(0, Math.min(100, (v / m) * 100));
  return html`<div class=${"progress " + cls} role="progressbar" aria-label=${label}
    aria-valuemin="0" aria-valuemax="100" aria-valuenow=${Math.round(pct)}><span style=${{ width: pct + "%" }}></span></div>`;
}

// a tx button: submits op, shows its error next to it
export function TxButton({ op, label, cls = "", confirm: confirmKey, onDone }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const click = async () => {
    if (confirmKey && !window.confirm(t(confirmKey))) return;
    setBusy(true);
    setError(null);
    try {
      const id = await submit(typeof op === "function" ? op() : op);
      if (onDone) onDone(id);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return html`<span class="txbutton"><button type="button" class=${cls} disabled=${busy} onClick=${click}>${label}</button>
    ${error && html` <span class="field-error" role="alert">${error}</span>`}</span>`;
}

export function KeyGate({ children }) {
  const s = useStore();
  if (s.key) return children;
  return html`<p class="notice">${t("keys.locked_hint")} <a href="#/keys">${t("nav.keys")}</a></p>`;
}

export function short(addr) {
  return addr ? addr.slice(0, 8) + "…" + addr.slice(-4) : "";
}

export function Addr({ a }) {
  const me = state.key && state.key.address === a;
  return html`<span class="mono" title=${a}>${short(a)}${me ? html` <span class="badge">${t("you")}</span>` : ""}</span>`;
}

export function useLoad(fn, deps) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let alive = true;
    fn().then((d) => { if (alive) { setData(d); setError(null); } })
      .catch((e) => { if (alive) setError(errorText(e)); });
    return () => { alive = false; };
  }, [...deps, tick]);
  return { data, error, reload: () => setTick((n) => n + 1) };
}
