// Reconnect backoff against a server that accepts and then closes; storage
// that holds garbage.
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { serverPerFile, client, waitFor, resumed, sleep } from "./helpers.mjs";
import { MemoryStorage } from "../dist/index.js";

const server = serverPerFile();

test("a server that says hello and then closes at once (1009) is retried with growing backoff", async () => {
  // Each connection, once open, sends the server a frame over its hard
  // ceiling: the server closes it with 1009 right after hello.
  const opens = [];
  class Poisoned extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      opens.push(Date.now());
      this.addEventListener("message", () => {
        if (this.readyState === WebSocket.OPEN) super.send("x".repeat(1_100_000));
      }, { once: true });
    }
  }
  const codes = [];
  const alice = client(server, "ba", { WebSocket: Poisoned, transports: ["websocket"], reconnect: { baseMs: 100, maxMs: 2000 } });
  alice.on("state", (e) => e.state === "disconnected" && e.code !== undefined && codes.push(e.code));
  await sleep(4000);
  alice.close();
  assert.ok(codes.includes(1009), `close codes ${codes}`);
  // Without backoff (delay random(0, 100 ms) after each hello) this is 40 or more.
  assert.ok(opens.length <= 15, `${opens.length} connections in 4 s`);
  assert.ok(opens.length >= 3, `${opens.length} connections in 4 s`);
});

test("storage holding garbage: the client still loads, connects and sends", async () => {
  const conv = await server.group("ca", ["cb"]);
  const good = { client_msg_id: "good-1", conversation_id: conv, body: "kept", created_at: Date.now() };
  for (const [outbox, cursors] of [
    ['{"not": "an array"}', '["not", "an object"]'],
    ['"a string"', "42"],
    [JSON.stringify([null, 7, "x", { body: "no ids" }, { client_msg_id: 5, conversation_id: conv }, good]), '{"c_bad": "nope"}'],
    ["{not json", "{not json"],
  ]) {
    const storage = new MemoryStorage();
    storage.setItem("hubbub:ca:outbox", outbox);
    storage.setItem("hubbub:ca:cursors", cursors);
    const alice = client(server, "ca", { storage });
    await alice.ready;
    if (outbox.includes("good-1")) {
      assert.deepEqual(alice.pending().map((e) => e.client_msg_id), ["good-1"]);
      const handle = alice.outgoing("good-1");
      await resumed(alice);
      assert.equal((await handle.sent).body, "kept");
    } else {
      assert.deepEqual(alice.pending(), []);
      await resumed(alice);
    }
    assert.equal((await alice.send(conv, "fresh").sent).body, "fresh");
    alice.close();
  }
});
