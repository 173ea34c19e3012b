// The official Amplify JS `events` client connecting with a wrong API key.
//
// The server must accept the upgrade and answer connection_init with a
// connection_error (UnauthorizedException, errorCode 401): Amplify treats that as
// non-retryable and rejects connect() at once. An HTTP-level refusal would make
// it retry for seconds instead (PROTOCOL §3.1, §10). Prints one JSON summary line.
import { WRONG_KEY, amplifyConfig, finish, settle, watchdog } from './common.mjs';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

// Below Amplify's retry schedule (6 attempts over ~6.5 s) and its 15 s ack wait;
// a refusal normally takes a few tens of milliseconds.
const FAST_MS = 5000;

const summary = {};
watchdog(25000, () => summary);

async function main() {
  Amplify.configure(amplifyConfig(WRONG_KEY));
  const started = Date.now();
  summary.connect = await settle(events.connect('/default/amplify/denied'), 'wrong-key connect', 10000);
  summary.refusedQuickly = Date.now() - started < FAST_MS;
  // The same key also fails over HTTP, with the error named for the app.
  summary.post = await settle(events.post('/default/amplify/denied', { denied: true }), 'wrong-key post');
}

main().then(
  () => finish(summary),
  (error) => finish({ ...summary, fatal: String(error) }, 1),
);
