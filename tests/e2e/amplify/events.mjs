// The official Amplify JS `events` client, unmodified, against the server over wss://.
//
// Connects a concrete channel and `/default/*`, publishes over the WebSocket
// (channel.publish) and over HTTP (events.post), and records every event each
// subscription receives, in arrival order. Then the same operations with a wrong
// API key, which must be refused cleanly without harming the connection. Prints
// one JSON summary line; tests/e2e/test_amplify.py asserts it in full.
import {
  WRONG_KEY,
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

const ROOM = '/default/amplify/room';
const DEEP = '/default/amplify/room/deeper';
// After the last expected event, how long to watch for duplicates or strays.
const QUIET_MS = 300;

// One value per JSON kind. Amplify sends an array argument as a batch of events,
// so an array *event* is wrapped in an outer array (asEvent); batches are sent as is.
const WS_SINGLE = [
  { message: 'Hello world!', n: 1, nested: { ok: true, none: null } },
  'Hola ¿qué tal? ✓',
  42.5,
  [1, 'two', { three: 3 }, [4]],
  true,
  null,
];
const WS_BATCH = [{ batch: 1 }, 'two', 3, [4], false];
const HTTP_SINGLE = [{ via: 'http', list: [1, 2] }, 'http string', -7, ['a', 'b']];
const HTTP_BATCH = [{ batch: 'http' }, 0, 'last'];
const DEEP_EVENT = { deep: true };
const AFTER_REFUSALS = { still: 'open' };

const summary = {
  ready: {},
  wsPublish: [],
  post: [],
  received: { room: [], wild: [] },
  subscriptionErrors: { room: [], wild: [] },
  wrongKey: {},
};
watchdog(25000, () => summary);

const asEvent = (value) => (Array.isArray(value) ? [value] : value);

function observe(name) {
  return {
    next: (message) => {
      summary.received[name].push(message.event);
      changed();
    },
    error: (error) => summary.subscriptionErrors[name].push(describeError(error)),
  };
}

function receivedAtLeast(room, wild) {
  return () => summary.received.room.length >= room && summary.received.wild.length >= wild;
}

async function main() {
  Amplify.configure(amplifyConfig());

  const room = await withTimeout(events.connect(ROOM), 'connect room');
  const wild = await withTimeout(events.connect('/default/*'), 'connect /default/*');
  const roomSub = room.subscribe(observe('room'));
  const wildSub = wild.subscribe(observe('wild'));
  summary.ready.room = await settle(roomSub.ready.then(() => true), 'room subscription ready');
  summary.ready.wild = await settle(wildSub.ready.then(() => true), 'wild subscription ready');

  for (const value of WS_SINGLE) {
    summary.wsPublish.push(await settle(room.publish(asEvent(value)), 'ws publish'));
  }
  summary.wsPublish.push(await settle(room.publish(WS_BATCH), 'ws publish batch'));
  for (const value of HTTP_SINGLE) {
    summary.post.push(await settle(events.post(ROOM, asEvent(value)), 'post'));
  }
  summary.post.push(await settle(events.post(ROOM, HTTP_BATCH), 'post batch'));
  // Below the room: only the wildcard subscription matches.
  summary.post.push(await settle(events.post(DEEP, DEEP_EVENT), 'post deep'));

  const roomCount = WS_SINGLE.length + WS_BATCH.length + HTTP_SINGLE.length + HTTP_BATCH.length;
  summary.allArrived = await settle(
    until(receivedAtLeast(roomCount, roomCount + 1), 'all events').then(() => true),
    'all events',
  );

  // A wrong key on each kind of operation, on the valid connection.
  const badSubErrors = [];
  const badSub = room.subscribe(
    {
      next: (message) => badSubErrors.push({ unexpectedData: message.event }),
      error: (error) => badSubErrors.push(describeError(error)),
    },
    { apiKey: WRONG_KEY },
  );
  summary.wrongKey.subscribeReady = await settle(badSub.ready, 'wrong-key subscribe');
  summary.wrongKey.subscribeErrorCallback = badSubErrors;
  summary.wrongKey.wsPublish = await settle(room.publish({ wrong: 'key' }, { apiKey: WRONG_KEY }), 'wrong-key publish');
  summary.wrongKey.post = await settle(events.post(ROOM, { wrong: 'key' }, { apiKey: WRONG_KEY }), 'wrong-key post');
  // The socket survived the refusals: a valid publish still reaches both subscriptions.
  summary.wrongKey.thenValidPublish = await settle(room.publish(AFTER_REFUSALS), 'publish after refusals');
  summary.allArrivedAfterRefusals = await settle(
    until(receivedAtLeast(roomCount + 1, roomCount + 2), 'event after refusals').then(() => true),
    'event after refusals',
  );

  // Nothing more arrives: no duplicates, nothing from the refused operations.
  await pause(QUIET_MS);
  summary.received = { room: [...summary.received.room], wild: [...summary.received.wild] };

  roomSub.unsubscribe();
  wildSub.unsubscribe();
  await room.close();
  await wild.close();
  summary.closeAll = await settle(events.closeAll(), 'closeAll');
}

main().then(
  () => finish(summary),
  (error) => finish({ ...summary, fatal: describeError(error) }, 1),
);
