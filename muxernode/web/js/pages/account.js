// The account: balances per asset, escrow and charity escrow per society, the history
// (get_history, with filters), and transfers of MUX and of assets. Live over `account`.
import { useEffect, useState } from "preact/hooks";
import { fmtDate, t } from "../i18n.js";
import { RpcError, batch, call, live } from "../rpc.js";
import { state, submit, useStore } from "../state.js";
import { Addr, Amount, FormStatus, KeyGate, amountField, assetInfo, bytesMax, html, karmaOf, need, useAsset, useForm } from "../ui.js";

const TYPES = ["transfer", "create_society", "join", "pledge", "claim", "vote", "give", "create_asset",
  "issue_asset", "transfer_asset", "standing_pledge", "set_proxy", "charity_request", "withdraw_claim",
  "amend_claim", "comment"];

function Balance({ symbol, units }) {
  const asset = useAsset(symbol);
  return html`<li><strong>${symbol}</strong> <${Amount} units=${units} asset=${asset} /></li>`;
}

function Membership({ m }) {
  const asset = useAsset(m.asset);
  return html`<tr><td><a href=${"#/society/" + m.society}>${m.society}</a></td>
    <td><${Amount} units=${m.escrow} asset=${asset} /></td><td><${Amount} units=${m.charity_escrow} asset=${asset} /></td><td>${karmaOf(m.karma, asset)}</td></tr>`;
}

function TransferForm({ account }) {
  const f = useForm({ asset: "MUX", to: "", amount: "", memo: "" });
  const symbols = Object.keys(account.assets || { MUX: account.balance });
  return html`<form class="stack card" onSubmit=${f.run(async (v) => {
    const asset = await assetInfo(v.asset);
    need(/^mx[0-9a-f]{40}$/.test(v.to.trim()), "form.bad_address");
    const bal = (account.assets || {})[v.asset] || 0;
    const max = v.asset === "MUX" ? BigInt(bal) - BigInt(state.chain.base_fee) : BigInt(bal);
    const amount = amountField(v.amount, asset, { max: max < 0n ? 0n : max });
    bytesMax(v.memo, 256);
    if (v.asset === "MUX") await submit({ type: "transfer", to: v.to.trim(), amount, memo: v.memo });
    else await submit({ type: "transfer_asset", symbol: v.asset, to: v.to.trim(), amount, memo: v.memo });
  })}>
    <h2>${t("transfer")}</h2>
    <label>${t("transfer.asset")}<select value=${f.values.asset} onChange=${f.set("asset")}>
      ${symbols.map((x) => html`<option value=${x}>${x}</option>`)}</select></label>
    <label>${t("transfer.to")}<input class="mono" value=${f.values.to} onInput=${f.set("to")} autocomplete="off" /></label>
    <label>${t("amount")}<input inputmode="decimal" value=${f.values.amount} onInput=${f.set("amount")} /></label>
    <label>${t("transfer.memo")}<input value=${f.values.memo} onInput=${f.set("memo")} /></label>
    <button type="submit" disabled=${f.busy}>${t("transfer")}</button>
    <${FormStatus} form=${f} />
  </form>`;
}

function HistAmount({ units, symbol }) {
  const asset = useAsset(symbol);
  return html` · <${Amount} units=${units} asset=${asset} />`;
}

// the asset an item's amount is in: MUX for transfers, the symbol for asset ops, the
// society's asset for society ops (a give names its claim: its society is looked up)
async function symbolsOf(items, socAssets) {
  const claims = [...new Set(items.filter((x) => x.op.claim_id && x.op.amount !== undefined).map((x) => x.op.claim_id))];
  const got = await batch(claims.map((c) => ["get_claim", c]));
  const claimSoc = new Map(claims.map((c, i) => [c, got[i] instanceof RpcError ? null : got[i].society]));
  return items.map((x) => {
    if (x.op.symbol) return x.op.symbol;
    const soc = x.op.society || claimSoc.get(x.op.claim_id);
    return soc ? socAssets[soc] || "MUX" : "MUX";
  });
}

function History({ address, societies, socAssets, tick }) {
  const [type, setType] = useState("");
  const [society, setSociety] = useState("");
  const [items, setItems] = useState(null);
  const [next, setNext] = useState(null);
  const filter = () => ({ limit: 20, ...(type ? { types: [type] } : {}), ...(society ? { society } : {}) });
  const withSymbols = async (list) => {
    const symbols = await symbolsOf(list, socAssets);
    return list.map((x, i) => ({ ...x, symbol: symbols[i] }));
  };
  useEffect(() => {
    call("get_history", address, filter()).then(async (r) => { setItems(await withSymbols(r.items)); setNext(r.next); })
      .catch(() => setItems([]));
  }, [address, type, society, tick]);
  const more = async () => {
    const r = await call("get_history", address, { ...filter(), before: next });
    setItems([...items, ...(await withSymbols(r.items))]);
    setNext(r.next);
  };
  return html`<section class="card"><h2>${t("history")}</h2>
    <div class="row">
      <label>${t("history.type")}<select value=${type} onChange=${(e) => setType(e.currentTarget.value)}>
        <option value="">${t("history.all")}</option>${TYPES.map((x) => html`<option value=${x}>${t(`op.${x}`)}</option>`)}</select></label>
      <label>${t("history.society")}<select value=${society} onChange=${(e) => setSociety(e.currentTarget.value)}>
        <option value="">${t("history.all")}</option>${societies.map((x) => html`<option value=${x}>${x}</option>`)}</select></label>
    </div>
    ${items === null ? html`<p>${t("loading")}</p>` : items.length === 0 ? html`<p class="muted">${t("history.none")}</p>` : html`<table>
      <thead><tr><th>${t("history.when")}</th><th>${t("history.what")}</th><th>${t("history.role")}</th><th>${t("history.block")}</th></tr></thead>
      <tbody>${items.map((x) => html`<tr><td>${fmtDate(x.time)}</td><td>${t(`op.${x.type}`)}${x.scheduled ? " (" + t("history.scheduled") + ")" : ""}
        ${x.op.society ? html` · ${x.op.society}` : ""}${x.op.amount !== undefined ? html`<${HistAmount} units=${x.op.amount} symbol=${x.symbol} />` : ""}</td>
        <td>${t(`role.${x.role}`)}</td><td>${x.height}</td></tr>`)}</tbody></table>`}
    ${next && html`<button type="button" class="secondary" onClick=${more}>${t("more")}</button>`}
  </section>`;
}

export function AccountPage() {
  const s = useStore();
  const me = s.key && s.key.address;
  const [data, setData] = useState(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!me) return;
    (async () => {
      const account = await call("get_account", me);
      const members = await batch(account.societies.map((id) => ["get_member", id, me]));
      const socs = await batch(account.societies.map((id) => ["get_society", id]));
      const ms = members.map((m, i) => (m instanceof RpcError ? null : { ...m, asset: socs[i].rules ? socs[i].rules.asset : "MUX" })).filter(Boolean);
      setData({ account, ms });
    })();
  }, [me, tick, s.version]);
  useEffect(() => (me ? live.subscribe("account", me, () => setTick((n) => n + 1)) : undefined), [me]);
  return html`<section><h1>${t("nav.account")}</h1>
    <${KeyGate}>${data && html`
      <div class="card"><h2>${t("account.address")}</h2><p class="mono">${me}</p>
        <h3>${t("account.balances")}</h3>
        <ul class="plain" data-testid="balances">${Object.entries(data.account.assets || { MUX: data.account.balance }).map(([k, v]) => html`<${Balance} symbol=${k} units=${v} />`)}</ul></div>
      ${data.ms.length ? html`<div class="card"><h2>${t("account.societies")}</h2><table>
        <thead><tr><th>${t("nav.societies")}</th><th>${t("member.escrow")}</th><th>${t("member.charity_escrow")}</th><th>${t("karma")}</th></tr></thead>
        <tbody>${data.ms.map((m) => html`<${Membership} m=${m} />`)}</tbody></table></div>` : ""}
      <${TransferForm} account=${data.account} />
      <${History} address=${me} societies=${data.account.societies} tick=${tick}
        socAssets=${Object.fromEntries(data.ms.map((m) => [m.society, m.asset]))} />`}
    <//></section>`;
}

export { Addr };
