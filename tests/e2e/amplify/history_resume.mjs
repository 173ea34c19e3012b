// The official Amplify JS `events` client, unmodified, on a history-enabled namespace.
//
// Subscribes `/chat/*` on one server process, while another process publishes over HTTP
// (RT_PUBLISH_URL, the same Redis behind both). Its socket is then killed; ten events are
// published while it is away; Amplify reconnects by itself and re-subscribes with the same
// subscription id, and must receive exactly those ten, in order, then live events.
// Records every event the subscription receives and the raw data frames on the wire (which
// carry the `offset` extension field Amplify must ignore). Prints one JSON summary line;
// tests/e2e/test_amplify.py asserts it in full.
import {
  API_KEY,
  amplifyConfig,
  changed,
  describeError,
  finish,
  pause,
  settle,
  until,
  watchdog,
  withTimeout,
} from './common.mjs';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

const PUBLISH_URL = process.env.RT_PUBLISH_URL;
// Amplify waits about 5 s before it reconnects (PROTOCOL §10).
const RECONNECT_MS = 15000;
const QUIET_MS = 500;

const sockets = [];
const Base = globalThis.WebSocket;
globalThis.WebSocket = class RecordingWebSocket extends Base {
  constructor(...args) {
    super(...args);
    this.dataFrames = [];
    sockets.push(this);
    this.on('message', (raw) => {
      const frame = JSON.parse(raw.toString());
      if (frame.type === 'data' || frame.type === 'subscribe_success') this.dataFrames.push(frame);
    });
  }
};

const summary = { ready: null, received: [], errors: [], sockets: 0, frames: [] };
watchdog(40000, () => summary);

async function post(channel, values) {
  const response = await fetch(PUBLISH_URL, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': API_KEY },
    body: JSON.stringify({ channel, events: values.map((value) => JSON.stringify(value)) }),
  });
  if (response.status !== 200) throw new Error(`publish answered ${response.status}`);
}

const receivedAtLeast = (n) => () => summary.received.length >= n;

async function main() {
  Amplify.configure(amplifyConfig());
  const channel = await withTimeout(events.connect('/chat/*'), 'connect /chat/*');
  const sub = channel.subscribe({
    next: (message) => {
      summary.received.push(message.event);
      changed();
    },
    error: (error) => summary.errors.push(describeError(error)),
  });
  summary.ready = await settle(sub.ready.then(() => true), 'subscription ready');

  await post('/chat/a', [{ before: 1 }]);
  await post('/chat/b', [{ before: 2 }]);
  await until(receivedAtLeast(2), 'events before the outage');

  // The network drops: the socket dies under Amplify, which reconnects on its own.
  sockets[0].terminate();
  // Let the server see the close before publishing, as it would after a real drop.
  await pause(300);
  for (let i = 0; i < 10; i += 1) {
    await post(i % 2 ? '/chat/b' : '/chat/a/deep', [{ missed: i }]);
  }
  await until(receivedAtLeast(12), 'the missed events after the reconnect', RECONNECT_MS);
  await post('/chat/a', [{ live: 1 }]);
  await until(receivedAtLeast(13), 'a live event after the replay');
  await pause(QUIET_MS);

  summary.sockets = sockets.length;
  // The second socket's frames: subscribe_success, then the replay and the live event.
  summary.frames = sockets.length > 1 ? sockets[1].dataFrames.map((f) => ({ type: f.type, offset: f.offset, recovered: f.recovered })) : [];
  summary.received = [...summary.received];
  sub.unsubscribe();
  await channel.close();
  summary.closeAll = await settle(events.closeAll(), 'closeAll');
}

main().then(
  () => finish(summary),
  (error) => finish({ ...summary, fatal: describeError(error) }, 1),
);
