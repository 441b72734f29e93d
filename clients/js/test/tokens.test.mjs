import assert from "node:assert/strict";
import { test } from "node:test";
import { serverPerFile, client, waitFor, recordingWebSocket, token, sleep, resumed } from "./helpers.mjs";

// The server checks token expiry every min(interval, timeout) / 2 seconds: 1 s here.
const server = serverPerFile({ HUBBUB_HEARTBEAT_TIMEOUT: "2" });

test("3-second tokens: renewed before expiry, seamlessly; never a connection with an expired token", async () => {
  const rec = recordingWebSocket();
  const issued = [];
  const alice = client(server, "tina", {
    WebSocket: rec.WebSocket,
    getToken: () => {
      const t = token("tina", { ttl: 3 });
      issued.push(Date.now());
      return t;
    },
  });
  const bob = client(server, "tom");
  const conv = await server.group("tina", ["tom"]);
  await Promise.all([resumed(alice), resumed(bob)]);
  await alice.getConversation(conv);
  await bob.getConversation(conv);
  const drops = [];
  alice.on("state", (e) => e.state === "disconnected" && drops.push(e.code));
  const start = Date.now();
  let n = 0;
  while (Date.now() - start < 8000) {
    alice.send(conv, `m${n++}`);
    await sleep(200);
  }
  await waitFor(() => bob.bodies(conv).length === n, 10000, "every message");
  assert.deepEqual(bob.bodies(conv), Array.from({ length: n }, (_, i) => `m${i}`));
  // About one token per 2 s (refreshed a third of a second... before expiry), and no 4401.
  assert.ok(alice.tokenRequests >= 4, `getToken called ${alice.tokenRequests} times`);
  assert.deepEqual(drops, [], "no drop: the connection was replaced before its token expired");
  for (const o of rec.opens) assert.ok(o.exp * 1000 > o.at, "a connection opened with an expired token");
  assert.equal(alice.state, "connected");
});

test("refresh fails until the server closes with 4401: a fresh token is fetched, then reconnect and resume", async () => {
  const rec = recordingWebSocket();
  let failing = false;
  const alice = client(server, "uma", {
    WebSocket: rec.WebSocket,
    getToken: () => {
      if (failing) throw new Error("backend down");
      return token("uma", { ttl: 3 });
    },
  });
  const conv = await server.group("uma", ["vic"]);
  await resumed(alice);
  failing = true; // the renewal before expiry fails
  const closed = await alice.once("state", (e) => e.state === "disconnected", 10000);
  assert.equal(closed.code, 4401);
  // While getToken fails the client does not connect with its dead token.
  await sleep(1500);
  for (const o of rec.opens) assert.ok(o.exp * 1000 > o.at, "a connection opened with an expired token");
  assert.equal(rec.opens.length, 1);
  failing = false;
  await alice.once("resumed", undefined, 10000);
  assert.equal(rec.opens.length, 2);
  assert.ok(rec.opens[1].exp * 1000 > rec.opens[1].at);
  const sent = await alice.send(conv, "after 4401").sent;
  assert.equal(sent.body, "after 4401");
});

test("REST retries once with a fresh token on 401", async () => {
  let calls = 0;
  const alice = client(server, "wes", {
    getToken: () => {
      calls++;
      // The first token is one the server refuses (bad signature): REST gets 401 and asks again.
      return calls === 1 ? token("wes").slice(0, -4) + "AAAA" : token("wes");
    },
    transports: ["websocket"],
  });
  const conv = await alice.createConversation({ kind: "group", title: "x", members: ["xena"] });
  assert.ok(conv.id.startsWith("c_"));
  assert.ok(calls >= 2);
});
