// Shared set-up for the Amplify e2e scripts: import this module FIRST.
//
// Node 20 has no global WebSocket; Amplify looks it up at run time, so the `ws`
// package is installed as the global before any Amplify code runs (PROTOCOL §10).
// The server address and key come from the environment (see tests/e2e/test_amplify.py):
//   RT_EVENT_URL  https://127.0.0.1:PORT/event   (Amplify derives wss://…/event/realtime)
//   RT_API_KEY    a valid API key
// NODE_EXTRA_CA_CERTS must name the test CA, for both `ws` and fetch.
import WebSocket from 'ws';

globalThis.WebSocket = WebSocket;

export const EVENT_URL = required('RT_EVENT_URL');
export const API_KEY = required('RT_API_KEY');
export const WRONG_KEY = 'rt-this-key-does-not-exist';
// Every awaited step is bounded: a server bug must fail the test, not hang it.
export const STEP_TIMEOUT_MS = 8000;

function required(name) {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`${name} is not set\n`);
    process.exit(2);
  }
  return value;
}

export function amplifyConfig(apiKey = API_KEY) {
  return {
    API: {
      Events: {
        endpoint: EVENT_URL,
        region: 'us-east-1',
        defaultAuthMode: 'apiKey',
        apiKey,
      },
    },
  };
}

export function withTimeout(promise, label, ms = STEP_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Settles to {ok, value} / {ok: false, error}: a rejection is data to report, never a crash.
export async function settle(promise, label, ms = STEP_TIMEOUT_MS) {
  try {
    const value = await withTimeout(promise, label, ms);
    return { ok: true, value: value === undefined ? null : value };
  } catch (error) {
    return { ok: false, error: describeError(error) };
  }
}

export function describeError(error) {
  if (error instanceof Error) {
    return { name: error.name, message: error.message };
  }
  // rxjs observers get {errors: [GraphQLError-like]}; a rejected handshake gets a plain object.
  if (error && Array.isArray(error.errors)) {
    return { errors: error.errors.map((e) => e?.message ?? String(e)) };
  }
  return { value: JSON.parse(JSON.stringify(error ?? null)) };
}

// until(predicate) resolves once predicate() holds; call changed() after each
// state change (e.g. an event arrived) to re-check the pending predicates.
const pending = new Set();

export function changed() {
  for (const check of [...pending]) check();
}

export function until(predicate, label, ms = STEP_TIMEOUT_MS) {
  if (predicate()) return Promise.resolve();
  const reached = new Promise((resolve) => {
    const check = () => {
      if (predicate()) {
        pending.delete(check);
        resolve();
      }
    };
    pending.add(check);
  });
  return withTimeout(reached, label, ms);
}

export const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The summary is the last line on stdout; exit explicitly, since Amplify leaves timers behind.
export function finish(summary, code = 0) {
  process.stdout.write(`${JSON.stringify(summary)}\n`, () => process.exit(code));
}

// A last resort: never outlive the pytest timeout, and say why.
export function watchdog(ms, summary) {
  setTimeout(() => finish({ ...summary(), watchdog: `script exceeded ${ms} ms` }, 3), ms);
}
