// The node's public API, as any outside app uses it: JSON-RPC calls over POST /rpc, and
// subscriptions over the WebSocket /ws of the same origin (protocol sections 9, 11.8, 12).
// The WebSocket reconnects after a drop (bounded backoff) and re-subscribes every topic.

export class RpcError extends Error {
  constructor(error) {
    super(error.message);
    this.code = error.code;
    this.data = error.data || {};
    this.reason = this.data.reason || null;
  }
}

let nextId = 1;

export async function call(method, ...params) {
  const r = await fetch("/rpc", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params }),
  });
  const doc = await r.json();
  if (doc.error) throw new RpcError(doc.error);
  return doc.result;
}

// many calls in one request; errors come back as RpcError values in their places
export async function batch(calls) {
  if (!calls.length) return [];
  const base = nextId;
  nextId += calls.length;
  const body = calls.map(([m, ...p], i) => ({ jsonrpc: "2.0", id: base + i, method: m, params: p }));
  const r = await fetch("/rpc", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  const docs = await r.json();
  const byId = new Map(docs.map((d) => [d.id, d]));
  return calls.map((_, i) => {
    const d = byId.get(base + i);
    return d.error ? new RpcError(d.error) : d.result;
  });
}

// One WebSocket for the page's subscriptions. subscribe() returns an unsubscribe function;
// the handler gets each notification's result.
class Live {
  constructor() {
    this.ws = null;
    this.pending = new Map(); // request id -> resolve
    this.subs = new Map(); // local key -> {topic, filter, handler, remote}
    this.byRemote = new Map(); // subscription id -> local key
    this.key = 0;
    this.backoff = 250;
    this.listeners = new Set();
    this.connected = false;
  }

  onStatus(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }

  setConnected(v) {
    this.connected = v;
    for (const fn of this.listeners) fn(v);
  }

  connect() {
    if (this.ws) return;
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 250;
      this.setConnected(true);
      for (const [k, s] of this.subs) this.remoteSubscribe(k, s);
    };
    ws.onmessage = (ev) => {
      const doc = JSON.parse(ev.data);
      for (const msg of Array.isArray(doc) ? doc : [doc]) {
        if (msg.method === "subscription") {
          const k = this.byRemote.get(msg.params.subscription);
          const s = k !== undefined && this.subs.get(k);
          if (s) s.handler(msg.params.result);
        } else if (this.pending.has(msg.id)) {
          this.pending.get(msg.id)(msg);
          this.pending.delete(msg.id);
        }
      }
    };
    ws.onclose = () => {
      this.ws = null;
      this.byRemote.clear();
      for (const s of this.subs.values()) s.remote = null;
      this.setConnected(false);
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 5000);
    };
  }

  request(method, params) {
    return new Promise((resolve) => {
      const id = nextId++;
      this.pending.set(id, resolve);
      this.ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  async remoteSubscribe(k, s) {
    if (!this.ws || this.ws.readyState !== 1) return;
    const params = s.filter === undefined ? [s.topic] : [s.topic, s.filter];
    const msg = await this.request("subscribe", params);
    if (!this.subs.has(k)) { // unsubscribed meanwhile
      if (msg.result) this.request("unsubscribe", [msg.result]);
      return;
    }
    if (msg.result) {
      s.remote = msg.result;
      this.byRemote.set(msg.result, k);
    }
    if (s.ready) s.ready();
  }

  // resolves once the node has the subscription (so nothing after it is missed)
  subscribe(topic, filter, handler) {
    this.connect();
    const k = this.key++;
    let ready;
    const done = new Promise((r) => { ready = r; });
    const s = { topic, filter, handler, remote: null, ready };
    this.subs.set(k, s);
    this.remoteSubscribe(k, s);
    const off = () => {
      this.subs.delete(k);
      if (s.remote && this.ws && this.ws.readyState === 1) {
        this.byRemote.delete(s.remote);
        this.request("unsubscribe", [s.remote]);
      }
    };
    off.ready = Promise.race([done, new Promise((r) => setTimeout(r, 3000))]);
    return off;
  }
}

export const live = new Live();
