// The official Amplify JS `events` client, unmodified, with a token auth mode instead of an API key.
//
//   node token_modes.mjs lambda   the token is passed as `authToken` (AppSync's Lambda authorizer;
//                                 the server's CUSTOM mode)
//   node token_modes.mjs oidc     the token comes from a custom Amplify token provider, as for an
//                                 OpenID Connect provider (the server's OIDC mode); no Cognito
//
// Environment, besides common.mjs's: RT_GOOD_TOKEN (accepted), RT_BAD_TOKEN (refused).
//
// First a connect with the bad token, which must be refused at once. Then, with the good token:
// a concrete channel and `/default/*` subscribed, events published over the WebSocket
// (channel.publish) and over HTTP (events.post), each recorded as received; then the bad token on
// each kind of operation over the same connection, refused cleanly without harming it. Prints one
// JSON summary line; tests/e2e/test_amplify_tokens.py asserts it in full.
import {
  EVENT_URL,
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
import { decodeJWT } from 'aws-amplify/auth';
import { events } from 'aws-amplify/data';

const MODE = process.argv[2];
if (MODE !== 'lambda' && MODE !== 'oidc') {
  process.stderr.write(`usage: node token_modes.mjs lambda|oidc (got ${MODE})\n`);
  process.exit(2);
}
const GOOD_TOKEN = required('RT_GOOD_TOKEN');
const BAD_TOKEN = required('RT_BAD_TOKEN');

const ROOM = `/default/${MODE}/room`;
const DEEP = `${ROOM}/deeper`;
const WILD = '/default/*';
// Below Amplify's retry schedule (6 attempts over ~6.5 s) and its 15 s ack wait.
const FAST_MS = 5000;
// After the last expected event, how long to watch for duplicates or strays.
const QUIET_MS = 300;

// Amplify sends an array argument as a batch, so an array *event* is wrapped (asEvent).
const WS_SINGLE = [
  { mode: MODE, n: 1, nested: { ok: true, none: null } },
  'Token ¿qué tal? ✓',
  7.25,
  [1, 'two', { three: 3 }, [4]],
  false,
  null,
];
const WS_BATCH = [{ batch: 'ws' }, 'two', 3];
const HTTP_SINGLE = [{ via: 'http', list: [1, 2] }, 'http string', -1, ['a', 'b']];
const HTTP_BATCH = [{ batch: 'http' }, 0, 'last'];
const DEEP_EVENT = { deep: true };
const AFTER_REFUSALS = { still: 'open' };

function required(name) {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`${name} is not set\n`);
    process.exit(2);
  }
  return value;
}

// -- how each mode carries the token ------------------------------------------

// oidc: Amplify asks its token provider for the access token before every operation
// (fetchAuthSession); withToken switches what the provider hands out.
let providedToken = GOOD_TOKEN;
const tokenProvider = {
  getTokens: async () => ({ accessToken: decodeJWT(providedToken) }),
};

function configure() {
  const resources = {
    API: { Events: { endpoint: EVENT_URL, region: 'us-east-1', defaultAuthMode: MODE } },
  };
  if (MODE === 'oidc') {
    Amplify.configure(resources, { Auth: { tokenProvider } });
  } else {
    Amplify.configure(resources);
  }
}

// Runs fn(options) with `token` as the credential of the operations it starts.
async function withToken(token, fn) {
  if (MODE === 'lambda') {
    return fn({ authMode: 'lambda', authToken: token });
  }
  providedToken = token;
  try {
    return await fn(undefined);
  } finally {
    providedToken = GOOD_TOKEN;
  }
}

// -----------------------------------------------------------------------------

const summary = {
  mode: MODE,
  badConnect: {},
  ready: {},
  wsPublish: [],
  post: [],
  received: { room: [], wild: [] },
  subscriptionErrors: { room: [], wild: [] },
  badToken: {},
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
  configure();

  // A refused connection: connection_error (401) is non-retryable for Amplify.
  const started = Date.now();
  summary.badConnect.connect = await withToken(BAD_TOKEN, (options) =>
    settle(events.connect(ROOM, options), 'bad-token connect', 10000),
  );
  summary.badConnect.refusedQuickly = Date.now() - started < FAST_MS;

  const { room, wild } = await withToken(GOOD_TOKEN, async (options) => ({
    room: await withTimeout(events.connect(ROOM, options), 'connect room'),
    wild: await withTimeout(events.connect(WILD, options), 'connect wildcard'),
  }));
  // The channels keep the connect options (lambda: the authToken) for their operations.
  const roomSub = room.subscribe(observe('room'));
  const wildSub = wild.subscribe(observe('wild'));
  summary.ready.room = await settle(roomSub.ready.then(() => true), 'room subscription ready');
  summary.ready.wild = await settle(wildSub.ready.then(() => true), 'wild subscription ready');

  for (const value of WS_SINGLE) {
    summary.wsPublish.push(await settle(room.publish(asEvent(value)), 'ws publish'));
  }
  summary.wsPublish.push(await settle(room.publish(WS_BATCH), 'ws publish batch'));
  await withToken(GOOD_TOKEN, async (options) => {
    for (const value of HTTP_SINGLE) {
      summary.post.push(await settle(events.post(ROOM, asEvent(value), options), 'post'));
    }
    summary.post.push(await settle(events.post(ROOM, HTTP_BATCH, options), 'post batch'));
    // Below the room: only the wildcard subscription matches.
    summary.post.push(await settle(events.post(DEEP, DEEP_EVENT, options), 'post deep'));
  });

  const roomCount = WS_SINGLE.length + WS_BATCH.length + HTTP_SINGLE.length + HTTP_BATCH.length;
  summary.allArrived = await settle(
    until(receivedAtLeast(roomCount, roomCount + 1), 'all events').then(() => true),
    'all events',
  );

  // The bad token on each kind of operation, over the good connection.
  const badSubErrors = [];
  summary.badToken.subscribeReady = await withToken(BAD_TOKEN, (options) => {
    const badSub = room.subscribe(
      {
        next: (message) => badSubErrors.push({ unexpectedData: message.event }),
        error: (error) => badSubErrors.push(describeError(error)),
      },
      options,
    );
    return settle(badSub.ready, 'bad-token subscribe');
  });
  summary.badToken.subscribeErrorCallback = badSubErrors;
  summary.badToken.wsPublish = await withToken(BAD_TOKEN, (options) =>
    settle(room.publish({ bad: 'token' }, options), 'bad-token publish'),
  );
  summary.badToken.post = await withToken(BAD_TOKEN, (options) =>
    settle(events.post(ROOM, { bad: 'token' }, options), 'bad-token post'),
  );
  // The socket survived the refusals: a valid publish still reaches both subscriptions.
  summary.badToken.thenValidPublish = await settle(room.publish(AFTER_REFUSALS), 'publish after refusals');
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
