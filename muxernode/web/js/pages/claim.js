// One claim (or charity request): the card, the story and evidence, who voted how and by
// proxy, the vote and give controls, the claimant's amend and withdraw, and the discussion
// (comments of 11.7), all live over the `claim` and `society` subscriptions.
import { useEffect, useState } from "preact/hooks";
import { sha256Hex, utf8 } from "../codec.js";
import { fmtDate, fmtNumber, t } from "../i18n.js";
import { RpcError, batch, live } from "../rpc.js";
import { state, submit, useStore } from "../state.js";
import { Addr, Amount, FormStatus, KeyGate, TxButton, amountField, amountOf, bytesMax, html, karmaOf, need, useAsset, useForm } from "../ui.js";
import { ClaimCard } from "./society.js";

const ok = (r) => (r instanceof RpcError ? null : r);

async function loadClaim(id) {
  const [claim, votes, comments] = await batch([["get_claim", id], ["list_votes", id], ["list_comments", id, { limit: 100 }]]);
  if (claim instanceof RpcError) throw claim;
  const me = state.key && state.key.address;
  const [soc, member] = await batch([["get_society", claim.society], ...(me ? [["get_member", claim.society, me]] : [])]);
  return { claim, votes: ok(votes) || [], comments: ok(comments) ? comments.items : [], soc, member: ok(member) };
}

function GiveForm({ claim, member, asset }) {
  const f = useForm({ amount: "" });
  const charity = claim.kind === "charity";
  const escrow = charity ? member.charity_escrow : member.escrow;
  const left = BigInt(claim.limit) - BigInt(claim.received);
  return html`<form class="stack card" onSubmit=${f.run(async (v) => {
    need(claim.approved, "reason.not_approved");
    need(state.chain.head_time >= claim.gives_from, "reason.waiting_period");
    const units = amountField(v.amount, asset, { max: escrow, maxKey: "form.over_escrow" });
    need(units <= left, "form.over_limit", { left: amountOf(left, asset) });
    await submit({ type: "give", claim_id: claim.claim_id, amount: units });
  })}>
    <h3>${t("give")}</h3>
    <p class="small muted">${charity ? t("give.from_charity", { e: amountOf(escrow, asset) }) : t("give.from_escrow", { e: amountOf(escrow, asset) })}
      ${" "}${t("give.left", { left: amountOf(left, asset) })}</p>
    <label>${t("amount_in", { asset: asset.symbol })}<input inputmode="decimal" value=${f.values.amount} onInput=${f.set("amount")} /></label>
    <button type="submit" disabled=${f.busy}>${t("give")}</button>
    <${FormStatus} form=${f} />
  </form>`;
}

function AmendForm({ claim }) {
  const f = useForm({ details: claim.details, evidence: claim.evidence });
  return html`<form class="stack card" onSubmit=${f.run(async (v) => {
    bytesMax(v.details, 4096);
    const evidence = /^[0-9a-f]{64}$/.test(v.evidence.trim()) ? v.evidence.trim() : sha256Hex(utf8(v.evidence || v.details));
    await submit({ type: "amend_claim", claim_id: claim.claim_id, details: v.details, evidence });
  }, { keep: true })}>
    <h3>${t("amend")}</h3>
    <p class="small muted">${t("amend.explain")}</p>
    <label>${t("claim.story")}<textarea value=${f.values.details} onInput=${f.set("details")}></textarea></label>
    <label>${t("claim.evidence")}<input class="mono" value=${f.values.evidence} onInput=${f.set("evidence")} /></label>
    <button type="submit" disabled=${f.busy}>${t("amend")}</button>
    <${FormStatus} form=${f} />
  </form>`;
}

function Discussion({ claim, comments, canComment }) {
  const f = useForm({ text: "" });
  return html`<section aria-labelledby="discussion">
    <h2 id="discussion">${t("discussion")}</h2>
    <p class="small muted">${t("discussion.explain")}</p>
    <div aria-live="polite" data-testid="comments">
      ${comments.length === 0 && html`<p class="muted">${t("discussion.none")}</p>`}
      ${comments.map((c) => html`<div class=${"comment" + (c.author === claim.claimant ? " claimant" : "")} key=${c.tx_id}>
        <span class="who"><${Addr} a=${c.author} /></span> <span class="small muted">${fmtDate(c.time)}</span>
        <p>${c.text}</p></div>`)}
    </div>
    ${canComment && html`<form class="stack" onSubmit=${f.run(async (v) => {
      need(v.text.trim(), "form.required", { field: t("discussion.comment") });
      bytesMax(v.text, 1024);
      await submit({ type: "comment", claim_id: claim.claim_id, text: v.text.trim() });
    })}>
      <label>${t("discussion.comment")}<textarea value=${f.values.text} onInput=${f.set("text")}></textarea></label>
      <button type="submit" disabled=${f.busy}>${t("discussion.send")}</button>
      <${FormStatus} form=${f} />
    </form>`}
  </section>`;
}

export function ClaimPage({ id }) {
  const s = useStore();
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let alive = true;
    loadClaim(id).then((d) => { if (alive) { setData(d); setError(null); } })
      .catch((e) => { if (alive) setError(e.code === -32001 ? t("claim.unknown") : e.message); });
    return () => { alive = false; };
  }, [id, tick, s.key && s.key.address, s.version]);
  useEffect(() => live.subscribe("claim", id, () => setTick((n) => n + 1)), [id]);
  // the `claim` topic is silent on a new comment (docs/protocol.md, deviation of section
  // 12); the society's topic names every comment, so the discussion follows that one too
  const society = data && data.claim.society;
  useEffect(() => (society ? live.subscribe("society", society, (ev) => {
    if (ev.claim_id === id) setTick((n) => n + 1);
  }) : undefined), [society, id]);
  const asset = useAsset(data ? data.soc.rules.asset : "MUX");
  if (error) return html`<p class="error" role="alert">${error}</p>`;
  if (!data || !s.chain) return html`<p>${t("loading")}</p>`;
  const { claim, votes, comments, soc, member } = data;
  const me = s.key && s.key.address;
  const mine = me === claim.claimant;
  const open = claim.status === "open";
  const myVote = votes.find((v) => v.voter === me && !v.via);
  const vote = (stance) => ({ type: "vote", claim_id: claim.claim_id, stance });
  return html`<section>
    <p><a href=${"#/society/" + soc.society}>← ${soc.name}</a></p>
    <h1>${claim.subject}</h1>
    <${ClaimCard} c=${claim} soc=${soc} asset=${asset} now=${s.chain.head_time} />
    <div class="card"><h2>${t("claim.story")}</h2><p class="story">${claim.details || t("claim.no_story")}</p>
      <p class="small">${t("claim.evidence")}: <span class="mono">${claim.evidence}</span></p></div>
    <div class="card"><h2>${t("votes")}</h2>
      ${votes.length === 0 ? html`<p class="muted">${t("votes.none")}</p>` : html`<table data-testid="votes">
        <thead><tr><th>${t("votes.voter")}</th><th>${t("votes.stance")}</th><th>${t("votes.weight")}</th><th>${t("votes.via")}</th></tr></thead>
        <tbody>${votes.map((v) => html`<tr><td><${Addr} a=${v.voter} /></td><td>${v.stance > 0 ? t("approve") : t("reject")}</td>
          <td>${karmaOf(v.weight, asset)}</td><td>${v.via ? html`${t("votes.by_proxy")} <${Addr} a=${v.via} />` : t("votes.own")}</td></tr>`)}</tbody></table>`}
    </div>
    <${KeyGate}>
      ${open && member && !mine && html`<div class="card"><h2>${t("your_vote")}</h2>
        <p>${myVote ? t("your_vote.is", { stance: myVote.stance > 0 ? t("approve") : t("reject") }) : t("your_vote.none")}
          ${member.proxy && !myVote ? " " + t("your_vote.proxy") : ""}</p>
        <div class="row">
          <${TxButton} label=${t("approve")} op=${vote(1)} />
          <${TxButton} cls="danger" label=${t("reject")} op=${vote(-1)} />
          ${myVote && html`<${TxButton} cls="secondary" label=${t("vote.withdraw")} op=${vote(0)} />`}
        </div></div>`}
      ${open && member && !mine && html`<${GiveForm} claim=${claim} member=${member} asset=${asset} />`}
      ${open && mine && html`<div class="card"><h2>${t("claim.yours")}</h2>
        <${TxButton} cls="danger" label=${claim.kind === "charity" ? t("withdraw.charity") : t("withdraw")} confirm="withdraw.confirm"
          op=${{ type: "withdraw_claim", claim_id: claim.claim_id }} />
        <p class="small muted">${Number(claim.received) > 0 ? t("withdraw.bond_burned") : t("withdraw.bond_back")}</p></div>
        ${claim.voters === 0 ? html`<${AmendForm} claim=${claim} />` : html`<p class="small muted">${t("amend.closed")}</p>`}`}
    <//>
    <${Discussion} claim=${claim} comments=${comments} canComment=${!!(me && (member || mine))} />
  </section>`;
}

export { Amount, fmtNumber };
