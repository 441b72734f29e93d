import assert from "node:assert/strict";
import { test } from "node:test";
import { serverPerFile, client, waitFor, resumed, assertOrdered } from "./helpers.mjs";
import { MemoryStorage, localStorageAdapter, decodeJwt, HubbubError } from "../dist/index.js";

const server = serverPerFile();

test("the outbox and cursors survive a new client on the same storage (a reload)", async () => {
  const storage = new MemoryStorage();
  const bob = client(server, "bob2");
  const conv = await server.group("alice2", ["bob2"]);
  await resumed(bob);
  await bob.getConversation(conv);
  // Offline from the start: nothing reaches the server.
  const first = client(server, "alice2", { storage, transports: ["websocket"], WebSocket: class { constructor() { throw new Error("offline"); } } });
  await first.ready;
  first.send(conv, "queued 1");
  first.send(conv, "queued 2");
  await waitFor(() => JSON.parse(storage.getItem("hubbub:alice2:outbox") ?? "[]").length === 2, 2000, "outbox saved");
  first.close();
  const second = client(server, "alice2", { storage });
  await second.ready;
  assert.deepEqual(second.pending().map((e) => e.body), ["queued 1", "queued 2"]);
  const handle = second.outgoing(second.pending()[1].client_msg_id);
  await handle.sent;
  await waitFor(() => bob.bodies(conv).length === 2, 5000);
  assert.deepEqual(bob.bodies(conv), ["queued 1", "queued 2"]);
  await waitFor(() => second.cursor(conv) === 2, 5000);
  await waitFor(() => JSON.parse(storage.getItem("hubbub:alice2:cursors") ?? "{}")[conv] === 2, 2000, "cursor saved");
});

test("edits, deletes, reactions, typing, search, uploads, presence, history paging", async () => {
  const alice = client(server, "ann", { typingIdleMs: 300 });
  const bob = client(server, "ben");
  await Promise.all([resumed(alice), resumed(bob)]);
  const conv = (await alice.openDirect("ben")).id;
  await bob.getConversation(conv);
  const m1 = await alice.send(conv, "first draft").sent;
  const edited = await alice.editMessage(m1.id, "final words");
  assert.equal(edited.body, "final words");
  await waitFor(() => bob.events.some((e) => e.type === "message.edited"), 5000);
  const r = await bob.react(m1.id, "👍");
  assert.deepEqual(r, { changed: true, count: 1 });
  await waitFor(() => alice.events.some((e) => e.type === "reaction" && e.emoji === "👍"), 5000);
  assert.equal((await bob.unreact(m1.id, "👍")).count, 0);

  const typingStart = bob.once("typing", (e) => e.state === "start" && e.user_id === "ann", 5000);
  alice.typing(conv).keystroke();
  await typingStart;
  assert.deepEqual(bob.typingUsers(conv), ["ann"]);
  await bob.once("typing", (e) => e.state === "stop", 5000); // idle: the handle sent stop
  assert.deepEqual(bob.typingUsers(conv), []);

  const found = await bob.search("final");
  assert.deepEqual(found.results.map((m) => m.id), [m1.id]);

  const blob = new Blob(["hello file"], { type: "text/plain" });
  const { upload } = await alice.upload(blob, "note.txt");
  assert.equal(upload.name, "note.txt");
  const withFile = await alice.send(conv, { kind: "file", body: "see file", attachments: [upload.id] }).sent;
  assert.equal(withFile.attachments[0].id, upload.id);
  const downloaded = await bob.rest.download(withFile.attachments[0].url);
  assert.equal(await downloaded.text(), "hello file");

  const deleted = await alice.deleteMessage(m1.id);
  assert.ok(deleted.deleted_at);
  await waitFor(() => bob.events.some((e) => e.type === "message.deleted"), 5000);

  for (let i = 0; i < 5; i++) await alice.send(conv, `page ${i}`).sent;
  const newest = await bob.history(conv, { limit: 3 });
  assert.deepEqual(newest.messages.map((m) => m.body), ["page 2", "page 3", "page 4"]);
  assert.equal(newest.has_more, true);
  const older = await bob.history(conv, { before: newest.messages[0].seq, limit: 100 });
  assert.equal(older.messages.at(-1).body, "page 1");

  const presence = await alice.presence(["ben"]);
  assert.equal(presence[0].status, "online");

  const refused = alice.send(conv, "   ");
  await assert.rejects(refused.sent, (e) => e instanceof HubbubError && e.code === "invalid");
  assert.equal(refused.status, "failed");
  assertOrdered(assert, bob);
  assertOrdered(assert, alice);
});

test("a request with an error frame rejects with its code; helpers", async () => {
  const c = client(server, "cy");
  await resumed(c);
  await assert.rejects(c.request({ type: "message.edit", message_id: "m_nope", body: "x" }), (e) => e.code === "not_found");
  assert.equal(decodeJwt(c.rest ? "a.eyJzdWIiOiJ4IiwiZXhwIjoxfQ.b" : "").sub, "x");
  assert.ok(localStorageAdapter() instanceof MemoryStorage); // no localStorage in Node
});

test("the public API", async () => {
  const api = await import("../dist/index.js");
  assert.deepEqual(Object.keys(api).sort(), [
    "HubbubClient", "HubbubError", "JsonSlot", "MemoryStorage", "RestClient", "STREAM_TYPES",
    "connect", "decodeJwt", "isStreamEvent", "localStorageAdapter",
  ]);
});

test("the conversation list comes in pages, and listConversations follows them all", async () => {
  const dana = client(server, "dana");
  await resumed(dana);
  const made = [];
  for (let n = 0; n < 5; n++) made.push(await server.group("owner5", ["dana"]));
  const first = await dana.rest.listConversationsPage({ limit: 2 });
  assert.equal(first.conversations.length, 2);
  assert.ok(first.nextCursor);
  const second = await dana.rest.listConversationsPage({ limit: 2, cursor: first.nextCursor });
  assert.equal(second.conversations.length, 2);
  const all = await dana.listConversations();
  assert.deepEqual([...all.map((c) => c.id)].sort(), [...made].sort());
  assert.deepEqual(
    [...first.conversations, ...second.conversations].map((c) => c.id),
    all.slice(0, 4).map((c) => c.id),
  );
});

test("push devices, notification levels and do-not-disturb", async () => {
  const pat = client(server, "pat");
  await resumed(pat);
  const conv = (await pat.openDirect("quinn")).id;
  const token = "ExponentPushToken[sdk-test-device]";
  const device = await pat.rest.registerDevice({ provider: "expo", token, platform: "android" });
  assert.equal(device.token, token);
  const again = await pat.rest.registerDevice({ provider: "expo", token, platform: "android" });
  assert.equal(again.id, device.id);
  assert.deepEqual((await pat.rest.devices()).map((d) => d.id), [device.id]);
  const until = new Date(Date.now() + 3600_000);
  const muted = await pat.rest.setNotifications(conv, "none", until);
  assert.equal(muted.level, "none");
  assert.equal(Date.parse(muted.until), Math.floor(until.getTime()));
  assert.deepEqual(await pat.rest.notifications(conv), muted);
  assert.equal((await pat.rest.setNotifications(conv, "mentions")).until, null);
  const dnd = await pat.rest.setDoNotDisturb(until);
  assert.equal(Date.parse(dnd.until), until.getTime());
  assert.deepEqual(await pat.rest.doNotDisturb(), dnd);
  assert.deepEqual(await pat.rest.setDoNotDisturb(null), { until: null });
  await assert.rejects(pat.rest.registerDevice({ provider: "expo", token: "nope", platform: "ios" }), (e) => e instanceof HubbubError && e.code === "invalid");
  await pat.rest.deleteDevice(device.id);
  assert.deepEqual(await pat.rest.devices(), []);
});
