// The societies directory (list_societies, searchable) and the form that creates one with
// rule presets, each explained.
import { useEffect, useState } from "preact/hooks";
import { fmtAmount, fmtDate, fmtDuration, fmtNumber, fmtPercent, t } from "../i18n.js";
import { call } from "../rpc.js";
import { state, submit, useStore, waitIncluded } from "../state.js";
import { FormStatus, KeyGate, amountField, assetInfo, bytesMax, html, need, useForm } from "../ui.js";

export function SocietiesPage() {
  const s = useStore();
  const [items, setItems] = useState(null);
  const [next, setNext] = useState(null);
  const [q, setQ] = useState("");
  const [error, setError] = useState(null);
  const load = async () => {
    try {
      const r = await call("list_societies", { limit: 100 });
      setItems(r.items);
      setNext(r.next);
    } catch (e) { setError(String(e.message)); }
  };
  // new societies appear as blocks arrive
  useEffect(() => { load(); }, [s.chain && s.chain.head_height, s.version]);
  const more = async () => {
    const r = await call("list_societies", { before: next, limit: 100 });
    setItems([...items, ...r.items]);
    setNext(r.next);
  };
  const needle = q.trim().toLowerCase();
  const shown = (items || []).filter((x) => !needle || x.society.includes(needle) || x.name.toLowerCase().includes(needle));
  return html`<section>
    <div class="spread"><h1>${t("nav.societies")}</h1><a href="#/new-society">${t("society.create")}</a></div>
    <p class="muted">${t("societies.intro")}</p>
    <label>${t("societies.search")}<input type="search" value=${q} onInput=${(e) => setQ(e.currentTarget.value)} /></label>
    ${error && html`<p class="error">${error}</p>`}
    ${items === null ? html`<p>${t("loading")}</p>` : shown.length === 0 ? html`<p class="notice">${t("societies.none")}</p>` : ""}
    <ul class="plain" aria-label=${t("nav.societies")}>
      ${shown.map((x) => html`<li key=${x.society}>
        <a href=${"#/society/" + x.society}><strong>${x.name}</strong></a> <span class="mono small">${x.society}</span>
        <div class="small muted">${t("societies.row", { members: fmtNumber(x.members), claims: fmtNumber(x.open_claims), asset: x.asset, date: fmtDate(x.created_at) })}</div>
      </li>`)}
    </ul>
    ${next && html`<button type="button" class="secondary" onClick=${more}>${t("more")}</button>`}
  </section>`;
}

const DAY = 86400;
// rules of 4.1 and 11.2; amounts in units of MUX (precision 5), rescaled for another asset
export const PRESETS = {
  standard: { decay_period_s: DAY, decay_ppm: 3844, approval_bp: 300, observation_s: 90 * DAY,
    waiting_s: 3 * DAY, claim_ttl_s: 30 * DAY, benefit_ratio: 10, claim_bond: "100", min_pledge: "1",
    charity_bp: 0, charity_slots: 10 },
  circle: { decay_period_s: DAY, decay_ppm: 3844, approval_bp: 1000, observation_s: 0,
    waiting_s: 0, claim_ttl_s: 7 * DAY, benefit_ratio: 10, claim_bond: "1", min_pledge: "1",
    charity_bp: 1000, charity_slots: 10 },
  careful: { decay_period_s: DAY, decay_ppm: 3844, approval_bp: 2000, observation_s: 180 * DAY,
    waiting_s: 7 * DAY, claim_ttl_s: 30 * DAY, benefit_ratio: 5, claim_bond: "500", min_pledge: "10",
    charity_bp: 0, charity_slots: 10 },
  charity: { decay_period_s: DAY, decay_ppm: 3844, approval_bp: 300, observation_s: 90 * DAY,
    waiting_s: 3 * DAY, claim_ttl_s: 30 * DAY, benefit_ratio: 10, claim_bond: "100", min_pledge: "1",
    charity_bp: 2000, charity_slots: 10 },
};
const INT_RULES = ["decay_period_s", "decay_ppm", "approval_bp", "observation_s", "waiting_s",
  "claim_ttl_s", "benefit_ratio", "charity_bp", "charity_slots"];

function presetValues(name) {
  const p = PRESETS[name];
  const out = { preset: name };
  for (const [k, v] of Object.entries(p)) out[k] = String(v);
  return out;
}

// The rules in plain words (the society page and the preset explanations share it)
export function RulesText({ rules, asset }) {
  const a = (u) => fmtAmount(u, asset.precision, asset.symbol);
  const halfLife = rules.decay_ppm ? Math.log(0.5) / Math.log(1 - rules.decay_ppm / 1e6) : Infinity;
  return html`<ul class="rules">
    <li>${t("rules.pledge", { min: a(rules.min_pledge) })}</li>
    <li>${rules.charity_bp ? t("rules.charity", { pct: fmtPercent(rules.charity_bp / 10000), slots: rules.charity_slots }) : t("rules.no_charity")}</li>
    <li>${rules.decay_ppm ? t("rules.decay", { half: fmtDuration(halfLife * rules.decay_period_s) }) : t("rules.no_decay")}</li>
    <li>${rules.observation_s ? t("rules.observation", { d: fmtDuration(rules.observation_s) }) : t("rules.no_observation")}</li>
    <li>${t("rules.claim", { ratio: rules.benefit_ratio, bond: a(rules.claim_bond) })}</li>
    <li>${t("rules.approval", { pct: fmtPercent(rules.approval_bp / 10000) })}</li>
    <li>${rules.waiting_s ? t("rules.waiting", { w: fmtDuration(rules.waiting_s), ttl: fmtDuration(rules.claim_ttl_s) })
      : t("rules.no_waiting", { ttl: fmtDuration(rules.claim_ttl_s) })}</li>
    <li>${t("rules.asset", { asset: asset.symbol })}</li>
  </ul>`;
}

const SOCIETY_ID = /^[a-z0-9-]{3,32}$/;

export function NewSocietyPage() {
  const [assets, setAssets] = useState([]);
  useEffect(() => { call("list_assets").then(setAssets); }, []);
  const f = useForm({ society: "", name: "", purpose: "", asset: "MUX", ...presetValues("circle") });
  const v = f.values;
  const choose = (name) => f.setValues((old) => ({ ...old, ...presetValues(name) }));
  const ruleOf = async (vals) => {
    const asset = await assetInfo(vals.asset);
    const out = { asset: vals.asset };
    for (const k of INT_RULES) {
      need(/^\d+$/.test(String(vals[k]).trim()), "form.bad_integer", { field: t(`rule.${k}`) });
      out[k] = Number(vals[k]);
    }
    out.claim_bond = amountField(vals.claim_bond, asset, { min: 0n });
    out.min_pledge = amountField(vals.min_pledge, asset);
    need(out.decay_period_s >= 1, "form.rule_range", { field: t("rule.decay_period_s") });
    need(out.decay_ppm < 1000000, "form.rule_range", { field: t("rule.decay_ppm") });
    need(out.approval_bp >= 1 && out.approval_bp <= 10000, "form.rule_range", { field: t("rule.approval_bp") });
    need(out.waiting_s < out.claim_ttl_s && out.claim_ttl_s <= 31536000, "form.rule_ttl");
    need(out.benefit_ratio >= 1 && out.benefit_ratio <= 1000, "form.rule_range", { field: t("rule.benefit_ratio") });
    need(out.charity_bp <= 5000, "form.rule_range", { field: t("rule.charity_bp") });
    need(out.charity_slots >= 1 && out.charity_slots <= 100, "form.rule_range", { field: t("rule.charity_slots") });
    return out;
  };
  const [preview, setPreview] = useState(null);
  useEffect(() => {
    ruleOf(v).then((r) => assetInfo(v.asset).then((a) => setPreview({ r, a }))).catch(() => setPreview(null));
  }, [JSON.stringify(v)]);
  const send = f.run(async (vals) => {
    need(SOCIETY_ID.test(vals.society), "form.bad_society_id");
    need(vals.name.trim(), "form.required", { field: t("society.name") });
    bytesMax(vals.name, 64);
    bytesMax(vals.purpose, 1024);
    const rules = await ruleOf(vals);
    const id = await submit({ type: "create_society", society: vals.society, name: vals.name.trim(), purpose: vals.purpose, rules });
    await waitIncluded(id); // its page needs the society on the chain
    location.hash = "#/society/" + vals.society;
  }, { keep: true });
  const num = (k) => html`<label>${t(`rule.${k}`)}<span class="hint">${t(`rule.${k}.hint`)}</span>
    <input inputmode="numeric" value=${v[k]} onInput=${f.set(k)} /></label>`;
  return html`<section>
    <h1>${t("society.create")}</h1>
    <${KeyGate}>
    <form class="stack" onSubmit=${send}>
      <label>${t("society.id")}<span class="hint">${t("society.id_hint")}</span>
        <input value=${v.society} onInput=${f.set("society")} autocomplete="off" /></label>
      <label>${t("society.name")}<input value=${v.name} onInput=${f.set("name")} /></label>
      <label>${t("society.purpose")}<textarea value=${v.purpose} onInput=${f.set("purpose")}></textarea></label>
      <fieldset class="card"><legend>${t("society.presets")}</legend>
        ${Object.keys(PRESETS).map((p) => html`<label class="inline"><input type="radio" name="preset" value=${p}
          checked=${v.preset === p} onChange=${() => choose(p)} /> <span><strong>${t(`preset.${p}`)}</strong> — ${t(`preset.${p}.why`)}</span></label>`)}
      </fieldset>
      ${preview && html`<div class="card"><h2>${t("society.rules")}</h2><${RulesText} rules=${preview.r} asset=${preview.a} /></div>`}
      <details class="card"><summary>${t("society.advanced")}</summary>
        <div class="grid">
          <label>${t("rule.asset")}<select value=${v.asset} onChange=${f.set("asset")}>
            <option value="MUX">MUX</option>${assets.map((a) => html`<option value=${a.symbol}>${a.symbol}</option>`)}</select></label>
          ${INT_RULES.map(num)}
          <label>${t("rule.claim_bond")}<input value=${v.claim_bond} onInput=${f.set("claim_bond")} /></label>
          <label>${t("rule.min_pledge")}<input value=${v.min_pledge} onInput=${f.set("min_pledge")} /></label>
        </div>
      </details>
      <button type="submit" disabled=${f.busy}>${t("society.create")}</button>
      <${FormStatus} form=${f} />
    </form>
    <//>
  </section>`;
}

export { state };
