/**
 * The client: one connection at a time (WebSocket, or the SSE fallback),
 * reconnected forever with capped, fully jittered backoff, resumed with the
 * cursors on every connect; the outbox retried until acked; tokens renewed
 * before they expire.
 */
import { Connection } from "./connection.js";
import { Emitter, type Unsubscribe } from "./emitter.js";
import { HubbubError, isPermanent } from "./errors.js";
import type {
  AckFrame,
  Conversation,
  EventOf,
  Hello,
  HubbubEvent,
  HubbubEventType,
  Message,
  MessageKind,
  Presence,
  PresenceSubscription,
  ResumeStatus,
  SendStatus,
  ServerEvent,
  StreamEvent,
  TransportKind,
} from "./events.js";
import { isStreamEvent } from "./events.js";
import { Outbox, ReceiptTracker, type OutboxEntry, type OutgoingMessage } from "./outbox.js";
import { RestClient } from "./rest.js";
import { JsonSlot, MemoryStorage, type KeyValueStorage } from "./storage.js";
import { Streams } from "./stream.js";
import { TokenManager } from "./token.js";
import { SseTransport } from "./transport/sse.js";
import type { FetchLike, Transport, WebSocketConstructor } from "./transport/types.js";
import { CLOSE_UNAUTHORIZED } from "./transport/types.js";
import { WebSocketTransport } from "./transport/websocket.js";
import { IncomingTyping, OutgoingTyping, type TypingHandle } from "./typing.js";

export interface ClientOptions {
  /** The server's base URL, `https://chat.example.com` (ws(s):// is accepted too). */
  url: string;
  /** Returns a fresh JWT for the user; called before the current one expires and after a 401/4401. */
  getToken: () => string | Promise<string>;
  /** Transports in order of preference. Default `["websocket", "sse"]`. */
  transports?: TransportKind[];
  /** WebSocket constructor (Node < 22: `ws`'s). Default: `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** fetch implementation. Default: `globalThis.fetch`. */
  fetch?: FetchLike;
  /** Where cursors and the outbox are kept. Default: memory. */
  storage?: KeyValueStorage;
  /** Prefix of the storage keys; the token's `sub` is appended. Default `"hubbub"`. */
  storageKey?: string;
  /** Reconnect backoff: delay = random(0, min(maxMs, baseMs * 2^attempt)). Defaults 500 and 10000. */
  reconnect?: { baseMs?: number; maxMs?: number };
  /** Reply timeout of requests (ms). Default 15000. */
  requestTimeoutMs?: number;
  /** A connection that has not said hello by then has failed (ms). Default 10000. */
  openTimeoutMs?: number;
  /** Silence before the client pings (ms). Default: the server's heartbeat_interval_ms. */
  heartbeatMs?: number;
  /** How long a ping may go unanswered before the connection is dropped (ms). Default 10000. */
  pingTimeoutMs?: number;
  /** Failed WebSocket attempts in a row before falling back to SSE. Default 2. */
  fallbackAfterFailures?: number;
  /** While on SSE, try WebSocket again after this long (ms). Default 300000 (5 min). */
  webSocketRetryMs?: number;
  /** Report `delivered` for messages as they arrive. Default true. */
  autoDelivered?: boolean;
  /** Listen to the browser's `online` and `visibilitychange` events. Default true where they exist. */
  browserEvents?: boolean;
  /** The typing handle sends `stop` after this much idle time (ms). Default 3000. */
  typingIdleMs?: number;
}

export interface SendOptions {
  body?: string;
  kind?: Exclude<MessageKind, "system">;
  attachments?: string[];
  reply_to?: string | null;
  /** Your own idempotency key; default a random one. */
  client_msg_id?: string;
}

type Frame = { type: string; [key: string]: unknown };

const RESUME_CHUNK = 1000;
const HISTORY_PAGE = 100;
/** A connection up this long resets the reconnect backoff (one that closes sooner does not). */
const STABLE_MS = 30_000;
/** Outbox sends on the wire on one connection at most (one per conversation). */
const MAX_SENDS_IN_FLIGHT = 32;

function randomId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
}

function baseUrlOf(url: string): string {
  return url
    .replace(/^ws(s?):\/\//, "http$1://")
    .replace(/\/ws\/?$/, "")
    .replace(/\/+$/, "");
}

export class HubbubClient {
  /** The REST API (conversations, history, uploads, search, ...) with the client's token. */
  readonly rest: RestClient;
  /** Resolves once cursors and the outbox are loaded from storage. */
  readonly ready: Promise<void>;

  private readonly emitter = new Emitter();
  private readonly tokens: TokenManager;
  private readonly baseUrl: string;
  private readonly fetchImpl: FetchLike;
  private readonly transports: TransportKind[];
  private readonly storage: KeyValueStorage;
  private readonly streams: Streams;
  private readonly outbox: Outbox;
  private readonly tracker = new ReceiptTracker();
  private readonly incomingTyping: IncomingTyping;
  private readonly outgoingTyping = new Map<string, OutgoingTyping>();
  /** Users whose presence the app subscribed to (sent again on each new connection). */
  private readonly watchedPresence = new Set<string>();

  private current: Connection | null = null;
  private connecting = false;
  private rotating = false;
  private closedByApp = false;
  private online = true;
  private attempt = 0;
  private failedAttempts = 0;
  private failures: Record<TransportKind, number> = { websocket: 0, sse: 0 };
  private transportIndex = 0;
  private fellBackAt = 0;
  private lastHello: Hello | null = null;
  private userId: string | null = null;
  private requestIds = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private upgradeTimer: ReturnType<typeof setTimeout> | null = null;
  private outboxTimer: ReturnType<typeof setTimeout> | null = null;
  private outboxTimerAt = 0;
  private stableTimer: ReturnType<typeof setTimeout> | null = null;
  /** Other timers (retries of gap fills and reloads), cleared by close(). */
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  /** Every connection not closed yet: the current one, one being opened, replaced ones draining. */
  private readonly connections = new Set<Connection>();
  /** Per conversation, the outbox entry on the wire (at most one) and its connection. */
  private readonly sending = new Map<string, { clientMsgId: string; conn: Connection }>();
  /** Per conversation, after a passing error: when its oldest entry may go again, and the failures in a row. */
  private readonly sendRetry = new Map<string, { at: number; failures: number }>();
  private readonly reloadFailures = new Map<string, number>();
  private deliveredTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private deliveredSent = new Map<string, number>();
  private removeBrowserListeners: () => void = () => {};
  private _state: "connecting" | "connected" | "disconnected" | "closed" = "disconnected";

  constructor(private readonly options: ClientOptions) {
    if (!options.url) throw new TypeError("connect(): url is required");
    if (typeof options.getToken !== "function") throw new TypeError("connect(): getToken is required");
    this.baseUrl = baseUrlOf(options.url);
    const f = options.fetch ?? (globalThis as { fetch?: FetchLike }).fetch;
    this.fetchImpl = f ? (((...args: Parameters<FetchLike>) => f(...args)) as FetchLike) : ((() => Promise.reject(new Error("no fetch available"))) as FetchLike);
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    this.transports = (options.transports ?? ["websocket", "sse"]).filter((t) => t !== "websocket" || !!WS);
    if (!this.transports.length) throw new TypeError("connect(): no usable transport (pass a WebSocket constructor)");
    this.storage = options.storage ?? new MemoryStorage();
    this.tokens = new TokenManager(options.getToken);
    this.rest = new RestClient(this.baseUrl, this.tokens, this.fetchImpl, (c) => this.streams.know(c.id, c.last_seq));
    this.incomingTyping = new IncomingTyping(
      (e) => this.emit(e),
      () => this.lastHello?.typing_ttl_ms ?? 6000,
    );
    // The storage keys carry the user id, read from the first token.
    const storagePrefix = this.tokens.get().then(
      (info) => {
        this.userId = info.claims.sub ?? null;
        return `${options.storageKey ?? "hubbub"}:${info.claims.sub ?? ""}:`;
      },
      (error) => {
        this.warn("getToken() failed", error);
        return `${options.storageKey ?? "hubbub"}::`;
      },
    );
    this.streams = new Streams(new JsonSlot(this.storage, storagePrefix.then((p) => p + "cursors")), {
      deliver: (e) => this.delivered(e),
      gap: (id) => this.fillGap(id),
      me: () => this.userId,
    });
    this.outbox = new Outbox(new JsonSlot(this.storage, storagePrefix.then((p) => p + "outbox")));
    // send() may be called before storage answers: those entries are kept too.
    // Storage that fails or holds garbage is reported and skipped: the client connects anyway.
    this.ready = Promise.all([
      this.streams.load().catch((error) => this.warn("loading the cursors from storage failed", error)),
      this.outbox.load().catch((error) => this.warn("loading the outbox from storage failed", error)),
    ]).then(() => {});
    this.listenToBrowser();
    void this.ready.then(
      () => this.connectSoon(0),
      () => this.connectSoon(0),
    );
  }

  // ---------------------------------------------------------------- public API

  /** `connecting`, `connected` (hello received), `disconnected` (waiting to reconnect) or `closed`. */
  get state(): "connecting" | "connected" | "disconnected" | "closed" {
    return this._state;
  }

  /** The transport of the current connection, or null. */
  get transport(): TransportKind | null {
    return this.current?.kind ?? null;
  }

  /** The last hello (limits, typing_ttl_ms, user_id); null before the first connection. */
  get hello(): Hello | null {
    return this.lastHello;
  }

  /** The user id (from the token, then from hello). */
  get user(): string | null {
    return this.userId;
  }

  /** How many times getToken() was called. */
  get tokenRequests(): number {
    return this.tokens.calls;
  }

  /** Listen to one event type, or `"*"` for all. Returns the function that stops listening. */
  on<K extends HubbubEventType>(type: K, listener: (event: EventOf<K>) => void): Unsubscribe;
  on(type: "*", listener: (event: HubbubEvent) => void): Unsubscribe;
  on(type: string, listener: (event: never) => void): Unsubscribe {
    return this.emitter.on(type as HubbubEventType, listener as (event: HubbubEvent) => void);
  }

  /** The next event of this type (matching `predicate`), within `timeoutMs` (default: no limit). */
  once<K extends HubbubEventType>(type: K, predicate?: (event: EventOf<K>) => boolean, timeoutMs?: number): Promise<EventOf<K>> {
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const off = this.on(type, (event) => {
        if (predicate && !predicate(event)) return;
        off();
        if (timer) clearTimeout(timer);
        resolve(event);
      });
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          off();
          reject(new HubbubError("timeout", `no ${type} event within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  /**
   * Send a message. It goes to the outbox at once (status `pending`) and is
   * retried with the same client_msg_id, in order per conversation, until the
   * server acks it (`sent`); then `delivered` and `read` follow the other
   * members' receipts. Works offline.
   */
  send(conversationId: string, message: string | SendOptions): OutgoingMessage {
    const o: SendOptions = typeof message === "string" ? { body: message } : message;
    const entry: OutboxEntry = {
      client_msg_id: o.client_msg_id ?? randomId(),
      conversation_id: conversationId,
      body: o.body ?? "",
      created_at: Date.now(),
    };
    if (o.kind) entry.kind = o.kind;
    if (o.attachments) entry.attachments = o.attachments;
    if (o.reply_to) entry.reply_to = o.reply_to;
    const handle = this.outbox.add(entry);
    this.outgoingTyping.get(conversationId)?.reset();
    this.emitStatus(handle, "pending");
    this.flushOutbox();
    return handle;
  }

  /** Messages sent and not acked yet, in send order. */
  pending(): OutboxEntry[] {
    return this.outbox.list();
  }

  /** The handle of a message still in the outbox (also one restored from storage). */
  outgoing(clientMsgId: string): OutgoingMessage | undefined {
    return this.outbox.get(clientMsgId);
  }

  /** Send any request frame over the connection; resolves with its ack. Fails at once when not connected. */
  request(frame: Frame, timeoutMs?: number): Promise<AckFrame> {
    if (!this.current) return Promise.reject(new HubbubError("not_connected", `cannot send ${frame.type}: not connected`));
    return this.current.request(frame, timeoutMs);
  }

  async editMessage(messageId: string, body: string): Promise<Message> {
    if (this.current) return (await this.request({ type: "message.edit", message_id: messageId, body })).message as Message;
    return this.rest.editMessage(messageId, body);
  }

  async deleteMessage(messageId: string): Promise<Message> {
    if (this.current) return (await this.request({ type: "message.delete", message_id: messageId })).message as Message;
    return this.rest.deleteMessage(messageId);
  }

  async react(messageId: string, emoji: string): Promise<{ changed: boolean; count: number }> {
    return this.reaction(messageId, emoji, true);
  }

  async unreact(messageId: string, emoji: string): Promise<{ changed: boolean; count: number }> {
    return this.reaction(messageId, emoji, false);
  }

  /** Move your read pointer (default: to the last event the client has). */
  markRead(conversationId: string, seq?: number): Promise<{ moved: boolean }> {
    return this.pointer(conversationId, "read", seq);
  }

  /** Move your delivered pointer (done for you when `autoDelivered` is on). */
  markDelivered(conversationId: string, seq?: number): Promise<{ moved: boolean }> {
    return this.pointer(conversationId, "delivered", seq);
  }

  /** The typing handle of a conversation: call `keystroke()` on input, `stop()` when done. */
  typing(conversationId: string): TypingHandle {
    let handle = this.outgoingTyping.get(conversationId);
    if (!handle) {
      handle = new OutgoingTyping(
        (state) => {
          this.current?.request({ type: "typing", conversation_id: conversationId, state }).catch(() => {});
        },
        () => this.lastHello?.typing_ttl_ms ?? 6000,
        this.options.typingIdleMs ?? 3000,
      );
      this.outgoingTyping.set(conversationId, handle);
    }
    return handle;
  }

  /** Who is typing in a conversation now (the other members). */
  typingUsers(conversationId: string): string[] {
    return this.incomingTyping.users(conversationId);
  }

  /** The last seq the app was handed for a conversation. */
  cursor(conversationId: string): number | undefined {
    return this.streams.cursor(conversationId);
  }

  cursors(): Record<string, number> {
    return this.streams.all();
  }

  // REST shortcuts (see `rest` for everything).
  listConversations() {
    return this.rest.listConversations();
  }
  getConversation(id: string) {
    return this.rest.getConversation(id);
  }
  createConversation(request: Parameters<RestClient["createConversation"]>[0]) {
    return this.rest.createConversation(request);
  }
  /** Open (or get) the direct conversation with a user. */
  openDirect(userId: string) {
    return this.rest.createConversation({ kind: "direct", members: [userId] });
  }
  history(conversationId: string, query?: Parameters<RestClient["history"]>[1]) {
    return this.rest.history(conversationId, query);
  }
  search(q: string, query?: Parameters<RestClient["search"]>[1]) {
    return this.rest.search(q, query);
  }
  upload(file: Parameters<RestClient["upload"]>[0], name?: string) {
    return this.rest.upload(file, name);
  }
  presence(userIds: string[]) {
    return this.rest.presence(userIds);
  }
  /** How many members of a conversation are online (for a large group, instead of everyone's presence). */
  onlineCount(conversationId: string) {
    return this.rest.onlineCount(conversationId);
  }

  /**
   * Watch users' presence: the ones the app shows (the visible members of a
   * large group, whose members are not all told of each other). Their
   * `presence` events follow; the subscription is kept and made again on
   * every new connection, where the current states arrive as `presence`
   * events. Resolves with the server's answer (when not connected: nothing
   * yet, `watching` counting what will be asked).
   */
  async subscribePresence(userIds: string[]): Promise<PresenceSubscription> {
    const added = userIds.filter((id) => !this.watchedPresence.has(id));
    for (const id of added) this.watchedPresence.add(id);
    if (!this.current) return { presence: [], refused: [], watching: this.watchedPresence.size };
    try {
      return await this.presenceCommand(this.current, { subscribe: userIds });
    } catch (error) {
      for (const id of added) this.watchedPresence.delete(id); // refused (too_many_subscriptions): not kept
      throw error;
    }
  }

  /** Stop watching users' presence. */
  async unsubscribePresence(userIds: string[]): Promise<PresenceSubscription> {
    for (const id of userIds) this.watchedPresence.delete(id);
    if (!this.current) return { presence: [], refused: [], watching: this.watchedPresence.size };
    return this.presenceCommand(this.current, { unsubscribe: userIds });
  }

  private async presenceCommand(conn: Connection, fields: { subscribe?: string[]; unsubscribe?: string[] }): Promise<PresenceSubscription> {
    const ack = await conn.request({ type: "presence", ...fields });
    const answer: PresenceSubscription = {
      presence: (ack.presence ?? []) as Presence[],
      refused: (ack.refused ?? []) as string[],
      watching: (ack.watching ?? 0) as number,
    };
    for (const id of answer.refused) this.watchedPresence.delete(id);
    return answer;
  }

  /** A new connection: subscribe again, and tell the app the states it may have missed. */
  private resubscribePresence(conn: Connection): void {
    if (!this.watchedPresence.size) return;
    this.presenceCommand(conn, { subscribe: [...this.watchedPresence] }).then(
      (answer) => {
        if (conn !== this.current) return;
        for (const p of answer.presence) this.emit({ type: "presence", user_id: p.user_id, status: p.status, last_seen: p.last_seen });
      },
      (error) => {
        if (!conn.closed) this.warn("presence subscription failed", error);
      },
    );
  }

  /**
   * Reconnect now, skipping the backoff wait (network back, app in the
   * foreground). When connected, checks the connection with a ping instead.
   */
  reconnectNow(): void {
    if (this.closedByApp) return;
    if (this.current) {
      this.current.probe(5000);
      return;
    }
    this.attempt = 0;
    this.connectSoon(0);
  }

  /** Tell the client whether the device is online (React Native: NetInfo). Offline, it stops trying. */
  setOnline(online: boolean): void {
    const was = this.online;
    this.online = online;
    if (!online) {
      if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    } else if (!was || !this.current) {
      this.reconnectNow();
    }
  }

  /** Close for good: no more reconnects. Outbox entries stay in storage for the next client. */
  close(): void {
    if (this.closedByApp) return;
    this.closedByApp = true;
    this.removeBrowserListeners();
    for (const t of [this.reconnectTimer, this.refreshTimer, this.upgradeTimer, this.outboxTimer, this.stableTimer]) if (t) clearTimeout(t);
    for (const t of this.deliveredTimers.values()) clearTimeout(t);
    this.deliveredTimers.clear();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const typing of this.outgoingTyping.values()) typing.reset();
    this.incomingTyping.clear();
    this.current = null;
    // Replaced connections still draining and one being opened go too.
    for (const conn of [...this.connections]) conn.close(1000, "client closed");
    this.outbox.abandon(new HubbubError("closed", "the client was closed before the message was acked"));
    this.setState("closed", null);
  }

  // ---------------------------------------------------------------- internals

  private emit(event: HubbubEvent): void {
    this.emitter.emit(event);
  }

  private warn(message: string, error?: unknown): void {
    this.emit({ type: "warning", message, error });
  }

  /** A timer that close() clears. */
  private later(fn: () => void, ms: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.closedByApp) fn();
    }, ms);
    this.timers.add(timer);
  }

  private setState(state: HubbubClient["_state"], transport: TransportKind | null, code?: number, reason?: string): void {
    this._state = state;
    const event: EventOf<"state"> = { type: "state", state, transport };
    if (code !== undefined) event.code = code;
    if (reason !== undefined) event.reason = reason;
    this.emit(event);
  }

  // ---- connecting ----

  private connectSoon(delayMs: number): void {
    if (this.closedByApp || this.current || this.connecting) return;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.connectOnce();
    }, delayMs);
  }

  private backoffDelay(): number {
    const base = this.options.reconnect?.baseMs ?? 500;
    const max = this.options.reconnect?.maxMs ?? 10_000;
    const ceiling = Math.min(max, base * 2 ** Math.min(this.attempt, 20));
    this.attempt += 1;
    return Math.random() * ceiling; // full jitter
  }

  private scheduleReconnect(): void {
    if (this.closedByApp || !this.online) return;
    this.connectSoon(this.backoffDelay());
  }

  private pickTransport(): TransportKind {
    const kinds = this.transports;
    if (kinds.length === 1) return kinds[0]!;
    const wsRetry = this.options.webSocketRetryMs ?? 300_000;
    let kind = kinds[this.transportIndex % kinds.length]!;
    if (kind !== "websocket" && kinds.includes("websocket") && Date.now() - this.fellBackAt >= wsRetry) {
      this.transportIndex = kinds.indexOf("websocket");
      this.failures.websocket = 0;
      kind = "websocket";
    }
    return kind;
  }

  private noteFailure(kind: TransportKind): void {
    this.failures[kind] += 1;
    const limit = this.options.fallbackAfterFailures ?? 2;
    if (this.transports.length > 1 && this.failures[kind] >= limit) {
      this.failures[kind] = 0;
      this.transportIndex = (this.transports.indexOf(kind) + 1) % this.transports.length;
      const next = this.transports[this.transportIndex]!;
      if (kind === "websocket") this.fellBackAt = Date.now();
      this.warn(`${kind} failed ${limit} times in a row: trying ${next}`);
    }
  }

  private newConnection(kind: TransportKind, token: string): Connection {
    const transport: Transport =
      kind === "websocket"
        ? new WebSocketTransport((this.options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket)!, {
            baseUrl: this.baseUrl,
            token,
          })
        : new SseTransport(this.fetchImpl, { baseUrl: this.baseUrl, token });
    const conn = new Connection(transport, {
      nextId: () => ++this.requestIds,
      requestTimeoutMs: this.options.requestTimeoutMs ?? 15_000,
      openTimeoutMs: this.options.openTimeoutMs ?? 10_000,
      pingTimeoutMs: this.options.pingTimeoutMs ?? 10_000,
      heartbeatMs: this.options.heartbeatMs,
      onOpen: (conn, hello) => this.adopt(conn, hello),
      onFrame: (conn, frame) => {
        if (conn === this.current) this.frame(conn, frame);
      },
      onClose: (conn, code, reason) => {
        this.connections.delete(conn);
        this.connectionClosed(conn, code, reason);
      },
    });
    if (!conn.closed) this.connections.add(conn);
    return conn;
  }

  private async connectOnce(): Promise<void> {
    if (this.closedByApp || this.current || this.connecting || !this.online) return;
    this.connecting = true;
    this.setState("connecting", null);
    let conn: Connection | null = null;
    try {
      const info = await this.tokens.get();
      if (this.closedByApp) return;
      conn = this.newConnection(this.pickTransport(), info.token);
      await conn.opened;
    } catch (error) {
      if (this.closedByApp) return;
      if (conn) {
        this.noteFailure(conn.kind);
        // A browser cannot see a handshake's 401: after a few failures in a
        // row, the next attempt asks for a fresh token too.
        this.failedAttempts += 1;
        if (conn.closeCode === CLOSE_UNAUTHORIZED || this.failedAttempts % (this.options.fallbackAfterFailures ?? 2) === 0) {
          this.tokens.invalidate();
        }
      } else {
        this.warn("could not get a token", error);
      }
      this.connecting = false;
      this.setState("disconnected", null);
      this.scheduleReconnect();
      return;
    } finally {
      this.connecting = false;
    }
  }

  /** A connection said hello: it becomes the client's connection (replacing any other). */
  private adopt(conn: Connection, hello: Hello): void {
    if (this.closedByApp) {
      conn.close(1000, "client closed");
      return;
    }
    const old = this.current;
    this.current = conn;
    this.lastHello = hello;
    this.userId = hello.user_id;
    // The backoff starts again only once the client has stayed connected a
    // while (a drop cancels this timer; a token rotation keeps it running):
    // a server that says hello and closes at once is not retried at full speed.
    if (!this.stableTimer) {
      this.stableTimer = setTimeout(() => {
        this.stableTimer = null;
        this.attempt = 0;
      }, STABLE_MS);
    }
    this.failedAttempts = 0;
    this.failures[conn.kind] = 0;
    const serverTime = Date.parse(hello.server_time);
    if (Number.isFinite(serverTime)) this.tokens.skewMs = serverTime - Date.now();
    old?.drain();
    this.setState("connected", conn.kind);
    this.scheduleTokenRefresh();
    this.scheduleUpgrade(conn);
    void this.resumeAll(conn).then((statuses) => {
      if (statuses && conn === this.current) this.emit({ type: "resumed", transport: conn.kind, hello, conversations: statuses });
    });
    this.resubscribePresence(conn);
    for (const retry of this.sendRetry.values()) retry.at = 0; // a new connection: try at once
    this.flushOutbox();
    // Learn of conversations this client did not know (added while away).
    this.rest.listConversations().catch((error) => this.warn("listing conversations failed", error));
  }

  private connectionClosed(conn: Connection, code: number, reason: string): void {
    if (!conn.hello) return; // a failed attempt: connectOnce() handles it
    if (conn !== this.current) return; // a replaced connection
    this.current = null;
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    if (this.upgradeTimer) clearTimeout(this.upgradeTimer);
    if (this.stableTimer) clearTimeout(this.stableTimer);
    this.stableTimer = null;
    for (const typing of this.outgoingTyping.values()) typing.reset();
    if (code === CLOSE_UNAUTHORIZED) this.tokens.invalidate();
    if (this.closedByApp) return;
    this.setState("disconnected", null, code, reason);
    this.scheduleReconnect();
  }

  /** Before the token expires: a fresh token, a new connection, then the old one goes. */
  private scheduleTokenRefresh(): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    const info = this.tokens.info;
    if (!info || !Number.isFinite(info.refreshAt)) return;
    const delay = Math.max(0, info.refreshAt - this.tokens.now());
    this.refreshTimer = setTimeout(() => void this.rotate(null), Math.min(delay, 2 ** 31 - 1));
  }

  private scheduleUpgrade(conn: Connection): void {
    if (this.upgradeTimer) clearTimeout(this.upgradeTimer);
    if (conn.kind === "websocket" || !this.transports.includes("websocket")) return;
    const wait = this.options.webSocketRetryMs ?? 300_000;
    this.upgradeTimer = setTimeout(() => void this.rotate("websocket"), wait);
  }

  private async rotate(kind: TransportKind | null): Promise<void> {
    const old = this.current;
    if (this.rotating || !old || this.closedByApp) return;
    this.rotating = true;
    try {
      const info = kind === null ? await this.tokens.refresh() : await this.tokens.get();
      if (this.current !== old || this.closedByApp) return;
      const conn = this.newConnection(kind ?? old.kind, info.token);
      await conn.opened; // adopt() ran on hello
    } catch (error) {
      if (this.closedByApp) return;
      if (kind === "websocket") {
        this.fellBackAt = Date.now();
        if (this.current === old && old) this.scheduleUpgrade(old);
      } else {
        this.warn("token refresh failed; retrying", error);
        if (this.current === old) this.refreshTimer = setTimeout(() => void this.rotate(null), 1000);
      }
    } finally {
      this.rotating = false;
    }
  }

  // ---- frames ----

  private frame(conn: Connection, frame: Frame): void {
    if (isStreamEvent(frame)) {
      this.streams.push(frame);
      return;
    }
    const event = frame as unknown as ServerEvent;
    switch (event.type) {
      case "typing":
        if (event.state === "start") this.incomingTyping.start(event.conversation_id, event.user_id);
        else this.incomingTyping.stop(event.conversation_id, event.user_id);
        return;
      case "receipt":
        this.emit(event);
        if (event.user_id !== this.userId) {
          for (const handle of this.tracker.update(event.conversation_id, event.delivered_seq, event.read_seq)) {
            this.emitStatus(handle, handle.status);
          }
        }
        return;
      case "resync":
        this.emit(event);
        void this.resumeAll(conn);
        return;
      case "conversation.created":
        this.streams.know(event.conversation.id, event.conversation.last_seq);
        this.emit(event);
        return;
      default:
        this.emit(event);
    }
  }

  private delivered(event: StreamEvent): void {
    this.emit(event);
    if (event.type === "message.new" && event.message.sender_id !== this.userId) {
      this.incomingTyping.stop(event.conversation_id, event.message.sender_id);
      if (this.options.autoDelivered !== false) this.scheduleDelivered(event.conversation_id);
    }
  }

  private scheduleDelivered(id: string): void {
    if (this.deliveredTimers.has(id)) return;
    this.deliveredTimers.set(
      id,
      setTimeout(() => {
        this.deliveredTimers.delete(id);
        const seq = this.streams.cursor(id);
        if (seq === undefined || (this.deliveredSent.get(id) ?? -1) >= seq || !this.current) return;
        this.deliveredSent.set(id, seq);
        this.current.request({ type: "delivered", conversation_id: id, seq }).catch(() => this.deliveredSent.delete(id));
      }, 50),
    );
  }

  // ---- resume and filling gaps ----

  /** `resume` with every cursor (in chunks of 1000); returns the merged statuses. */
  private async resumeAll(conn: Connection): Promise<Record<string, ResumeStatus> | null> {
    const cursors = Object.entries(this.streams.all());
    const chunks: [string, number][][] = [];
    for (let i = 0; i < cursors.length; i += RESUME_CHUNK) chunks.push(cursors.slice(i, i + RESUME_CHUNK));
    if (!chunks.length) chunks.push([]);
    const results = await Promise.all(chunks.map((chunk) => this.resume(conn, Object.fromEntries(chunk))));
    if (results.some((r) => r === null)) return null;
    return Object.assign({}, ...results);
  }

  private async resume(conn: Connection, cursors: Record<string, number>): Promise<Record<string, ResumeStatus> | null> {
    const ids = Object.keys(cursors);
    for (const id of ids) this.streams.hold(id);
    let statuses: Record<string, ResumeStatus>;
    try {
      const ack = await conn.request({ type: "resume", cursors });
      statuses = (ack.conversations ?? {}) as Record<string, ResumeStatus>;
    } catch (error) {
      if (!conn.closed) this.warn("resume failed", error);
      for (const id of ids) this.streams.release(id, false);
      return null;
    }
    await Promise.all(
      ids.map(async (id) => {
        const s = statuses[id];
        if (!s || s.status === "ok") {
          for (const user of s?.typing ?? []) this.incomingTyping.start(id, user);
          this.streams.release(id, true);
        } else if (s.status === "too_far_behind") {
          await this.reload(id, s.last_seq);
        } else {
          this.streams.release(id, true);
          this.streams.forget(id);
          this.emit({ type: "conversation.unavailable", conversation_id: id });
        }
      }),
    );
    return statuses;
  }

  /** too_far_behind: page the missed messages over REST up to last_seq, then go on from there. */
  private async reload(id: string, lastSeq: number): Promise<void> {
    try {
      let after = this.streams.cursor(id) ?? 0;
      for (;;) {
        const page = await this.rest.history(id, { after, limit: HISTORY_PAGE });
        let done = !page.has_more || page.messages.length === 0;
        for (const message of page.messages) {
          if (message.seq > lastSeq) {
            done = true;
            break;
          }
          this.streams.pushFill({ type: "message.new", conversation_id: id, seq: message.seq, message });
          after = message.seq;
        }
        if (done) break;
      }
      this.streams.advance(id, lastSeq);
    } catch (error) {
      // Still held (live events wait): after a pause, resume from the cursor,
      // which reloads over REST again while the conversation is too far behind.
      const failures = (this.reloadFailures.get(id) ?? 0) + 1;
      this.reloadFailures.set(id, failures);
      const delay = Math.min(30_000, 1000 * 2 ** (failures - 1));
      this.warn(`reloading ${id} over REST failed; retrying in ${delay / 1000} s`, error);
      this.later(() => {
        this.streams.release(id, false); // starts a fill if live events wait past the gap
        if (!this.streams.isHeld(id)) this.fillGap(id);
      }, delay);
      return;
    }
    this.reloadFailures.delete(id);
    this.streams.release(id, true);
    try {
      const conversation: Conversation = await this.rest.getConversation(id);
      this.emit({ type: "conversation.updated", conversation });
    } catch (error) {
      this.warn(`reloading conversation ${id} over REST failed`, error);
    }
  }

  /** A live event skipped seqs: ask for the missing ones with `resume` (REST when too far behind). */
  private fillGap(id: string): void {
    const conn = this.current;
    if (!conn || this.streams.isHeld(id)) return; // the next resume covers it
    const cursor = this.streams.cursor(id) ?? 0;
    void this.resume(conn, { [id]: cursor }).then((r) => {
      if (r === null && this.current === conn) this.later(() => this.fillGap(id), 1000);
    });
  }

  // ---- outbox ----

  /**
   * Send what the outbox holds, in order per conversation: only the oldest
   * entry of a conversation goes, and only while no earlier send of it is on
   * the wire, on this connection or on a replaced one still draining. So a
   * message is never stored before an earlier one of its conversation, also
   * when that one fails for a passing reason (`unavailable`, `rate_limited`,
   * `internal`, a timeout) and is sent again. Conversations go side by side.
   */
  private flushOutbox(): void {
    const conn = this.current;
    if (!conn || conn.closed || this.closedByApp) return;
    const now = Date.now();
    let onWire = 0;
    for (const s of this.sending.values()) if (s.conn === conn) onWire += 1;
    let wake = Infinity;
    const seen = new Set<string>();
    for (const entry of this.outbox.list()) {
      if (onWire >= MAX_SENDS_IN_FLIGHT) break; // more when these are answered
      const id = entry.conversation_id;
      if (seen.has(id)) continue; // not the oldest of its conversation
      seen.add(id);
      if (this.sending.has(id)) continue;
      const retry = this.sendRetry.get(id);
      if (retry && retry.at > now) {
        wake = Math.min(wake, retry.at);
        continue;
      }
      onWire += 1;
      this.sendEntry(conn, entry);
    }
    if (wake < Infinity) this.flushOutboxAt(wake);
  }

  private flushOutboxAt(at: number): void {
    if (this.outboxTimer && this.outboxTimerAt <= at) return;
    if (this.outboxTimer) clearTimeout(this.outboxTimer);
    this.outboxTimerAt = at;
    this.outboxTimer = setTimeout(
      () => {
        this.outboxTimer = null;
        this.flushOutbox();
      },
      Math.max(0, at - Date.now()),
    );
  }

  private sendEntry(conn: Connection, entry: OutboxEntry): void {
    const id = entry.conversation_id;
    const slot = { clientMsgId: entry.client_msg_id, conn };
    this.sending.set(id, slot);
    const frame: Frame = {
      type: "message.send",
      conversation_id: entry.conversation_id,
      body: entry.body,
      client_msg_id: entry.client_msg_id,
    };
    if (entry.kind) frame.kind = entry.kind;
    if (entry.attachments) frame.attachments = entry.attachments;
    if (entry.reply_to) frame.reply_to = entry.reply_to;
    const done = () => {
      if (this.sending.get(id) === slot) this.sending.delete(id);
    };
    conn.request(frame).then(
      (ack) => {
        done();
        this.sendRetry.delete(id);
        const message = ack.message as Message;
        const handle = this.outbox.acked(entry.client_msg_id, message);
        if (handle) {
          this.tracker.track(handle, message.seq);
          this.emitStatus(handle, "sent");
        }
        this.flushOutbox(); // the next of this conversation
      },
      (error: unknown) => {
        done();
        const code = error instanceof HubbubError ? error.code : "";
        if (isPermanent(error)) {
          this.sendRetry.delete(id);
          const handle = this.outbox.failed(entry.client_msg_id, error as Error);
          if (handle) this.emitStatus(handle, "failed", error as HubbubError);
        } else if (code !== "connection_lost" && code !== "not_connected") {
          // unavailable, rate_limited, internal, a timeout: the same entry
          // again (same client_msg_id) after a pause; nothing after it before.
          const failures = (this.sendRetry.get(id)?.failures ?? 0) + 1;
          const told = error instanceof HubbubError ? error.retryAfterMs : undefined;
          // Rate limited: as long as the server says (it knows when a token
          // is back), spread a little so a tab's conversations do not return
          // together; otherwise backoff with jitter.
          const pause =
            told !== undefined
              ? told + Math.random() * 100
              : Math.min(10_000, 250 * 2 ** Math.min(failures, 10)) * (0.5 + Math.random() / 2);
          this.sendRetry.set(id, { at: Date.now() + pause, failures });
        }
        // Connection lost: again at once on the current connection (this one
        // may have been a replaced one), or on the next one.
        this.flushOutbox();
      },
    );
  }

  private emitStatus(handle: OutgoingMessage, status: SendStatus, error?: HubbubError): void {
    const event: EventOf<"message.status"> = {
      type: "message.status",
      conversation_id: handle.conversation_id,
      client_msg_id: handle.client_msg_id,
      status,
    };
    if (handle.message) event.message = handle.message;
    if (error) event.error = { code: error.code, message: error.message };
    this.emit(event);
  }

  // ---- small requests ----

  private async reaction(messageId: string, emoji: string, add: boolean): Promise<{ changed: boolean; count: number }> {
    if (this.current) {
      const ack = await this.request({ type: add ? "reaction.add" : "reaction.remove", message_id: messageId, emoji });
      return { changed: ack.changed as boolean, count: ack.count as number };
    }
    return this.rest.react(messageId, emoji, add);
  }

  private async pointer(id: string, kind: "read" | "delivered", seq?: number): Promise<{ moved: boolean }> {
    const target = seq ?? this.streams.cursor(id) ?? 0;
    if (this.current) {
      const ack = await this.request({ type: kind, conversation_id: id, seq: target });
      return { moved: ack.moved as boolean };
    }
    const r = await this.rest.movePointer(id, kind, target);
    return { moved: r.moved };
  }

  // ---- browsers ----

  private listenToBrowser(): void {
    if (this.options.browserEvents === false) return;
    const w = typeof window !== "undefined" ? (window as Window) : undefined;
    const d = typeof document !== "undefined" ? (document as Document) : undefined;
    const n = typeof navigator !== "undefined" ? (navigator as Navigator) : undefined;
    if (n && (n as { onLine?: boolean }).onLine === false) this.online = false;
    if (!w || typeof w.addEventListener !== "function") return;
    const onOnline = () => this.setOnline(true);
    const onOffline = () => this.setOnline(false);
    const onVisible = () => {
      if (d?.visibilityState === "visible") this.reconnectNow();
    };
    w.addEventListener("online", onOnline);
    w.addEventListener("offline", onOffline);
    d?.addEventListener?.("visibilitychange", onVisible);
    this.removeBrowserListeners = () => {
      w.removeEventListener("online", onOnline);
      w.removeEventListener("offline", onOffline);
      d?.removeEventListener?.("visibilitychange", onVisible);
    };
  }
}

/** Create a client and start connecting. */
export function connect(options: ClientOptions): HubbubClient {
  return new HubbubClient(options);
}
