// The shell: header (navigation, language, the unlocked key), the hash router, the live tx
// status list. Pages live in pages/; every string goes through i18n.t.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { LANGS, fmtNumber, t } from "./i18n.js";
import { chooseLang, initState, update, useStore } from "./state.js";
import { Addr, html } from "./ui.js";
import { AccountPage } from "./pages/account.js";
import { ClaimPage } from "./pages/claim.js";
import { KeysPage } from "./pages/keys.js";
import { NewSocietyPage, SocietiesPage } from "./pages/societies.js";
import { SocietyPage } from "./pages/society.js";

function useRoute() {
  const [hash, setHash] = useState(location.hash || "#/");
  useEffect(() => {
    const on = () => setHash(location.hash || "#/");
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash.slice(1).split("/").filter(Boolean);
}

function Header({ route }) {
  const s = useStore();
  const here = route[0] || "societies";
  const link = (name, href, key) => html`<a href=${href} aria-current=${here === name ? "page" : undefined}>${t(key)}</a>`;
  return html`<header class="top">
    <a class="brand" href="#/">MUXER</a>
    <nav aria-label=${t("nav.main")}>
      ${link("societies", "#/", "nav.societies")}
      ${link("account", "#/account", "nav.account")}
      ${link("keys", "#/keys", "nav.keys")}
    </nav>
    <div class="right">
      <span class="live small" role="status" data-testid="head">${s.chain ? t("head", { h: fmtNumber(s.chain.head_height), f: fmtNumber(s.chain.final_height) }) : ""}
        ${s.connected ? "" : " · " + t("offline")}</span>
      ${s.key ? html`<span class="small"><${Addr} a=${s.key.address} /></span>
        <button type="button" class="secondary" onClick=${() => update({ key: null })}>${t("keys.lock")}</button>`
        : html`<a href="#/keys">${t("keys.unlock")}</a>`}
      <label class="sr-only" for="lang">${t("language")}</label>
      <select id="lang" value=${s.lang} onChange=${(e) => chooseLang(e.currentTarget.value)}>
        ${LANGS.map(([k, name]) => html`<option value=${k}>${name}</option>`)}</select>
    </div>
  </header>`;
}

function TxLog() {
  const s = useStore();
  return html`<div class="txlog" aria-live="polite" aria-label=${t("tx.log")}>
    ${s.txs.slice(0, 4).map((x) => html`<div class="item" key=${x.id} data-status=${x.status}>
      <strong>${t(`op.${x.type}`)}</strong> <span class=${"badge " + (x.status === "final" ? "ok" : x.status === "dropped" ? "warn" : "pending")}>${t(`tx.${x.status}`)}</span>
      ${x.height ? html` <span class="small muted">${t("tx.block", { h: x.height })}</span>` : ""}
      <div class="mono small muted">${x.id.slice(0, 16)}…</div></div>`)}
  </div>`;
}

function App() {
  const route = useRoute();
  useStore();
  let page;
  if (route[0] === "society" && route[1]) page = html`<${SocietyPage} id=${route[1]} />`;
  else if (route[0] === "claim" && route[1]) page = html`<${ClaimPage} id=${route[1]} />`;
  else if (route[0] === "new-society") page = html`<${NewSocietyPage} />`;
  else if (route[0] === "keys") page = html`<${KeysPage} />`;
  else if (route[0] === "account") page = html`<${AccountPage} />`;
  else page = html`<${SocietiesPage} />`;
  useEffect(() => { document.title = `MUXER · ${t("nav." + (route[0] === "keys" || route[0] === "account" ? route[0] : "societies"))}`; });
  return html`<${Header} route=${route} /><main id="main">${page}</main><${TxLog} />`;
}

initState().then(() => render(html`<${App} />`, document.getElementById("app")))
  .catch((e) => {
    document.getElementById("app").textContent = "MUXER: " + e.message;
  });
