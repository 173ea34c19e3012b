// ES module entry for Node and bundlers: `import { RealtimeClient } from ".../realtime.mjs"`.
// realtime.js is a classic script (browsers load it with a plain <script>) that puts the
// class on globalThis; importing it for that side effect works whether Node reads it as
// an ES module or as CommonJS.
import "./realtime.js";

export const { RealtimeClient } = globalThis;
export const { RealtimeError } = RealtimeClient;
export default RealtimeClient;
