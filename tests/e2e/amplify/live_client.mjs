// One official Amplify JS `events` client, unmodified, kept open and driven from stdin.
//
//   node live_client.mjs <channel>
//
// Connects to RT_EVENT_URL with RT_API_KEY (common.mjs), or with RT_LAMBDA_TOKEN as the
// `authToken` of the `lambda` auth mode (the server's CUSTOM mode) when that is set, subscribes to <channel> and
// prints one JSON line per happening, each with `at` (ms since the epoch):
//   {"ready": true}                      the subscription is acknowledged
//   {"event": <payload>}                 a data event (parsed by Amplify)
//   {"error": <described error>}         the subscription's error callback
//   {"state": "<ConnectionState>"}       Amplify's connection state changes (Hub "api")
// A line "close" on stdin unsubscribes and closes the channel, then prints {"closed": true}.
import { amplifyConfig, describeError, settle, watchdog } from './common.mjs';
import { Amplify } from 'aws-amplify';
import { Hub } from 'aws-amplify/utils';
import { events } from 'aws-amplify/data';

const CHANNEL = process.argv[2];
const LAMBDA_TOKEN = process.env.RT_LAMBDA_TOKEN;
const emit = (line) => process.stdout.write(`${JSON.stringify({ ...line, at: Date.now() })}\n`);
watchdog(120000, () => ({ watchdog: true }));

Hub.listen('api', ({ payload }) => {
  if (payload.event === 'ConnectionStateChange') emit({ state: payload.data.connectionState });
});

async function main() {
  Amplify.configure(amplifyConfig());
  const options = LAMBDA_TOKEN ? { authMode: 'lambda', authToken: LAMBDA_TOKEN } : undefined;
  const connected = await settle(events.connect(CHANNEL, options), 'connect');
  if (!connected.ok) {
    emit({ connectError: connected.error });
    return;
  }
  const channel = connected.value;
  const subscription = channel.subscribe({
    next: (message) => emit({ event: message.event }),
    error: (error) => emit({ error: describeError(error) }),
  });
  const ready = await settle(subscription.ready, 'subscribe');
  emit(ready.ok ? { ready: true } : { readyError: ready.error });
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', async (text) => {
    if (text.includes('close')) {
      subscription.unsubscribe();
      channel.close();
      await settle(events.closeAll(), 'closeAll');
      emit({ closed: true });
    }
  });
}

main().catch((error) => emit({ fatal: describeError(error) }));
