// Keys: create, import (secret or `muxer` keystore file), unlock, lock, export, delete.
import { useEffect, useState } from "preact/hooks";
import { hex } from "../codec.js";
import { t } from "../i18n.js";
import { createKey, deleteKey, keystoreFile, listKeys, parseSeed, readKeystoreFile, storeSeed, unlock } from "../keys.js";
import { state, update, useStore } from "../state.js";
import { Addr, FormStatus, html, need, useForm } from "../ui.js";

function KeyRow({ k, reload }) {
  const s = useStore();
  const open = s.key && s.key.name === k.name;
  const f = useForm({ pass: "" });
  const [exported, setExported] = useState(null);
  const doUnlock = f.run(async (v) => {
    const seed = await unlock(k.name, v.pass);
    update({ key: { name: k.name, address: k.address, seed } });
  }, { doneKey: "keys.unlocked" });
  const doExport = f.run(async (v) => {
    const seed = await unlock(k.name, v.pass);
    const file = await keystoreFile(k.name, seed, v.pass);
    setExported({ seed: hex(seed), url: URL.createObjectURL(new Blob([file], { type: "application/json" })) });
  }, { doneKey: "keys.exported" });
  return html`<li class="card">
    <div class="spread"><h3>${k.name}</h3>${open && html`<span class="badge ok">${t("keys.unlocked")}</span>`}</div>
    <p class="mono small">${k.address}</p>
    ${open ? html`<button type="button" class="secondary" onClick=${() => update({ key: null })}>${t("keys.lock")}</button>`
      : html`<form class="row" onSubmit=${doUnlock}>
        <label class="inline">${t("keys.passphrase")}
          <input type="password" autocomplete="current-password" value=${f.values.pass} onInput=${f.set("pass")} /></label>
        <button type="submit" disabled=${f.busy}>${t("keys.unlock")}</button>
        <button type="button" class="secondary" disabled=${f.busy} onClick=${doExport}>${t("keys.export")}</button>
        <button type="button" class="danger" onClick=${async () => {
          if (!window.confirm(t("keys.delete_confirm", { name: k.name }))) return;
          await deleteKey(k.name);
          if (state.key && state.key.name === k.name) update({ key: null });
          reload();
        }}>${t("keys.delete")}</button>
      </form>`}
    <${FormStatus} form=${f} />
    ${exported && html`<div class="notice"><p>${t("keys.export_warning")}</p>
      <p class="mono">${exported.seed}</p>
      <a href=${exported.url} download=${k.name + ".json"}>${t("keys.download_keystore")}</a></div>`}
  </li>`;
}

export function KeysPage() {
  const [keys, setKeys] = useState(null);
  const reload = () => listKeys().then(setKeys);
  useEffect(() => { reload(); }, []);
  const create = useForm({ name: "", pass: "", pass2: "" });
  const imp = useForm({ name: "", seed: "", pass: "" });
  const file = useForm({ name: "", text: "", filepass: "", pass: "" });
  const after = async (rec, seed) => {
    update({ key: { name: rec.name, address: rec.address, seed } });
    await reload();
  };
  return html`<section>
    <h1>${t("keys.title")}</h1>
    <p class="muted">${t("keys.intro")}</p>
    ${keys && keys.length === 0 && html`<p class="notice">${t("keys.none")}</p>`}
    <ul class="plain">${(keys || []).map((k) => html`<${KeyRow} key=${k.name} k=${k} reload=${reload} />`)}</ul>
    <div class="grid">
    <form class="card stack" onSubmit=${create.run(async (v) => {
      need(v.pass === v.pass2, "keys.mismatch");
      const rec = await createKey(v.name.trim(), v.pass);
      const seed = await unlock(rec.name, v.pass);
      await after(rec, seed);
    }, { doneKey: "keys.created" })}>
      <h2>${t("keys.create")}</h2>
      <label>${t("keys.name")}<span class="hint">${t("keys.name_hint")}</span>
        <input value=${create.values.name} onInput=${create.set("name")} autocomplete="off" /></label>
      <label>${t("keys.passphrase")}<span class="hint">${t("keys.passphrase_hint")}</span>
        <input type="password" autocomplete="new-password" value=${create.values.pass} onInput=${create.set("pass")} /></label>
      <label>${t("keys.passphrase_again")}
        <input type="password" autocomplete="new-password" value=${create.values.pass2} onInput=${create.set("pass2")} /></label>
      <button type="submit" disabled=${create.busy}>${t("keys.create")}</button>
      <${FormStatus} form=${create} />
    </form>
    <form class="card stack" onSubmit=${imp.run(async (v) => {
      const seed = parseSeed(v.seed);
      const rec = await storeSeed(v.name.trim(), seed, v.pass);
      await after(rec, seed);
    }, { doneKey: "keys.imported" })}>
      <h2>${t("keys.import_secret")}</h2>
      <label>${t("keys.name")}<input value=${imp.values.name} onInput=${imp.set("name")} autocomplete="off" /></label>
      <label>${t("keys.secret")}<span class="hint">${t("keys.secret_hint")}</span>
        <input type="password" autocomplete="off" value=${imp.values.seed} onInput=${imp.set("seed")} /></label>
      <label>${t("keys.passphrase")}<span class="hint">${t("keys.passphrase_hint")}</span>
        <input type="password" autocomplete="new-password" value=${imp.values.pass} onInput=${imp.set("pass")} /></label>
      <button type="submit" disabled=${imp.busy}>${t("keys.import")}</button>
      <${FormStatus} form=${imp} />
    </form>
    <form class="card stack" onSubmit=${file.run(async (v) => {
      need(v.text, "keys.choose_file");
      const got = await readKeystoreFile(v.text, v.filepass);
      const rec = await storeSeed((v.name || got.name).trim(), got.seed, v.pass || v.filepass);
      await after(rec, got.seed);
    }, { doneKey: "keys.imported" })}>
      <h2>${t("keys.import_file")}</h2>
      <label>${t("keys.file")}<span class="hint">${t("keys.file_hint")}</span>
        <input type="file" accept=".json,application/json" onChange=${async (ev) => {
          const fl = ev.currentTarget.files[0];
          if (fl) { const text = await fl.text(); file.setValues((v) => ({ ...v, text })); }
        }} /></label>
      <label>${t("keys.file_passphrase")}
        <input type="password" autocomplete="off" value=${file.values.filepass} onInput=${file.set("filepass")} /></label>
      <label>${t("keys.name")}<span class="hint">${t("keys.name_from_file")}</span>
        <input value=${file.values.name} onInput=${file.set("name")} autocomplete="off" /></label>
      <label>${t("keys.new_passphrase")}<span class="hint">${t("keys.new_passphrase_hint")}</span>
        <input type="password" autocomplete="new-password" value=${file.values.pass} onInput=${file.set("pass")} /></label>
      <button type="submit" disabled=${file.busy}>${t("keys.import")}</button>
      <${FormStatus} form=${file} />
    </form>
    </div>
  </section>`;
}

export { Addr };
