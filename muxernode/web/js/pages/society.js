// A society: its purpose and rules in plain words, its figures, your membership (join,
// pledge, standing pledge, proxy chosen among the members, karma projected forward), its
// claims and charity requests as cards, the forms that file them, and its members (paged,
// list_members). Live over the `society` subscription.
import { useEffect, useRef, useState } from "preact/hooks";
import { hex, sha256Hex, utf8 } from "../codec.js";
import { fmtAmount, fmtDate, fmtDuration, fmtNumber, fmtRelative, t } from "../i18n.js";
import { getMeta, setMeta } from "../keys.js";
import { RpcError, batch, call, live } from "../rpc.js";
import { state, submit, useStore } from "../state.js";
import { Addr, Amount, FormStatus, KeyGate, Progress, TxButton, amountField, amountOf, bytesMax, html, karmaField, karmaOf, need, short, useAsset, useForm } from "../ui.js";
import { RulesText } from "./societies.js";

// karma decay of 4.2, exactly as the ledger computes it (BigInt)
export function decay(k, t0, t1, rules) {
  const n = Math.floor(t1 / rules.decay_period_s) - Math.floor(t0 / rules.decay_period_s);
  if (n <= 0 || rules.decay_ppm === 0) return BigInt(k);
  if (n > 4096) return 0n;
  const keep = 1000000n - BigInt(rules.decay_ppm);
  return (BigInt(k) * keep ** BigInt(n)) / 10n ** BigInt(6 * n);
}

const ok = (r) => (r instanceof RpcError ? null : r);

export const MEMBERS_PAGE = 20; // list_members' page: the members list's "more" adds one

// a member's published name, or null when only a salted hash of it is published
export const nameOf = (m) => (m && m.identity && !m.identity.startsWith("sha256:") ? m.identity : null);

// The society's members in address order: as many pages as the member asked for (one, and
// one more per "more"), all reloaded whenever `key` changes (the society's data did).
function useMembers(id, key) {
  const [list, setList] = useState({ id, items: [], next: null, loaded: false });
  const pages = useRef({ id, n: 1 });
  if (pages.current.id !== id) pages.current = { id, n: 1 };
  const page = (after) => call("list_members", id, after ? { after, limit: MEMBERS_PAGE } : { limit: MEMBERS_PAGE });
  useEffect(() => {
    if (!key) return undefined;
    let alive = true;
    (async () => {
      let items = [];
      let next = null;
      for (let i = 0; i < pages.current.n && (i === 0 || next); i++) {
        const r = await page(next);
        items = items.concat(r.items);
        next = r.next;
      }
      if (alive) setList({ id, items, next, loaded: true });
    })().catch(() => { if (alive) setList((l) => ({ ...l, loaded: true })); });
    return () => { alive = false; };
  }, [id, key]);
  const more = async () => {
    if (!list.next) return;
    const r = await page(list.next);
    pages.current.n += 1;
    setList((l) => ({ ...l, items: [...l.items, ...r.items], next: r.next }));
  };
  return { ...(list.id === id ? list : { items: [], next: null, loaded: false }), more };
}

function MemberName({ m }) {
  const name = nameOf(m);
  return html`${name ? html`<strong>${name}</strong> ` : html`<span class="small muted">${t("members.hashed")}</span> `}<${Addr} a=${m.address} />`;
}

function MembersList({ soc, members, asset }) {
  return html`<div class="card" data-testid="member-list">
    ${!members.loaded ? html`<p>${t("loading")}</p>` : html`<table>
      <caption class="sr-only">${t("members.caption", { n: fmtNumber(soc.members) })}</caption>
      <thead><tr><th>${t("member")}</th><th>${t("karma")}</th><th>${t("member.escrow")}</th></tr></thead>
      <tbody>${members.items.map((m) => html`<tr key=${m.address}>
        <td><${MemberName} m=${m} />${m.proxy ? html`<div class="small muted">${t("members.has_proxy")}</div>` : ""}
          ${m.delegators ? html`<div class="small muted">${t("members.carries", { n: m.delegators })}</div>` : ""}</td>
        <td>${karmaOf(m.karma, asset)}</td><td><${Amount} units=${m.escrow} asset=${asset} /></td></tr>`)}</tbody></table>
      <p class="small muted">${t("members.shown", { shown: fmtNumber(members.items.length), total: fmtNumber(soc.members) })}</p>
      ${members.next && html`<button type="button" class="secondary" onClick=${members.more}>${t("more")}</button>`}`}
  </div>`;
}

async function loadSociety(id) {
  const me = state.key && state.key.address;
  const calls = [["get_society", id], ["list_claims", id]];
  if (me) calls.push(["get_member", id, me], ["get_standing_pledge", id, me], ["get_account", me]);
  const [soc, claims, member, standing, account] = await batch(calls);
  if (soc instanceof RpcError) throw soc;
  return { soc, claims: ok(claims) || [], member: ok(member), standing: ok(standing), account: ok(account) };
}

export function ClaimCard({ c, soc, asset, now }) {
  const net = Number(c.approve) - Number(c.reject);
  const need_ = (soc.rules.approval_bp * Number(soc.total_karma)) / 10000;
  const open = c.status === "open";
  const giftsIn = c.gives_from - now;
  const closesIn = c.closes_at - now;
  return html`<article class="card claim" aria-labelledby=${"c-" + c.claim_id}>
    <div class="spread">
      <h3 id=${"c-" + c.claim_id}><a href=${"#/claim/" + c.claim_id}>${c.subject}</a></h3>
      <span class=${"badge " + (open ? (c.approved ? "ok" : "pending") : "")}>${open ? (c.approved ? t("claim.approved") : t("claim.not_approved")) : t(`outcome.${c.outcome}`)}</span>
    </div>
    <p class="small muted">${c.kind === "charity" ? t("claim.kind_charity") : t("claim.kind_claim")} · <${Addr} a=${c.claimant} /> · ${fmtDate(c.opened_at)}</p>
    <dl class="facts">
      <dt>${t("claim.amount")}</dt><dd><${Amount} units=${c.amount} asset=${asset} /></dd>
      <dt>${t("claim.limit")}</dt><dd><${Amount} units=${c.limit} asset=${asset} /></dd>
      <dt>${t("claim.received")}</dt><dd><${Amount} units=${c.received} asset=${asset} />
        <${Progress} value=${c.received} max=${c.limit} label=${t("claim.received")} /></dd>
      <dt>${t("claim.approval")}</dt><dd>${t("claim.approval_of", { net: karmaOf(net, asset), need: karmaOf(Math.ceil(need_), asset) })}
        <${Progress} value=${net} max=${Math.max(need_, 1)} label=${t("claim.approval")} cls="threshold" /></dd>
      <dt>${t("claim.voters")}</dt><dd>${t("claim.voters_n", { n: c.voters, proxied: karmaOf(c.proxied, asset) })}</dd>
      ${open && html`<dt>${t("claim.gifts_open")}</dt><dd>${giftsIn > 0 ? fmtRelative(giftsIn) : t("claim.now")}</dd>
      <dt>${t("claim.closes")}</dt><dd>${fmtRelative(closesIn)} (${fmtDate(c.closes_at)})</dd>`}
      <dt>${t("claim.comments")}</dt><dd>${c.comments}</dd>
    </dl>
  </article>`;
}

function KarmaChart({ member, rules, asset }) {
  const now = state.chain.head_time;
  const horizon = 365 * 86400;
  const points = [];
  for (let i = 0; i <= 60; i++) {
    const at = now + (horizon * i) / 60;
    points.push(Number(decay(member.karma, now, at, rules)));
  }
  const max = Math.max(points[0], 1);
  const d = points.map((p, i) => `${i === 0 ? "M" : "L"}${(i / 60) * 300},${100 - (p / max) * 95}`).join(" ");
  const at = (days) => decay(member.karma, now, now + days * 86400, rules);
  return html`<figure class="card">
    <figcaption><strong>${t("karma.projection")}</strong> — ${t("karma.projection_text", {
      now: karmaOf(member.karma, asset), m: karmaOf(at(30), asset), h: karmaOf(at(180), asset), y: karmaOf(at(365), asset) })}</figcaption>
    <svg class="chart" viewBox="0 0 300 100" preserveAspectRatio="none" role="img" aria-label=${t("karma.projection")}>
      <path d=${d} fill="none" stroke="#2f6f4f" stroke-width="2" vector-effect="non-scaling-stroke" /></svg>
    <div class="spread small muted"><span>${t("karma.today")}</span><span>${t("karma.in_year")}</span></div>
  </figure>`;
}

function JoinForm({ soc, reload }) {
  const f = useForm({ name: "", hashed: false });
  return html`<form class="stack" onSubmit=${f.run(async (v) => {
    need(v.name.trim(), "form.required", { field: t("join.identity") });
    let identity = v.name.trim();
    if (v.hashed) {
      const salt = crypto.getRandomValues(new Uint8Array(16));
      identity = "sha256:" + sha256Hex(new Uint8Array([...salt, ...utf8(identity)]));
      await setMeta(`identity:${soc.society}:${state.key.address}`, { name: v.name.trim(), salt: hex(salt), identity });
    }
    bytesMax(identity, 256);
    await submit({ type: "join", society: soc.society, identity });
    reload();
  })}>
    <label>${t("join.identity")}<span class="hint">${t("join.identity_hint")}</span>
      <input value=${f.values.name} onInput=${f.set("name")} autocomplete="nickname" /></label>
    <label class="inline"><input type="checkbox" checked=${f.values.hashed} onChange=${f.set("hashed")} /> ${t("join.hashed")}</label>
    <button type="submit" disabled=${f.busy}>${t("join")}</button>
    <${FormStatus} form=${f} />
  </form>`;
}

function PledgeForm({ soc, asset, account }) {
  const f = useForm({ amount: "" });
  const bal = account ? (account.assets || {})[asset.symbol] || 0 : 0;
  const charity = soc.rules.charity_bp;
  return html`<form class="stack card" onSubmit=${f.run(async (v) => {
    const units = amountField(v.amount, asset, { min: BigInt(soc.rules.min_pledge), max: bal });
    await submit({ type: "pledge", society: soc.society, amount: units });
  })}>
    <h3>${t("pledge")}</h3>
    <p class="small muted">${t("pledge.explain", { min: amountOf(soc.rules.min_pledge, asset) })}
      ${charity ? " " + t("pledge.charity_part", { pct: charity / 100 }) : ""}</p>
    <label>${t("amount_in", { asset: asset.symbol })}<span class="hint">${t("balance_is", { b: amountOf(bal, asset) })}</span>
      <input inputmode="decimal" value=${f.values.amount} onInput=${f.set("amount")} /></label>
    <button type="submit" disabled=${f.busy}>${t("pledge")}</button>
    <${FormStatus} form=${f} />
  </form>`;
}

function StandingForm({ soc, asset, standing }) {
  const f = useForm({ amount: "", days: "30" });
  return html`<form class="stack card" onSubmit=${f.run(async (v) => {
    const units = amountField(v.amount, asset, { min: BigInt(soc.rules.min_pledge) });
    need(/^\d+$/.test(v.days.trim()), "form.bad_integer", { field: t("standing.every_days") });
    const interval = Number(v.days) * 86400;
    need(interval >= soc.rules.decay_period_s && interval <= 31536000, "form.interval_range",
      { min: fmtDuration(soc.rules.decay_period_s) });
    await submit({ type: "standing_pledge", society: soc.society, amount: units, interval_s: interval });
  })}>
    <h3>${t("standing")}</h3>
    ${standing ? html`<p class="notice" data-testid="standing-status">${t("standing.status", {
      a: amountOf(standing.amount, asset), every: fmtDuration(standing.interval_s), next: fmtDate(standing.next_at),
      done: standing.executed, missed: standing.missed })}</p>
      <${TxButton} cls="danger" label=${t("standing.stop")} op=${{ type: "standing_pledge", society: soc.society, amount: 0, interval_s: 0 }} />`
      : html`<p class="small muted">${t("standing.explain")}</p>`}
    <label>${t("amount_in", { asset: asset.symbol })}<input inputmode="decimal" value=${f.values.amount} onInput=${f.set("amount")} /></label>
    <label>${t("standing.every_days")}<input inputmode="numeric" value=${f.values.days} onInput=${f.set("days")} /></label>
    <button type="submit" disabled=${f.busy}>${standing ? t("standing.replace") : t("standing.set")}</button>
    <${FormStatus} form=${f} />
  </form>`;
}

function ProxyForm({ soc, asset, member, members }) {
  const f = useForm({ proxy: "" });
  const me = state.key && state.key.address;
  // who can be a proxy: a member other than you without a proxy of their own (proxy_chain)
  const known = members.items.filter((m) => m.address !== me && !m.proxy);
  const current = member.proxy && members.items.find((m) => m.address === member.proxy);
  const chosen = members.items.find((m) => m.address === f.values.proxy.trim());
  return html`<form class="stack card" onSubmit=${f.run(async (v) => {
    const p = v.proxy.trim();
    need(/^mx[0-9a-f]{40}$/.test(p), "form.bad_address");
    need(p !== state.key.address, "reason.self_vote");
    await submit({ type: "set_proxy", society: soc.society, proxy: p });
  })}>
    <h3>${t("proxy")}</h3>
    <p class="small muted">${t("proxy.explain")}</p>
    ${member.proxy ? html`<p class="notice">${t("proxy.current")} ${current ? html`<${MemberName} m=${current} />` : html`<${Addr} a=${member.proxy} />`}</p>
      <${TxButton} cls="secondary" label=${t("proxy.clear")} op=${{ type: "set_proxy", society: soc.society, proxy: "" }} />` : ""}
    ${member.delegators ? html`<p>${t("proxy.you_carry", { n: member.delegators })}</p>` : ""}
    ${known.length ? html`<table><caption class="sr-only">${t("proxy.candidates")}</caption>
      <thead><tr><th>${t("member")}</th><th>${t("karma")}</th><th>${t("proxy.delegators")}</th><th></th></tr></thead>
      <tbody>${known.map((m) => html`<tr key=${m.address}><td><${MemberName} m=${m} /></td>
        <td>${karmaOf(m.karma, asset)}</td><td>${fmtNumber(m.delegators)}</td>
        <td><button type="button" class="link" aria-pressed=${chosen === m ? "true" : "false"} onClick=${() => f.setValues({ proxy: m.address })}>${t("proxy.choose")}<span class="sr-only"> ${nameOf(m) || short(m.address)}</span></button></td></tr>`)}</tbody></table>`
      : members.loaded ? html`<p class="small muted">${t("proxy.no_candidates")}</p>` : ""}
    ${members.next && html`<button type="button" class="secondary" onClick=${members.more}>${t("proxy.more")}</button>`}
    ${chosen && html`<p class="notice" data-testid="proxy-chosen">${t("proxy.chosen", { name: nameOf(chosen) || short(chosen.address), k: karmaOf(chosen.karma, asset), n: chosen.delegators })}</p>`}
    <label>${t("proxy.address")}<input class="mono" value=${f.values.proxy} onInput=${f.set("proxy")} autocomplete="off" /></label>
    <button type="submit" disabled=${f.busy}>${t("proxy.set")}</button>
    <${FormStatus} form=${f} />
  </form>`;
}

export function ClaimForm({ soc, asset, member, charity }) {
  const f = useForm({ subject: "", amount: "", karma: "", details: "", evidence: "" });
  const v = f.values;
  let limit = null;
  if (!charity) {
    try {
      const a = amountField(v.amount, asset);
      const k = (v.karma || "").trim() ? karmaField(v.karma, asset) : 0n;
      limit = a < k * BigInt(soc.rules.benefit_ratio) ? a : k * BigInt(soc.rules.benefit_ratio);
    } catch { limit = null; }
  }
  const now = state.chain.head_time;
  const observed = !member || charity || now >= member.joined_at + soc.rules.observation_s;
  return html`<form class="stack" onSubmit=${f.run(async (vals) => {
    need(!member || !member.open_claim || charity, "reason.open_claim_exists");
    need(observed, "reason.observation_period");
    need(vals.subject.trim(), "form.required", { field: t("claim.subject") });
    bytesMax(vals.subject, 80);
    bytesMax(vals.details, 4096);
    const amount = amountField(vals.amount, asset);
    const evidence = /^[0-9a-f]{64}$/.test(vals.evidence.trim()) ? vals.evidence.trim() : sha256Hex(utf8(vals.evidence || vals.details));
    if (charity) {
      await submit({ type: "charity_request", society: soc.society, amount, subject: vals.subject.trim(), details: vals.details, evidence });
    } else {
      const karma = karmaField(vals.karma, asset);
      need(karma <= BigInt(member.karma), "form.karma_max", { k: karmaOf(member.karma, asset) });
      await submit({ type: "claim", society: soc.society, amount, karma: karma.toString(), subject: vals.subject.trim(), details: vals.details, evidence });
    }
  })}>
    <p class="small muted">${charity ? t("charity.explain", { bond: amountOf(soc.rules.claim_bond, asset) })
      : t("claim.explain", { bond: amountOf(soc.rules.claim_bond, asset), ratio: soc.rules.benefit_ratio })}</p>
    ${!observed && html`<p class="error">${t("claim.observation_until", { d: fmtDate(member.joined_at + soc.rules.observation_s) })}</p>`}
    <label>${t("claim.subject")}<input value=${v.subject} onInput=${f.set("subject")} maxlength="80" /></label>
    <label>${t("amount_in", { asset: asset.symbol })}<input inputmode="decimal" value=${v.amount} onInput=${f.set("amount")} /></label>
    ${!charity && html`<label>${t("claim.karma")}<span class="hint">${t("claim.karma_hint", { k: karmaOf(member.karma, asset) })}</span>
      <input inputmode="decimal" value=${v.karma} onInput=${f.set("karma")} /></label>
      <p class="notice" aria-live="polite" data-testid="limit">${limit === null ? t("claim.limit_unknown")
        : t("claim.limit_is", { limit: amountOf(limit, asset) })}</p>`}
    <label>${t("claim.story")}<span class="hint">${t("claim.story_hint")}</span><textarea value=${v.details} onInput=${f.set("details")}></textarea></label>
    <label>${t("claim.evidence")}<span class="hint">${t("claim.evidence_hint")}</span>
      <input class="mono" value=${v.evidence} onInput=${f.set("evidence")} autocomplete="off" /></label>
    <button type="submit" disabled=${f.busy}>${charity ? t("charity.file") : t("claim.file")}</button>
    <${FormStatus} form=${f} />
  </form>`;
}

export function SocietyPage({ id }) {
  const s = useStore();
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [tick, setTick] = useState(0);
  const reload = () => setTick((n) => n + 1);
  useEffect(() => {
    let alive = true;
    loadSociety(id).then((d) => { if (alive) { setData(d); setError(null); } })
      .catch((e) => { if (alive) setError(e.code === -32001 ? "not_found" : e.message); });
    return () => { alive = false; };
  }, [id, tick, s.key && s.key.address, s.version]);
  useEffect(() => {
    // a busy society sends many events a block: one reload per burst is enough
    let timer = null;
    const off = live.subscribe("society", id, () => {
      if (timer === null) timer = setTimeout(() => { timer = null; reload(); }, 250);
    });
    return () => { off(); if (timer !== null) clearTimeout(timer); };
  }, [id]);
  const [myName, setMyName] = useState(null);
  useEffect(() => {
    if (s.key) getMeta(`identity:${id}:${s.key.address}`).then((v) => setMyName(v || null)).catch(() => setMyName(null));
  }, [id, s.key && s.key.address, data && data.member && data.member.identity]);
  const asset = useAsset(data ? data.soc.rules.asset : "MUX");
  // the members list and the proxy candidates: reloaded with the society's data
  const members = useMembers(id, data);
  if (error) return html`<p class="error" role="alert">${error === "not_found" ? t("society.unknown") : error}</p>`;
  if (!data || !s.chain) return html`<p>${t("loading")}</p>`;
  const { soc, claims, member, standing, account } = data;
  const now = s.chain.head_time;
  const open = claims.filter((c) => c.status === "open");
  const closed = claims.filter((c) => c.status !== "open");
  const cards = (list) => html`<div class="grid">${list.map((c) => html`<${ClaimCard} key=${c.claim_id} c=${c} soc=${soc} asset=${asset} now=${now} />`)}</div>`;
  return html`<section>
    <h1>${soc.name} <span class="mono small muted">${soc.society}</span></h1>
    ${soc.purpose && html`<p class="purpose">${soc.purpose}</p>`}
    <div class="grid">
      <div class="card"><h2>${t("society.figures")}</h2><dl class="facts">
        <dt>${t("society.members")}</dt><dd data-testid="members">${fmtNumber(soc.members)}</dd>
        <dt>${t("society.escrow_total")}</dt><dd><${Amount} units=${soc.escrow_total} asset=${asset} /></dd>
        <dt>${t("society.charity_escrow_total")}</dt><dd><${Amount} units=${soc.charity_escrow_total} asset=${asset} /></dd>
        <dt>${t("society.total_karma")}</dt><dd>${karmaOf(soc.total_karma, asset)}</dd>
        <dt>${t("society.open_claims")}</dt><dd>${fmtNumber(soc.open_claims)}</dd>
        <dt>${t("society.creator")}</dt><dd><${Addr} a=${soc.creator} /></dd>
      </dl></div>
      <div class="card"><h2>${t("society.rules")}</h2><${RulesText} rules=${soc.rules} asset=${asset} /></div>
    </div>
    <h2>${t("society.you")}</h2>
    <${KeyGate}>
      ${member ? html`<div class="card" data-testid="membership"><dl class="facts">
          <dt>${t("join.identity")}</dt><dd class=${member.identity.startsWith("sha256:") ? "mono" : ""}>${member.identity}
            ${myName && myName.identity === member.identity && html`<div class="small">${t("join.hashed_name", { name: myName.name, salt: myName.salt })}</div>`}</dd>
          <dt>${t("member.escrow")}</dt><dd data-testid="escrow"><${Amount} units=${member.escrow} asset=${asset} /></dd>
          <dt>${t("member.charity_escrow")}</dt><dd><${Amount} units=${member.charity_escrow} asset=${asset} /></dd>
          <dt>${t("karma")}</dt><dd data-testid="karma">${karmaOf(member.karma, asset)}</dd>
          <dt>${t("member.pledged")}</dt><dd><${Amount} units=${member.pledged_total} asset=${asset} /></dd>
          <dt>${t("member.given")}</dt><dd><${Amount} units=${member.given_total} asset=${asset} /></dd>
          <dt>${t("member.joined")}</dt><dd>${fmtDate(member.joined_at)}</dd>
        </dl></div>
        <${KarmaChart} member=${member} rules=${soc.rules} asset=${asset} />
        <div class="grid">
          <${PledgeForm} soc=${soc} asset=${asset} account=${account} />
          <${StandingForm} soc=${soc} asset=${asset} standing=${standing} />
          <${ProxyForm} soc=${soc} asset=${asset} member=${member} members=${members} />
        </div>
        <details class="card"><summary>${t("claim.file")}</summary>
          <${ClaimForm} soc=${soc} asset=${asset} member=${member} /></details>`
      : html`<div class="card"><h3>${t("join")}</h3>${soc.rules.observation_s ? html`<p class="small muted">${t("join.explain", { d: fmtDuration(soc.rules.observation_s) })}</p>` : ""}
          <${JoinForm} soc=${soc} reload=${reload} /></div>`}
      <details class="card"><summary>${t("charity.file")}</summary>
        <${ClaimForm} soc=${soc} asset=${asset} member=${member} charity=${true} /></details>
    <//>
    <h2>${t("society.open_claims_h")}</h2>
    ${claims.length < soc.open_claims && html`<p class="notice">${t("society.claims_capped", { shown: fmtNumber(claims.length), total: fmtNumber(soc.open_claims) })}</p>`}
    ${open.filter((c) => c.kind !== "charity").length ? cards(open.filter((c) => c.kind !== "charity")) : html`<p class="muted">${t("society.no_claims")}</p>`}
    <h2>${t("society.charity_h")}</h2>
    ${open.filter((c) => c.kind === "charity").length ? cards(open.filter((c) => c.kind === "charity")) : html`<p class="muted">${t("society.no_charity")}</p>`}
    ${closed.length ? html`<details><summary>${t("society.closed_h", { n: closed.length })}</summary>${cards(closed)}</details>` : ""}
    <h2>${t("society.members")}</h2>
    <${MembersList} soc=${soc} members=${members} asset=${asset} />
  </section>`;
}

export { fmtAmount, getMeta };
