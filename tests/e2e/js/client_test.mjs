// Drives the shipped realtime.js client under Node against a running server.
//
//   node client_test.mjs '<config JSON>'
//
// config: {httpEndpoint, apiKey, prefix, events: {ws, http, deep, reconnect, backoff, watchdog, unsubscribe}}
// Prints one JSON summary on stdout; tests/e2e/test_js_client.py asserts it in full. Values that
// vary between runs (ids, delays) are reduced to facts (booleans, counts) here.
//
// Connection drops are real network drops: the subscriber talks to the server through a TCP
// proxy in this process, which can cut every connection (both ends see it), refuse new ones, or
// freeze them (a silent link, for the keep-alive watchdog).

import net from "node:net";
import WebSocket from "ws";

import { RealtimeClient } from "../../../realtime/static/realtime/realtime.mjs";

const config = JSON.parse(process.argv[2]);
const DEADLINE_MS = 60000;
const SETTLE_MS = 400; // after the expected events arrived, wait this long for duplicates
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(predicate, label, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${label}`);
    await sleep(20);
  }
}

/** A TCP proxy to the server that can drop, refuse or freeze connections. */
class Proxy {
  constructor(target) {
    this.target = target;
    this.connections = new Set();
    this.refuse = 0;
    this.accepted = 0;
  }

  async listen() {
    this.server = net.createServer((client) => {
      this.accepted += 1;
      if (this.refuse > 0) {
        this.refuse -= 1;
        client.destroy();
        return;
      }
      const upstream = net.connect(this.target.port, this.target.hostname);
      const connection = { client, upstream, frozen: false };
      client.on("data", (chunk) => connection.frozen || upstream.write(chunk));
      upstream.on("data", (chunk) => connection.frozen || client.write(chunk));
      const end = () => {
        client.destroy();
        upstream.destroy();
        this.connections.delete(connection);
      };
      for (const socket of [client, upstream]) socket.on("close", end).on("error", end);
      this.connections.add(connection);
    });
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    const url = new URL(config.httpEndpoint);
    url.host = `127.0.0.1:${this.server.address().port}`;
    this.httpEndpoint = url.href;
  }

  cut() {
    for (const { client, upstream } of this.connections) client.destroy(), upstream.destroy();
  }

  freeze() {
    for (const connection of this.connections) connection.frozen = true;
  }

  close() {
    this.cut();
    this.server.close();
  }
}

/** A `ws` WebSocket that records what the client constructs and sends. */
function recording(log) {
  return class RecordingWebSocket extends WebSocket {
    constructor(url, protocols, options) {
      super(url, protocols, options);
      log.sockets.push({ url, protocols, socket: this });
    }

    send(data, ...rest) {
      log.sent.push(JSON.parse(data));
      return super.send(data, ...rest);
    }
  };
}

/** A client plus everything it reported: states, errors, sockets, frames sent. */
function makeClient(httpEndpoint, apiKey, extra = {}) {
  const log = { states: [], errors: [], sockets: [], sent: [] };
  const client = new RealtimeClient({
    httpEndpoint,
    auth: { "x-api-key": apiKey },
    WebSocket: recording(log),
    onStateChange: (state, detail) => log.states.push({ state, ...detail }),
    onError: (error) => log.errors.push(error.errorType),
    ...extra,
  });
  return { client, log };
}

/** Subscribe, collecting parsed events; resolves once subscribe_success arrived. */
async function collect(client, channel) {
  const received = [];
  const errors = [];
  const sub = client.subscribe(channel, (event) => received.push(event), (error) => errors.push(error.errorType));
  await sub.ready;
  return { sub, received, errors };
}

function publishFacts(result, count) {
  return {
    successful_indexes: result.successful.map((entry) => entry.index).sort((a, b) => a - b),
    identifiers_are_uuids: result.successful.every((entry) => UUID.test(entry.identifier)),
    failed: result.failed,
    expected_count: result.successful.length === count,
  };
}

async function errorOf(promise) {
  try {
    await promise;
    return null;
  } catch (error) {
    return { errorType: error.errorType, errors: error.errors, ...(error.status ? { status: error.status } : {}) };
  }
}

const decodeHeader = (protocol) =>
  JSON.parse(Buffer.from(protocol.slice("header-".length), "base64url").toString("utf8"));

// Wait for `subs` to receive `count` more events each, then a little longer for duplicates.
async function drain(subs, counts, label) {
  await waitFor(() => subs.every((s, i) => s.received.length >= counts[i]), label);
  await sleep(SETTLE_MS);
  return subs.map((s) => s.received.splice(0));
}

async function main() {
  const { events } = config;
  const summary = {};
  const target = new URL(config.httpEndpoint);
  const proxy = new Proxy(target);
  await proxy.listen();

  // The publisher connects directly; its handshake is checked against §3.1.
  const pub = makeClient(config.httpEndpoint, config.apiKey);
  await pub.client.connect();
  const [protocol, header] = pub.log.sockets[0].protocols;
  summary.handshake = {
    url: pub.log.sockets[0].url,
    protocols: [protocol, header.startsWith("header-") ? "header-…" : header],
    unpadded: !header.includes("="),
    authorization: decodeHeader(header),
    selected: pub.log.sockets[0].socket.protocol,
    first_frame: pub.log.sent[0],
    states: pub.log.states.map((s) => s.state),
  };

  // -- subscribe to a concrete channel and a wildcard, publish over WS and HTTP ----------
  const base = `/${config.prefix}`;
  const room = `${base}/room`;
  const sub = makeClient(proxy.httpEndpoint, config.apiKey);
  const concrete = await collect(sub.client, room);
  const wildcard = await collect(sub.client, `${base}/*`);
  const denied = sub.client.subscribe("/no-such-namespace/x", () => {});
  const wsResult = await pub.client.publish(room, events.ws);
  const httpResult = await pub.client.httpPublish(room, events.http);
  const deepResult = await pub.client.httpPublish(`${room}/deep`, events.deep);
  const counts = [events.ws.length + events.http.length, events.ws.length + events.http.length + events.deep.length];
  const [gotConcrete, gotWildcard] = await drain([concrete, wildcard], counts, "the first events");
  summary.pubsub = {
    ws_publish: publishFacts(wsResult, events.ws.length),
    http_publish: publishFacts(httpResult, events.http.length),
    deep_publish: publishFacts(deepResult, events.deep.length),
    concrete: gotConcrete,
    wildcard: gotWildcard,
    denied_subscription: await errorOf(denied.ready),
    subscriber_errors: sub.log.errors, // the denied subscription has no onError of its own
    subscriber_states: sub.log.states.map((s) => s.state),
  };

  // -- reconnect: the network drops; the client backs off, reconnects, re-subscribes -----
  const ids = [concrete.sub.id, wildcard.sub.id].sort();
  const sentBefore = sub.log.sent.length;
  const statesBefore = sub.log.states.length;
  proxy.cut();
  await waitFor(() => sub.log.states.length > statesBefore + 1 && sub.client.state === "connected", "reconnect");
  await Promise.all([concrete.sub.ready, wildcard.sub.ready]);
  const afterDrop = sub.log.states.slice(statesBefore);
  const resent = sub.log.sent.slice(sentBefore);
  await pub.client.publish(room, events.reconnect);
  const n = events.reconnect.length;
  const [reConcrete, reWildcard] = await drain([concrete, wildcard], [n, n], "events after the reconnect");
  summary.reconnect = {
    states: afterDrop.map((s) => s.state),
    attempt: afterDrop[0].attempt,
    delay_within_base: afterDrop[0].delayMs >= 0 && afterDrop[0].delayMs <= 1000,
    first_at_once: afterDrop[0].delayMs === 0,
    reason: afterDrop[0].error.errorType,
    resent_types: resent.map((frame) => frame.type),
    same_ids: resent.filter((f) => f.type === "subscribe").map((f) => f.id).sort().join() === ids.join(),
    active: [concrete.sub.active, wildcard.sub.active],
    concrete: reConcrete,
    wildcard: reWildcard,
  };

  // -- backoff: the next connection attempt is refused; delays stay under the growing cap --
  const statesMark = sub.log.states.length;
  proxy.refuse = 1;
  proxy.cut();
  await waitFor(() => sub.log.states.length > statesMark + 2 && sub.client.state === "connected", "backoff");
  await Promise.all([concrete.sub.ready, wildcard.sub.ready]);
  const retries = sub.log.states.slice(statesMark).filter((s) => s.state === "reconnecting");
  await pub.client.httpPublish(room, events.backoff);
  const m = events.backoff.length;
  const [boConcrete, boWildcard] = await drain([concrete, wildcard], [m, m], "events after the backoff");
  summary.backoff = {
    attempts: retries.map((s) => s.attempt),
    delays_within_caps: retries.every((s) => s.delayMs >= 0 && s.delayMs <= 1000 * 2 ** (s.attempt - 1)),
    // After the first retry: at most 1 s, 2 s, 4 s, then never more than 5 s while someone looks.
    delays_within_phone_caps: retries.every((s) => s.delayMs <= Math.min(5000, 1000 * 2 ** (s.attempt - 2))),
    refused: proxy.refuse === 0,
    concrete: boConcrete,
    wildcard: boWildcard,
  };

  // -- unsubscribe: the concrete subscription stops, the wildcard goes on ----------------
  concrete.sub.unsubscribe();
  await pub.client.publish(room, events.unsubscribe);
  const [unConcrete, unWildcard] = await drain([concrete, wildcard], [0, events.unsubscribe.length], "unsub");
  summary.unsubscribe = {
    sent: sub.log.sent.some((frame) => frame.type === "unsubscribe" && frame.id === concrete.sub.id),
    concrete: unConcrete,
    wildcard: unWildcard,
  };
  sub.client.close();
  summary.close = { state: sub.client.state, last_state: sub.log.states.at(-1).state };

  // -- keep-alive watchdog: a frozen link is detected and replaced -----------------------
  const silentProxy = new Proxy(target);
  await silentProxy.listen();
  // 5 s: long enough that a reconnect's own handshake on a busy machine (two suites' servers at once)
  // is not taken for a silent link too, short enough for the test.
  const watched = makeClient(silentProxy.httpEndpoint, config.apiKey, { connectionTimeoutMs: 5000 });
  const watchedSub = await collect(watched.client, room);
  const watchedMark = watched.log.states.length;
  silentProxy.freeze();
  await waitFor(() => watched.log.states.length > watchedMark + 1 && watched.client.state === "connected", "watchdog");
  await watchedSub.sub.ready;
  const watchdogStates = watched.log.states.slice(watchedMark);
  await pub.client.publish(room, events.watchdog);
  const [wdReceived] = await drain([watchedSub], [events.watchdog.length], "events after the watchdog");
  summary.watchdog = {
    states: watchdogStates.map((s) => s.state),
    reason: watchdogStates[0].error.errorType,
    sockets: watched.log.sockets.length,
    received: wdReceived,
  };
  watched.client.close();
  silentProxy.close();

  // -- publish errors over WS leave the connection usable ---------------------------------
  summary.publish_errors = {
    unknown_namespace: await errorOf(pub.client.publish("/no-such-namespace/x", [1])),
    six_events: await errorOf(pub.client.publish(room, [1, 2, 3, 4, 5, 6])),
    wildcard_channel: await errorOf(pub.client.publish(`${base}/*`, [1])),
    still_connected: pub.client.state,
    then_publishes: (await pub.client.publish(room, [1])).successful.length,
  };
  pub.client.close();

  // -- a wrong key: connection_error UnauthorizedException, surfaced, never retried -------
  const bad = makeClient(config.httpEndpoint, `${config.apiKey}-wrong`);
  const connectError = await errorOf(bad.client.connect());
  await sleep(2500); // longer than any first backoff delay: a retry would show up here
  summary.unauthorized = {
    connect_error: connectError,
    states: bad.log.states.map((s) => s.state),
    on_error: bad.log.errors,
    sockets: bad.log.sockets.length,
    state: bad.client.state,
    http_publish: await errorOf(bad.client.httpPublish(room, [1])),
  };

  // -- a shorter cap: maxRetryDelayMs bounds every wait while the page is looked at -------
  proxy.refuse = 1000;
  const capped = makeClient(proxy.httpEndpoint, config.apiKey, { maxRetryDelayMs: 150 });
  const cappedConnect = capped.client.connect().catch((error) => error);
  const retrying = () => capped.log.states.filter((s) => s.state === "reconnecting");
  await waitFor(() => retrying().length >= 6, "retries under a short cap");
  capped.client.close();
  await cappedConnect;
  proxy.refuse = 0;
  summary.short_cap = {
    attempts: retrying().length >= 6,
    delays_within_cap: retrying().every((s) => s.delayMs >= 0 && s.delayMs <= 150),
    first_at_once: retrying()[0].delayMs === 0,
  };

  proxy.close();
  return summary;
}

const timer = setTimeout(() => {
  console.log(JSON.stringify({ fatal: `deadline of ${DEADLINE_MS} ms exceeded` }));
  process.exit(2);
}, DEADLINE_MS);

main().then(
  (summary) => {
    clearTimeout(timer);
    console.log(JSON.stringify(summary));
    process.exit(0);
  },
  (error) => {
    clearTimeout(timer);
    console.log(JSON.stringify({ fatal: String(error && error.stack) }));
    process.exit(1);
  },
);
