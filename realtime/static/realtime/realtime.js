/*
 * realtime.js: a small, dependency-free AppSync Events client. Section numbers (§) refer to
 * docs/PROTOCOL.md: §3 WebSocket, §2 HTTP publish, §5.2 the authorization object.
 *
 * Browser: <script src="/static/realtime/realtime.js"></script> gives window.RealtimeClient.
 * Node 20: import { RealtimeClient } from "./realtime.mjs", and pass WebSocket from "ws".
 *
 *   const client = new RealtimeClient({
 *     httpEndpoint: "https://host/event",      // or url: "wss://host/event/realtime"
 *     auth: { "x-api-key": KEY },              // headers, or an (async) function returning them
 *     onStateChange: (state, detail) => {},    // connecting | connected | reconnecting | closed
 *     onError: (error) => {},
 *     maxRetryDelayMs: 5000,                   // optional: the backoff's cap while the page is visible
 *   });
 *   const sub = client.subscribe("/default/*", (event) => {}, (error) => {}); // sub.ready, sub.unsubscribe()
 *   // History (§12): the 4th argument hears whether a re-subscribe recovered what was missed.
 *   client.subscribe("/chat/room", onEvent, onError, { onRecovery: (recovered) => {} });
 *   const { successful, failed } = await client.publish("/default/room", [{ text: "hi" }]);
 *   await client.httpPublish("/default/room", ["hello"]);
 *   client.close();
 *
 * A dropped connection is retried, the first time at once, then with jittered backoff of at most 5 s
 * while the page is visible (30 s when hidden or offline), and re-subscribes. In a browser, `offline`
 * drops the link at once; `online`, or the page becoming visible, retries without waiting.
 *
 * On a namespace with history (§12) each subscription follows its position (`sub.position`,
 * {offset, epoch}) and re-subscribes with `since`: the server replays what was published while the
 * link was down, before live events. `onRecovery(false)` means the gap could not be filled (too
 * many missed, or the history was lost): reload the state the events describe.
 */
(function (root) {
  "use strict";

  const SUBPROTOCOL = "aws-appsync-event-ws"; // §3.1
  const ACK_TIMEOUT_MS = 15000; // §10: Amplify waits 15 s for connection_ack
  const DEFAULT_TIMEOUT_MS = 300000; // §3.2: the documented connectionTimeoutMs
  // Reconnecting like a phone app: the first retry goes at once (most drops are brief), then
  // exponential backoff with full jitter, capped at a few seconds while someone looks at the page
  // (Amplify caps at 5 s too, PROTOCOL §3.1); a hidden or offline page backs off further, and the
  // browser's `online` and `visibilitychange` events cut any wait short.
  const BACKOFF_BASE_MS = 1000;
  const BACKOFF_CAP_MS = 5000;
  const BACKOFF_IDLE_CAP_MS = 30000; // hidden page, or the browser knows it is offline
  const STABLE_MS = 10000; // a connection that lived this long resets the backoff
  // §3.3: the server sends `ka` every 60 s. A page waking up after a longer silence has a dead link
  // (a phone asleep keeps a socket that looks open).
  const STALE_MS = 65000;
  // §3.1: a connection_error of these kinds would fail again: it is not retried.
  const FATAL_TYPES = ["UnauthorizedException", "BadRequestException"];
  const FATAL_CODES = [400, 401, 403];
  const OPEN = 1; // WebSocket.OPEN, in browsers and in `ws`
  const SEEN_OFFSETS = 1024; // §12: offsets remembered per subscription, to drop a repeated event
  const noop = () => {};

  /** An error carrying the protocol's `errors` array (§2.3, §3); `errorType` is the first one's. */
  class RealtimeError extends Error {
    constructor(errors, type, message) {
      const list = Array.isArray(errors) && errors.length ? errors : [{ errorType: type, message }];
      super(list.map((e) => (e.message ? `${e.errorType}: ${e.message}` : e.errorType)).join("; "));
      this.name = "RealtimeError";
      this.errors = list;
      this.errorType = list[0].errorType;
    }
  }

  // §3.1: the authorization object travels as base64url JSON without "=" padding.
  function base64url(text) {
    let binary = "";
    for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // Operation ids (§3.4). randomUUID needs a secure context; getRandomValues does not.
  function uuid() {
    if (root.crypto.randomUUID) return root.crypto.randomUUID();
    const b = root.crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  const isHidden = () => Boolean(root.document && root.document.visibilityState === "hidden");
  const isOffline = () => Boolean(root.navigator && root.navigator.onLine === false);

  // §1: https://host/event <-> wss://host/event/realtime (and http <-> ws, for development).
  function endpoints({ url, httpEndpoint }) {
    if (!url && !httpEndpoint) throw new TypeError("RealtimeClient needs url or httpEndpoint");
    const base = root.location ? root.location.href : undefined;
    if (url) {
      url = new URL(url, base).href;
      httpEndpoint = httpEndpoint || url.replace(/^ws/, "http").replace(/\/realtime\/?$/, "");
      httpEndpoint = httpEndpoint.replace(".appsync-realtime-api.", ".appsync-api.");
      return { url, httpEndpoint: new URL(httpEndpoint, base).href };
    }
    httpEndpoint = new URL(httpEndpoint, base).href;
    url = httpEndpoint.replace(/^http/, "ws").replace(".appsync-api.", ".appsync-realtime-api.");
    return { url: url.replace(/\/$/, "") + "/realtime", httpEndpoint };
  }

  // §2.1: each event goes out as the JSON text of one value.
  const serialize = (events) => (Array.isArray(events) ? events : [events]).map((e) => JSON.stringify(e));

  function parseEvent(text) {
    try {
      return JSON.parse(text);
    } catch {
      return text; // not JSON: hand over the raw string
    }
  }

  class Subscription {
    constructor(client, channel, onEvent, onError, options) {
      this.id = uuid();
      this.channel = channel;
      this.active = false; // acknowledged on the current connection
      this.position = null; // §12: {offset, epoch} of the last event, on a namespace with history
      this._client = client;
      this._onEvent = onEvent;
      this._onError = onError;
      this._onRecovery = (options && options.onRecovery) || noop;
      this._arm();
    }

    // §12: the data frame's offset; false for one already seen (never handed over twice). Events
    // of one channel published through two server processes may arrive out of order: the
    // position is the highest offset seen, and a lower one that was not seen still goes out.
    _advance(offset) {
      if (typeof offset !== "number") return true;
      const seen = this._seen || (this._seen = new Set());
      if (seen.has(offset)) return false;
      seen.add(offset);
      if (seen.size > SEEN_OFFSETS) seen.delete(seen.values().next().value);
      if (!this.position) {
        // Live events may come before subscribe_success: remember the last one for it.
        this._early = Math.max(this._early || 0, offset);
      } else if (offset > this.position.offset) {
        this.position = { offset, epoch: this.position.epoch };
      }
      return true;
    }

    // §12: a subscribe_success of a namespace with history names the stream's position.
    _located(msg) {
      const early = this._early || 0;
      this._early = 0;
      if (typeof msg.epoch !== "string") return;
      // Recovered: the replay follows and moves the position; otherwise start from the server's.
      if (msg.recovered === true && this.position) return;
      // Another epoch numbers its events afresh.
      if (this.position && this.position.epoch !== msg.epoch) this._seen = null;
      this.position = { offset: Math.max(msg.offset, early), epoch: msg.epoch };
    }

    // `ready` follows the current subscribe attempt; a settled promise is replaced on re-subscribe.
    _arm() {
      if (this.ready && !this._settled) return;
      this._settled = false;
      this.ready = new Promise((resolve, reject) => {
        this._resolve = resolve;
        this._reject = reject;
      });
      this.ready.catch(noop); // failures also reach onError: never an unhandled rejection
    }

    _settle(error) {
      if (this._settled) return;
      this._settled = true;
      this.active = !error;
      error ? this._reject(error) : this._resolve(this);
    }

    unsubscribe() {
      this._client._unsubscribe(this);
    }
  }

  class RealtimeClient {
    constructor(options = {}) {
      Object.assign(this, endpoints(options));
      this.host = new URL(this.httpEndpoint).host; // §3.1: `host` names the HTTP endpoint
      this.auth = options.auth || {};
      this.WebSocket = options.WebSocket || root.WebSocket;
      this.fetch = options.fetch || (root.fetch && root.fetch.bind(root));
      this.onStateChange = options.onStateChange || null;
      this.onError = options.onError || null;
      this.connectionTimeoutMs = options.connectionTimeoutMs || 0; // if set, overrides the server's
      // A live show may retry sooner than the default (every drop costs a moment of the show).
      this.maxRetryDelayMs = options.maxRetryDelayMs > 0 ? options.maxRetryDelayMs : BACKOFF_CAP_MS;
      this.state = "closed";
      this._ws = null;
      this._headers = {};
      this._subs = new Map(); // id -> Subscription: every live subscription
      this._pending = new Map(); // id -> {resolve, reject}: WebSocket publishes awaiting a reply
      this._waiters = []; // connect() calls awaiting connection_ack
      this._timers = {};
      this._attempt = 0;
      this._connectedAt = 0;
      this._lastSeen = 0;
      this._onBrowserEvent = null; // the online/offline/visibilitychange listener, while open
    }

    /** Resolves once connected (connection_ack); rejects if the client closes first. */
    connect() {
      if (this.state === "connected") return Promise.resolve();
      const connected = new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
      if (this.state === "closed") {
        this._listen(true);
        this._setState("connecting");
        this._open();
      }
      return connected;
    }

    /** Subscribe to a channel, wildcards allowed (§3.4, §4); connects if needed. */
    subscribe(channel, onEvent, onError, options) {
      const sub = new Subscription(this, channel, onEvent, onError, options);
      this._subs.set(sub.id, sub);
      if (this.state === "connected") this._sendSubscribe(sub);
      else if (this.state === "closed") this.connect().catch(noop);
      return sub;
    }

    /** Publish 1-5 events over the WebSocket (§3.8); resolves with {successful, failed}. */
    async publish(channel, events) {
      await this.connect();
      const id = uuid();
      const frame = { type: "publish", id, channel, events: serialize(events), authorization: this._auth() };
      return new Promise((resolve, reject) => {
        this._pending.set(id, { resolve, reject });
        if (this._send(frame)) return;
        this._pending.delete(id);
        reject(new RealtimeError(null, "ConnectionClosed", "the connection closed before publishing"));
      });
    }

    /** Publish 1-5 events with POST /event (§2); resolves with {successful, failed}. */
    async httpPublish(channel, events) {
      const response = await this.fetch(this.httpEndpoint, {
        method: "POST",
        headers: { "content-type": "application/json", ...(await this._resolveAuth()) },
        body: JSON.stringify({ channel, events: serialize(events) }),
      });
      const body = await response.json().catch(() => null);
      // §2.3: failures are {"errors":[{errorType, message}]}, with an x-amzn-ErrorType header.
      if (!response.ok || !body || (Array.isArray(body.errors) && body.errors.length)) {
        const type = response.headers.get("x-amzn-ErrorType") || `HTTP${response.status}`;
        const error = new RealtimeError(body && body.errors, type, body ? undefined : "the body is not JSON");
        error.status = response.status;
        throw error;
      }
      return { successful: body.successful || [], failed: body.failed || [] };
    }

    /** Close for good: no reconnect, subscriptions dropped, pending operations rejected. */
    close() {
      this._shutdown(null);
      this._subs.clear();
    }

    // -- the connection -------------------------------------------------------

    async _resolveAuth() {
      return { ...(await (typeof this.auth === "function" ? this.auth() : this.auth)) };
    }

    _auth() {
      return { host: this.host, ...this._headers }; // §5.2
    }

    async _open() {
      let ws;
      try {
        this._headers = await this._resolveAuth(); // fresh credentials for every connection
        if (this.state === "closed" || this._ws) return; // close() or connect() ran meanwhile
        // §3.1: credentials travel in a `header-` subprotocol, offered with aws-appsync-event-ws.
        const header = "header-" + base64url(JSON.stringify(this._auth()));
        ws = this._ws = new this.WebSocket(this.url, [SUBPROTOCOL, header]);
      } catch (error) {
        return this._reconnect(error);
      }
      ws.onopen = () => this._send({ type: "connection_init" }); // §3.2
      ws.onmessage = (message) => this._onMessage(ws, message.data);
      ws.onerror = noop; // a close event follows
      ws.onclose = (event) => this._closed(ws, `socket closed (${event.code})`);
      const noAck = new RealtimeError(null, "TimeoutError", "no connection_ack");
      this._timers.ack = setTimeout(() => this._closed(ws, noAck), ACK_TIMEOUT_MS);
    }

    _onMessage(ws, raw) {
      if (ws !== this._ws) return;
      this._lastSeen = Date.now(); // §3.3: any frame, ka or data, proves the link alive
      let msg;
      try {
        msg = JSON.parse(String(raw));
      } catch (error) {
        return this._emitError(new RealtimeError(null, "MalformedMessage", "a frame is not JSON"));
      }
      const sub = this._subs.get(msg.id);
      const error = () => new RealtimeError(msg.errors, msg.type);
      switch (msg.type) {
        case "connection_ack":
          return this._acked(msg);
        case "connection_error":
          return this._connectionError(ws, error());
        case "data": // §3.5: `event` is the JSON text of one event
          return sub && sub._advance(msg.offset) && this._call(sub._onEvent, parseEvent(msg.event), sub);
        case "subscribe_success":
          if (!sub) return;
          sub._located(msg);
          sub._settle(null);
          if (typeof msg.recovered === "boolean") this._call(sub._onRecovery, msg.recovered, sub);
          return;
        case "subscribe_error": // §3.4: only this subscription fails, and it is not retried
          if (!sub) return;
          this._subs.delete(sub.id);
          sub._settle(error());
          return this._subError(sub, error());
        case "broadcast_error": // §3.6
          return sub && this._subError(sub, error());
        case "publish_success":
        case "publish_error":
        case "error": {
          // §3.8: a publish settles on a reply with its own id; §3.9: an `error` may carry one.
          const pending = this._pending.get(msg.id);
          if (!pending) return msg.type === "error" && this._emitError(error());
          this._pending.delete(msg.id);
          if (msg.type !== "publish_success") return pending.reject(error());
          return pending.resolve({ successful: msg.successful || [], failed: msg.failed || [] });
        }
        default: // ka, unsubscribe_success, unsubscribe_error
      }
    }

    _acked(msg) {
      clearTimeout(this._timers.ack);
      // §3.2: connectionTimeoutMs is top-level (Swift reads it from `payload`).
      const fromServer = msg.connectionTimeoutMs || (msg.payload && msg.payload.connectionTimeoutMs);
      this._timeoutMs = this.connectionTimeoutMs || fromServer || DEFAULT_TIMEOUT_MS;
      this._connectedAt = Date.now();
      this._watchdog();
      // §10: after a reconnect, every live subscription is sent again with the same id.
      for (const sub of this._subs.values()) this._sendSubscribe(sub);
      this._setState("connected");
      for (const waiter of this._waiters.splice(0)) waiter.resolve();
    }

    // §3.3: no frame for connectionTimeoutMs means a dead link: replace it.
    _watchdog() {
      const wait = this._lastSeen + this._timeoutMs - Date.now();
      if (wait > 0) return (this._timers.watchdog = setTimeout(() => this._watchdog(), wait));
      const silent = `no frame for ${this._timeoutMs} ms`;
      this._closed(this._ws, new RealtimeError(null, "KeepAliveTimeout", silent));
    }

    _connectionError(ws, error) {
      const { errorType, errorCode } = error.errors[0];
      // §3.1: an authorization failure would fail again: surface it instead of retrying.
      if (FATAL_TYPES.includes(errorType) || FATAL_CODES.includes(errorCode)) {
        this._shutdown(error);
        this._emitError(error);
      } else {
        this._closed(ws, error);
      }
    }

    // The socket is gone, or given up on (no ack, silent link, retryable error): reconnect.
    _closed(ws, reason) {
      if (ws !== this._ws) return;
      this._release(ws);
      const error =
        reason instanceof RealtimeError ? reason : new RealtimeError(null, "ConnectionClosed", reason);
      this._failPending(error);
      for (const sub of this._subs.values()) sub.active = false;
      this._reconnect(error);
    }

    // The first retry at once, then full jitter: a delay in [0, min(cap, base * 2^(attempt-2))].
    _reconnect(error) {
      if (this.state === "closed") return;
      if (this._connectedAt && Date.now() - this._connectedAt >= STABLE_MS) this._attempt = 0;
      this._connectedAt = 0;
      const attempt = ++this._attempt;
      const idle = isHidden() || isOffline();
      const cap = Math.min(idle ? BACKOFF_IDLE_CAP_MS : this.maxRetryDelayMs, BACKOFF_BASE_MS * 2 ** (attempt - 2));
      // Offline, an attempt would fail at once: wait for `online` (or the long cap, in case it never comes).
      const delayMs = attempt === 1 && !isOffline() ? 0 : Math.round(Math.random() * cap);
      this._setState("reconnecting", { attempt, delayMs, error });
      this._timers.retry = setTimeout(() => this._open(), delayMs);
    }

    // The browser's hints about the network: it knows when it goes offline and when the page is seen.
    _listen(on) {
      const doc = root.document;
      if (typeof root.addEventListener !== "function" || !doc) return; // Node: no such events
      if (on && !this._onBrowserEvent) {
        this._onBrowserEvent = (event) => this._browserEvent(event.type);
        root.addEventListener("online", this._onBrowserEvent);
        root.addEventListener("offline", this._onBrowserEvent);
        doc.addEventListener("visibilitychange", this._onBrowserEvent);
      } else if (!on && this._onBrowserEvent) {
        root.removeEventListener("online", this._onBrowserEvent);
        root.removeEventListener("offline", this._onBrowserEvent);
        doc.removeEventListener("visibilitychange", this._onBrowserEvent);
        this._onBrowserEvent = null;
      }
    }

    _browserEvent(type) {
      if (type === "offline") {
        // The socket may look open for minutes; say so now and retry once the network is back.
        if (this._ws) this._closed(this._ws, "the browser went offline");
        return;
      }
      if (type === "visibilitychange" && isHidden()) return;
      if (this.state === "connected") {
        const silent = Date.now() - this._lastSeen;
        if (silent <= STALE_MS) return;
        return this._closed(this._ws, new RealtimeError(null, "KeepAliveTimeout", `no frame for ${silent} ms`));
      }
      // Online again, or looked at again: retry now instead of at the end of the backoff, and
      // start the backoff over (this is a first retry).
      if (this.state !== "reconnecting" || this._ws) return; // closed, or an attempt is under way
      clearTimeout(this._timers.retry);
      this._attempt = 1;
      this._setState("reconnecting", { attempt: 1, delayMs: 0 });
      this._open();
    }

    _shutdown(error) {
      this._release(this._ws, true);
      const reason = error || new RealtimeError(null, "ConnectionClosed", "the client was closed");
      this._failPending(reason);
      for (const waiter of this._waiters.splice(0)) waiter.reject(reason);
      for (const sub of this._subs.values()) {
        sub._settle(reason);
        sub.active = false;
      }
      this._attempt = this._connectedAt = 0;
      this._listen(false);
      this._setState("closed", error ? { error } : undefined);
    }

    // Forget a socket and the timers. An orderly close sends 1000 (§3.10); a dead link cannot
    // finish a closing handshake, so `ws` terminates it (browsers have no terminate()).
    _release(ws, orderly) {
      for (const name of Object.keys(this._timers)) clearTimeout(this._timers[name]);
      this._timers = {};
      if (ws === this._ws) this._ws = null;
      if (!ws) return;
      ws.onopen = ws.onmessage = ws.onclose = noop; // onerror stays: `ws` throws without a listener
      if (!orderly && typeof ws.terminate === "function") ws.terminate();
      else if (ws.readyState <= OPEN) ws.close(1000);
    }

    // -- helpers --------------------------------------------------------------

    _sendSubscribe(sub) {
      sub.active = false;
      sub._arm();
      const frame = { type: "subscribe", id: sub.id, channel: sub.channel, authorization: this._auth() };
      if (sub.position) frame.since = sub.position; // §12: replay what was missed
      this._send(frame);
    }

    _unsubscribe(sub) {
      if (!this._subs.delete(sub.id)) return;
      sub.active = false;
      if (this.state === "connected") this._send({ type: "unsubscribe", id: sub.id }); // §3.7
    }

    _send(frame) {
      if (!this._ws || this._ws.readyState !== OPEN) return false;
      this._ws.send(JSON.stringify(frame));
      return true;
    }

    _failPending(error) {
      for (const pending of this._pending.values()) pending.reject(error);
      this._pending.clear();
    }

    _setState(state, detail) {
      if (state === this.state && !detail) return;
      this.state = state;
      this._call(this.onStateChange, state, detail || {});
    }

    _subError(sub, error) {
      if (sub._onError) this._call(sub._onError, error, sub);
      else this._emitError(error);
    }

    _emitError(error) {
      if (this.onError) this._call(this.onError, error);
      else if (root.console) root.console.error(error);
    }

    // A throwing callback must not break the client: rethrow it on its own task.
    _call(fn, ...args) {
      try {
        if (fn) fn(...args);
      } catch (error) {
        setTimeout(() => {
          throw error;
        });
      }
    }
  }

  RealtimeClient.RealtimeError = RealtimeError;
  root.RealtimeClient = RealtimeClient;
  // CommonJS (a .js file outside a "type": "module" package); ES modules use realtime.mjs.
  if (typeof module === "object" && module && module.exports) {
    module.exports = { RealtimeClient, RealtimeError };
  }
})(typeof globalThis !== "undefined" ? globalThis : this);
