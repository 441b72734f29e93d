// The SSE transport's reader: CRLF line ends split across chunks, and a
// platform without TextDecoder.
import assert from "node:assert/strict";
import { test } from "node:test";
import { serverPerFile, client, waitFor, resumed, sleep } from "./helpers.mjs";

const server = serverPerFile();

/** fetch whose /sse stream has CRLF line ends, cut into chunks right after every CR. */
function crlfFetch(url, init) {
  const p = fetch(url, init);
  if (!String(url).endsWith("/sse")) return p;
  return p.then((response) => {
    if (!response.body) return response;
    const reader = response.body.getReader();
    const body = new ReadableStream({
      async pull(controller) {
        const { value, done } = await reader.read();
        if (done) return controller.close();
        const bytes = [];
        for (const b of value) {
          if (b === 10) {
            bytes.push(13);
            controller.enqueue(new Uint8Array(bytes)); // ends with CR: its LF comes in the next chunk
            bytes.length = 0;
          }
          bytes.push(b);
        }
        if (bytes.length) controller.enqueue(new Uint8Array(bytes));
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  });
}

test("SSE with CRLF split between chunks: frames and the close event read right", async () => {
  const alice = client(server, "da", { transports: ["sse"], fetch: crlfFetch });
  const conv = await server.group("da", ["db"]);
  await resumed(alice);
  await alice.getConversation(conv);
  assert.equal((await alice.send(conv, "over crlf").sent).body, "over crlf");
  await waitFor(() => alice.bodies(conv).includes("over crlf"), 5000);
  // A restart ends the stream with `event: close` (1012): the client must see that code.
  const closed = alice.once("state", (e) => e.state === "disconnected", 15000);
  await server.restart("SIGTERM");
  assert.equal((await closed).code, 1012);
  // The new process starts beside three other test files' servers: room for a slow start.
  await alice.once("resumed", undefined, 30000);
});

test("SSE without TextDecoder: the attempt fails cleanly (no unhandled rejection), and works once it is there", async () => {
  const unhandled = [];
  const onUnhandled = (reason) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  const saved = globalThis.TextDecoder;
  try {
    delete globalThis.TextDecoder;
    const alice = client(server, "ea", { transports: ["sse"] });
    await waitFor(() => alice.events.filter((e) => e.type === "state" && e.state === "disconnected").length >= 2, 5000, "failed attempts");
    await sleep(100);
    assert.deepEqual(unhandled, []);
    globalThis.TextDecoder = saved;
    await resumed(alice, 10000);
  } finally {
    globalThis.TextDecoder = saved;
    process.off("unhandledRejection", onUnhandled);
  }
});
