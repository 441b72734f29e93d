import assert from "node:assert/strict";
import { test } from "node:test";
import { serverPerFile, client, waitFor, resumed } from "./helpers.mjs";

// One send a second, a burst of 2.
const server = serverPerFile({ HUBBUB_SEND_RATE: "1", HUBBUB_SEND_BURST: "2" });

test("sends refused as rate limited wait out retry_after_ms and all arrive in order", async () => {
  const ann = client(server, "rl-ann");
  const bob = client(server, "rl-bob");
  await Promise.all([resumed(ann), resumed(bob)]);
  const conv = (await ann.openDirect("rl-bob")).id;
  await bob.getConversation(conv);
  const started = Date.now();
  const handles = [];
  for (let n = 0; n < 6; n++) handles.push(ann.send(conv, `m${n}`));
  await Promise.all(handles.map((h) => h.sent));
  const took = Date.now() - started;
  await waitFor(() => bob.bodies(conv).length === 6, 5000);
  assert.deepEqual(bob.bodies(conv), ["m0", "m1", "m2", "m3", "m4", "m5"]);
  // Four had to wait for tokens at 1/s: about 4 s in all.
  assert.ok(took >= 3400, `all sent after ${took} ms`);
  assert.ok(took < 8000, `all sent after ${took} ms`);
  // Each waited as long as the server said, so each was refused about once
  // (the server counts its refusals); retrying on a backoff of its own (from
  // 125 ms, doubling) would be refused more often.
  const metrics = await (await fetch(server.url + "/metrics")).text();
  const refused = Number(/^hubbub_rate_limited_total\{transport="ws"\} (\S+)$/m.exec(metrics)?.[1]);
  assert.ok(refused >= 1 && refused <= 5, `${refused} refusals`);
});

test("a REST call refused as rate limited carries the wait", async () => {
  const cat = client(server, "rl-cat");
  await resumed(cat);
  const conv = (await cat.openDirect("rl-dan")).id;
  let refused;
  for (let n = 0; n < 5 && !refused; n++) {
    try {
      await cat.rest.sendMessage(conv, { body: `r${n}`, client_msg_id: `rl-rest-${n}` });
    } catch (error) {
      refused = error;
    }
  }
  assert.ok(refused, "no refusal");
  assert.equal(refused.code, "rate_limited");
  assert.equal(refused.status, 429);
  assert.ok(refused.retryAfterMs >= 1000, `retryAfterMs ${refused.retryAfterMs}`);
});
