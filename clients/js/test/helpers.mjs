// Test support: a real `hubbub run` process on a free port with its own data
// dir, HS256 tokens signed with node:crypto, SDK clients on the `ws` package.
import { spawn } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { before, after } from "node:test";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { connect } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
export const HUBBUB_BIN = process.env.HUBBUB_BIN ?? resolve(here, "../../../.venv/bin/hubbub");
export const SECRET = "js-sdk-test-secret-" + "x".repeat(32);

export function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");

/** An HS256 JWT for `sub`, valid `ttl` seconds (negative: already expired). */
export function token(sub, { ttl = 3600, name, now = Date.now() / 1000 } = {}) {
  const iat = Math.floor(now);
  const claims = { sub, iat, exp: iat + ttl };
  if (name) claims.name = name;
  const head = b64({ alg: "HS256", typ: "JWT" }) + "." + b64(claims);
  const sig = createHmac("sha256", SECRET).update(head).digest("base64url");
  return head + "." + sig;
}

export class Server {
  constructor(env = {}) {
    this.dataDir = mkdtempSync(join(tmpdir(), "hubbub-js-"));
    this.env = env;
    this.proc = null;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    this.port ??= await freePort();
    const log = openSync(join(this.dataDir, "server.log"), "a");
    const proc = spawn(HUBBUB_BIN, ["run"], {
      env: {
        ...process.env,
        HUBBUB_PORT: String(this.port),
        HUBBUB_HOST: "127.0.0.1",
        HUBBUB_DATA_DIR: this.dataDir,
        HUBBUB_JWT_SECRET: SECRET,
        HUBBUB_LOG_LEVEL: "warning",
        // Limits off (tests connect from one address and send fast) unless a test sets them.
        HUBBUB_SEND_RATE: "0",
        HUBBUB_MAX_CONNECTIONS_PER_USER: "0",
        HUBBUB_CONNECT_RATE_PER_IP: "0",
        // Pushes go nowhere: a port where nothing listens, never Expo's service.
        HUBBUB_EXPO_PUSH_URL: "http://127.0.0.1:9/--/api/v2/push/send",
        ...this.env,
      },
      stdio: ["ignore", log, log],
    });
    this.proc = proc;
    const exited = new Promise((res) => proc.once("exit", res));
    this.exited = exited;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error("hubbub exited: " + this.log());
      try {
        const r = await fetch(this.url + "/health", { signal: AbortSignal.timeout(1000) });
        if (r.status === 200) return this;
      } catch {
        // not up yet
      }
      await sleep(50);
    }
    throw new Error("hubbub did not start: " + this.log());
  }

  log() {
    try {
      return readFileSync(join(this.dataDir, "server.log"), "utf8");
    } catch {
      return "";
    }
  }

  async kill(signal = "SIGKILL") {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    if (proc.exitCode === null) {
      proc.kill(signal);
      await this.exited;
    }
  }

  async restart(signal = "SIGKILL") {
    await this.kill(signal);
    return this.start();
  }

  async close() {
    await this.kill("SIGKILL");
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** A REST call as `user` (for test set-up). */
  async api(user, method, path, body) {
    const r = await fetch(this.url + path, {
      method,
      headers: { Authorization: `Bearer ${token(user)}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await r.json();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
    return json;
  }

  async group(owner, members, title = "g") {
    return (await this.api(owner, "POST", "/api/v1/conversations", { kind: "group", title, members })).conversation.id;
  }
}

/** One hubbub process for the tests of a file: started before them (then
 * `ready(server)`, if given), and stopped, with every client closed, after
 * them. (Hooks at the top of a file run concurrently: one hook, in order.) */
export function serverPerFile(env = {}, ready = undefined) {
  const server = new Server(env);
  before(async () => {
    await server.start();
    await ready?.(server);
  });
  after(async () => {
    closeAll();
    await server.close();
  });
  return server;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Wait until `fn()` is truthy (polled every 20 ms), at most `timeoutMs`. */
export async function waitFor(fn, timeoutMs = 10_000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const opened = new Set();

/** An SDK client for `user`, on `ws`, with fast reconnects; records every event. */
export function client(server, user, options = {}) {
  const { ttl = 3600, ...rest } = options;
  const c = connect({
    url: server.url,
    getToken: () => token(user, { ttl }),
    WebSocket,
    reconnect: { baseMs: 100, maxMs: 1000 },
    requestTimeoutMs: 5000,
    openTimeoutMs: 3000,
    ...rest,
  });
  c.events = [];
  c.on("*", (e) => c.events.push(e));
  c.messages = (conv) => c.events.filter((e) => e.type === "message.new" && (!conv || e.conversation_id === conv));
  c.bodies = (conv) => c.messages(conv).map((e) => e.message.body);
  opened.add(c);
  return c;
}

export function closeAll() {
  for (const c of opened) c.close();
  opened.clear();
}

/** Every stream event a client was handed, per conversation: strictly increasing seqs. */
export function assertOrdered(assert, c) {
  const last = new Map();
  for (const e of c.events) {
    if (typeof e.seq !== "number" || !e.conversation_id || e.type === "receipt") continue;
    const prev = last.get(e.conversation_id) ?? 0;
    assert.ok(e.seq > prev, `${c.user}: ${e.type} seq ${e.seq} after ${prev} in ${e.conversation_id}`);
    last.set(e.conversation_id, e.seq);
  }
}

export const connected = (c, timeoutMs = 10_000) =>
  c.state === "connected" ? Promise.resolve() : c.once("state", (e) => e.state === "connected", timeoutMs);

export { randomUUID };

/** A `ws` WebSocket class that remembers its instances (to cut them) and the tokens it was opened with. */
export function recordingWebSocket() {
  const sockets = [];
  const opens = [];
  class Recorded extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      const tok = new URL(url).searchParams.get("token");
      opens.push({ at: Date.now(), token: tok, exp: JSON.parse(Buffer.from(tok.split(".")[1], "base64url")).exp });
      sockets.push(this);
    }
  }
  /** Drop every open socket abruptly (no close frame): like a network cut. */
  const cut = () => {
    for (const s of sockets) if (s.readyState <= 1) s.terminate();
  };
  return { WebSocket: Recorded, sockets, opens, cut };
}

/** Messages a client was handed in a conversation: their bodies, asserted unique. */
export function uniqueBodies(assert, c, conv) {
  const bodies = c.bodies(conv);
  assert.equal(new Set(bodies).size, bodies.length, `${c.user} got a message twice: ${bodies}`);
  return bodies;
}

/** Wait until the client has been resumed at least once (the event may be past). */
export const resumed = (c, timeoutMs = 10_000) =>
  waitFor(() => c.events.some((e) => e.type === "resumed"), timeoutMs, `${c.user ?? "client"} resumed`);
