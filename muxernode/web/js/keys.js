// Keys in the browser. A secret (the 32-byte Ed25519 seed) is stored only sealed:
// AES-GCM (WebCrypto) under a key derived from the passphrase by PBKDF2-SHA-256 with
// 600,000 iterations (OWASP's 2023 figure; WebCrypto's native PBKDF2 keeps unlocking near
// half a second), in IndexedDB, never sent anywhere. The name and address are bound as the
// AES-GCM associated data, as the CLI keystore binds them, so an edited record fails to
// unlock instead of signing for someone else.
//
// A `muxer` CLI keystore file (muxernode/keystore.py: scrypt + ChaCha20-Poly1305, AAD
// "MUXER/keystore/v1\0name\0address") can be imported and exported, with @noble/hashes'
// scrypt and @noble/ciphers' chacha20poly1305.
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { scrypt } from "@noble/hashes/scrypt.js";
import { addressOf, addressText, concat, hex, publicKeyOf, randomSeed, unhex, utf8 } from "./codec.js";

const DB = "muxer-web";
const STORE = "keys";
const META = "meta";
export const PBKDF2_ITERATIONS = 600000;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;
const KEYSTORE_TAG = "MUXER/keystore/v1";
const MAX_SCRYPT_N = 2 ** 20;

export class KeyError extends Error {
  constructor(code) { super(code); this.code = code; }
}

function db() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => {
      req.result.createObjectStore(STORE, { keyPath: "name" });
      req.result.createObjectStore(META, { keyPath: "key" });
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx(store, mode, fn) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const t = d.transaction(store, mode);
    const req = fn(t.objectStore(store));
    t.oncomplete = () => resolve(req && req.result);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error || new KeyError("storage"));
  });
}

export const listKeys = () => tx(STORE, "readonly", (s) => s.getAll());
export const getKey = (name) => tx(STORE, "readonly", (s) => s.get(name));
export const deleteKey = (name) => tx(STORE, "readwrite", (s) => s.delete(name));
export const getMeta = async (key) => (await tx(META, "readonly", (s) => s.get(key)))?.value;
export const setMeta = (key, value) => tx(META, "readwrite", (s) => s.put({ key, value }));

function normPass(passphrase) {
  return utf8(passphrase.normalize("NFKC"));
}

async function aesKey(passphrase, salt, iterations) {
  const base = await crypto.subtle.importKey("raw", normPass(passphrase), "PBKDF2", false, ["deriveKey"]);
  return crypto.subtle.deriveKey({ name: "PBKDF2", hash: "SHA-256", salt, iterations },
    base, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
}

const aad = (name, address) => utf8(`${KEYSTORE_TAG}\0${name}\0${address}`);

export function checkName(name) {
  if (!NAME.test(name || "")) throw new KeyError("bad_key_name");
}

export function checkPassphrase(passphrase) {
  if ((passphrase || "").length < 8) throw new KeyError("short_passphrase");
}

export async function storeSeed(name, seed, passphrase) {
  checkName(name);
  checkPassphrase(passphrase);
  if (await getKey(name)) throw new KeyError("key_exists");
  const pubkey = await publicKeyOf(seed);
  const address = addressText(addressOf(pubkey));
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const k = await aesKey(passphrase, salt, PBKDF2_ITERATIONS);
  const sealed = new Uint8Array(await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: aad(name, address) }, k, seed));
  const record = { name, address, public_key: hex(pubkey), kdf: "PBKDF2-SHA-256",
    iterations: PBKDF2_ITERATIONS, salt: hex(salt), iv: hex(iv), ciphertext: hex(sealed),
    created: Date.now() };
  await tx(STORE, "readwrite", (s) => s.add(record));
  return record;
}

export const createKey = (name, passphrase) => storeSeed(name, randomSeed(), passphrase);

export function parseSeed(text) {
  const t = (text || "").trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(t)) throw new KeyError("bad_seed");
  return unhex(t);
}

export async function unlock(name, passphrase) {
  const r = await getKey(name);
  if (!r) throw new KeyError("unknown_key");
  const k = await aesKey(passphrase, unhex(r.salt), r.iterations);
  let seed;
  try {
    seed = new Uint8Array(await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: unhex(r.iv), additionalData: aad(r.name, r.address) }, k, unhex(r.ciphertext)));
  } catch {
    throw new KeyError("wrong_passphrase");
  }
  if (hex(await publicKeyOf(seed)) !== r.public_key) throw new KeyError("corrupt_key");
  return seed;
}

// a keystore file of the CLI wallet -> its seed (and the name and address it carries)
export async function readKeystoreFile(text, passphrase) {
  let doc;
  try { doc = JSON.parse(text); } catch { throw new KeyError("bad_keystore"); }
  const p = doc && doc.kdf_params;
  if (!doc || doc.version !== 1 || doc.kdf !== "scrypt" || doc.cipher !== "chacha20poly1305" || !p) {
    throw new KeyError("bad_keystore");
  }
  const { n, r } = p;
  const pp = p.p;
  if (!(Number.isInteger(n) && n >= 2 && n <= MAX_SCRYPT_N && (n & (n - 1)) === 0 &&
        Number.isInteger(r) && r >= 1 && r <= 32 && Number.isInteger(pp) && pp >= 1 && pp <= 16)) {
    throw new KeyError("bad_keystore");
  }
  let seed;
  try {
    const key = scrypt(normPass(passphrase), unhex(p.salt), { N: n, r, p: pp, dkLen: 32, maxmem: 2 ** 31 });
    // @noble/ciphers takes the associated data with the key and nonce
    seed = chacha20poly1305(key, unhex(doc.nonce), aad(doc.name, doc.address)).decrypt(unhex(doc.ciphertext));
  } catch (e) {
    if (e instanceof KeyError) throw e;
    throw new KeyError("wrong_passphrase");
  }
  if (hex(await publicKeyOf(seed)) !== doc.public_key) throw new KeyError("corrupt_key");
  return { seed, name: doc.name, address: doc.address };
}

// the seed as a CLI keystore file (n = 2**15 as the CLI's default), for `muxer` to use
export async function keystoreFile(name, seed, passphrase) {
  const pubkey = await publicKeyOf(seed);
  const address = addressText(addressOf(pubkey));
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const n = 2 ** 15;
  const key = scrypt(normPass(passphrase), salt, { N: n, r: 8, p: 1, dkLen: 32 });
  const sealed = chacha20poly1305(key, nonce, aad(name, address)).encrypt(seed);
  return JSON.stringify({ version: 1, name, address, public_key: hex(pubkey), kdf: "scrypt",
    kdf_params: { salt: hex(salt), n, r: 8, p: 1, dklen: 32 }, cipher: "chacha20poly1305",
    nonce: hex(nonce), ciphertext: hex(sealed) }, null, 2) + "\n";
}

export { concat };
