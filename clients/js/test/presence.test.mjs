import assert from "node:assert/strict";
import { test } from "node:test";
import { serverPerFile, client, waitFor, resumed, recordingWebSocket } from "./helpers.mjs";

// Presence reaches every member only in groups of at most 2 members here.
const server = serverPerFile({ HUBBUB_PRESENCE_FANOUT_MAX: "2", HUBBUB_PRESENCE_WATCH_MAX: "3", HUBBUB_PRESENCE_GRACE: "0.3" });

const presenceOf = (c, user) => c.events.filter((e) => e.type === "presence" && e.user_id === user).map((e) => e.status);

test("subscribePresence: a large group's members are watched, kept across reconnects, and counted", async () => {
  const conv = await server.group("pw0", ["pw1", "pw2", "pw3"]);
  const recorded = recordingWebSocket();
  const watcher = client(server, "pw0", { WebSocket: recorded.WebSocket });
  await resumed(watcher);
  const answer = await watcher.subscribePresence(["pw1", "nobody"]);
  assert.deepEqual(answer.presence.map((p) => [p.user_id, p.status]), [["pw1", "offline"]]);
  assert.deepEqual(answer.refused, ["nobody"]);
  assert.equal(answer.watching, 1);

  const pw1 = client(server, "pw1");
  const pw2 = client(server, "pw2"); // not watched, and the group is too large to announce
  await Promise.all([resumed(pw1), resumed(pw2)]);
  await waitFor(() => presenceOf(watcher, "pw1").includes("online"), 5000, "pw1 online");
  assert.deepEqual(presenceOf(watcher, "pw2"), []);
  assert.deepEqual(await watcher.onlineCount(conv), { conversation_id: conv, members: 4, online: 3 });

  // A new connection subscribes again, and tells the app the current states.
  const before = presenceOf(watcher, "pw1").length;
  recorded.cut();
  await waitFor(() => watcher.events.filter((e) => e.type === "resumed").length >= 2, 10_000, "reconnected");
  await waitFor(() => presenceOf(watcher, "pw1").length > before, 5000, "state after reconnect");
  pw1.close();
  await waitFor(() => presenceOf(watcher, "pw1").at(-1) === "offline", 15_000, "pw1 offline");

  // Over the bound: refused with its code, nothing changed.
  await assert.rejects(watcher.subscribePresence(["pw1", "pw2", "pw3", "pw9"]), (e) => e.code === "too_many_subscriptions");
  assert.equal((await watcher.unsubscribePresence(["pw1"])).watching, 0);
});
