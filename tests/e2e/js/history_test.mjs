// realtime.js on a namespace with history (PROTOCOL §12): recovery with `since` after a drop.
//
//   node history_test.mjs '<config JSON>'     config: {httpEndpoint, apiKey, channel, limit}
//
// Three outages of the subscriber's link; while each lasts the script publishes over HTTP:
//   recover: 20 events, fewer than the limit: all replayed in order, recovered true, then live;
//   limit:   150 events, more than the limit (100): nothing replayed, recovered false;
//   flush:   the store loses the history (the test flushes Redis when the script says "flush" on
//            stdout with {"request":"flush"}, and answers on stdin): nothing replayed, recovered false, a new epoch.
// Prints one JSON summary on stdout; tests/e2e/test_js_client.py asserts it in full.

import readline from "node:readline";
import WebSocket from "ws";

import { RealtimeClient } from "../../../realtime/static/realtime/realtime.mjs";

const config = JSON.parse(process.argv[2]);
const SETTLE_MS = 400; // after the expected events arrived, wait this long for duplicates
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function waitFor(predicate, label, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${label}`);
    await sleep(20);
  }
}

// The subscriber's sockets; while `down`, new ones go nowhere (the network is out).
const network = { down: false, sockets: [] };
class FlakyWebSocket extends WebSocket {
  constructor(url, protocols, options) {
    super(network.down ? "ws://127.0.0.1:9/" : url, protocols, options);
    network.sockets.push(this);
  }
}

const publisher = new RealtimeClient({ httpEndpoint: config.httpEndpoint, auth: { "x-api-key": config.apiKey } });
async function publishRange(first, count) {
  for (let n = first; n < first + count; n += 5) {
    const batch = [];
    for (let i = n; i < Math.min(n + 5, first + count); i += 1) batch.push({ n: i });
    await publisher.httpPublish(config.channel, batch);
  }
}

async function outage(during) {
  network.down = true;
  network.sockets.at(-1).terminate();
  await waitFor(() => subscriber.state === "reconnecting", "the drop");
  await during();
  network.down = false;
  await waitFor(() => subscriber.state === "connected" && recoveries.length > seen, "the reconnect", 20000);
  seen = recoveries.length;
}

const subscriber = new RealtimeClient({
  httpEndpoint: config.httpEndpoint,
  auth: { "x-api-key": config.apiKey },
  WebSocket: FlakyWebSocket,
});
const received = [];
const recoveries = [];
let seen = 0;
const sub = subscriber.subscribe(
  config.channel,
  (event) => received.push(event.n),
  () => {},
  { onRecovery: (recovered) => recoveries.push(recovered) },
);
const summary = {};

async function main() {
  await sub.ready;
  const epoch = sub.position.epoch;
  summary.start = { offset: sub.position.offset, epochIsHex: /^[0-9a-f]{16}$/.test(epoch) };
  await publishRange(0, 3);
  await waitFor(() => received.length === 3, "the first events");
  summary.beforeOutage = { received: [...received], position: { ...sub.position, epoch: sub.position.epoch === epoch } };

  await outage(() => publishRange(3, 20));
  await waitFor(() => received.length === 23, "the replay");
  await publishRange(23, 1);
  await waitFor(() => received.length === 24, "a live event after the replay");
  await sleep(SETTLE_MS);
  summary.recover = { recovered: recoveries.at(-1), received: [...received], offset: sub.position.offset };

  await outage(() => publishRange(24, 150));
  await sleep(SETTLE_MS);
  summary.limit = {
    recovered: recoveries.at(-1),
    replayed: received.length - 24,
    offset: sub.position.offset,
    sameEpoch: sub.position.epoch === epoch,
  };

  await outage(async () => {
    process.stdout.write(`${JSON.stringify({ request: "flush" })}\n`);
    await lines.next(); // the test flushed Redis
    await publishRange(174, 2);
  });
  await sleep(SETTLE_MS);
  summary.flush = {
    recovered: recoveries.at(-1),
    replayed: received.length - 24,
    offset: sub.position.offset,
    epochChanged: sub.position.epoch !== epoch,
  };
  await publishRange(176, 1);
  await waitFor(() => received.length === 25, "a live event after the flush");
  summary.afterFlush = { last: received.at(-1), offset: sub.position.offset };
  summary.recoveries = [...recoveries];
}

main().then(
  () => {
    subscriber.close();
    process.stdout.write(`${JSON.stringify(summary)}\n`, () => process.exit(0));
  },
  (error) => {
    process.stdout.write(`${JSON.stringify({ ...summary, fatal: String(error) })}\n`, () => process.exit(1));
  },
);
