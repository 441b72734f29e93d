/**
 * hubbub's REST API (docs/rest.md). Every call sends `Authorization: Bearer`
 * with the current token and is retried once with a fresh token on a 401.
 */
import type { Conversation, ConversationKind, ConversationSummary, Message, OnlineCount, Presence, Receipt, Upload } from "./events.js";
import { HubbubError } from "./errors.js";
import type { TokenManager } from "./token.js";
import type { FetchLike } from "./transport/types.js";

export interface HistoryPage {
  messages: Message[];
  has_more: boolean;
  receipts: Receipt[];
}

export interface HistoryQuery {
  before?: number;
  after?: number;
  limit?: number;
}

export interface CreateConversation {
  kind: ConversationKind;
  members: string[];
  title?: string;
}

export interface SearchQuery {
  conversationId?: string;
  limit?: number;
  offset?: number;
}

export interface SearchResult {
  results: Message[];
  next_offset: number | null;
}

export interface Room {
  id: string;
  title: string;
  created_by: string;
  created_at: string;
  last_activity_at: string;
  member_count: number;
  joined: boolean;
}

/** A device that receives push notifications (docs/push.md). */
export interface PushDevice {
  id: string;
  provider: "expo" | "webhook";
  token: string;
  platform: "ios" | "android" | "web";
  app_id: string | null;
  created_at: string;
  updated_at: string;
}

export interface RegisterDevice {
  provider: "expo" | "webhook";
  /** Expo: `ExponentPushToken[...]`; webhook: whatever your backend forwards (an FCM or APNs token). */
  token: string;
  platform: "ios" | "android" | "web";
  app_id?: string;
}

export type NotifyLevel = "all" | "mentions" | "none";

/** What the user is pushed of one conversation: `level` until `until` (then `all`). */
export interface NotificationSetting {
  conversation_id: string;
  level: NotifyLevel;
  until: string | null;
}

/** A file to upload: a `Blob`/`File` (browsers, Node 18+), or React Native's `{uri, name, type}`. */
export type UploadInput = Blob | { uri: string; name: string; type: string };

type Query = Record<string, string | number | undefined | string[]>;

interface CallOptions {
  query?: Query;
  body?: unknown;
  form?: () => FormData;
  signal?: AbortSignal;
}

export class RestClient {
  constructor(
    private readonly baseUrl: string,
    private readonly tokens: TokenManager,
    private readonly fetchImpl: FetchLike,
    /** Called with every conversation the API returns (the client learns its last_seq). */
    private readonly seen: (conversation: Conversation) => void = () => {},
  ) {}

  /** Any call: `method`, a path under the server (`/api/v1/...`), JSON in, JSON out. */
  async call<T = unknown>(method: string, path: string, options: CallOptions = {}): Promise<T> {
    let token = (await this.tokens.get()).token;
    for (let attempt = 0; ; attempt++) {
      const response = await this.send(method, path, token, options);
      if (response.status === 401 && attempt === 0) {
        token = (await this.tokens.refresh()).token;
        continue;
      }
      const text = await response.text();
      let json: unknown = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        // not JSON
      }
      if (!response.ok) {
        const err = (json as { error?: { code?: string; message?: string } } | null)?.error;
        const after = Number(response.headers.get("retry-after") ?? NaN);
        throw new HubbubError(
          err?.code ?? "http_" + response.status,
          err?.message ?? `HTTP ${response.status}`,
          response.status,
          Number.isFinite(after) ? after * 1000 : undefined,
        );
      }
      return json as T;
    }
  }

  private async send(method: string, path: string, token: string, options: CallOptions): Promise<Response> {
    let url = this.baseUrl + path;
    if (options.query) {
      const params: string[] = [];
      for (const [key, value] of Object.entries(options.query)) {
        if (value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) {
          params.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(v))}`);
        }
      }
      if (params.length) url += "?" + params.join("&");
    }
    const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
    let body: string | FormData | undefined;
    if (options.form) body = options.form();
    else if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    try {
      return await this.fetchImpl(url, { method, headers, body, signal: options.signal });
    } catch (error) {
      throw new HubbubError("network", `${method} ${path} failed: ${String(error)}`);
    }
  }

  private conv(result: { conversation: Conversation }): Conversation {
    this.seen(result.conversation);
    return result.conversation;
  }

  // ---- conversations ----

  /** Every conversation, newest activity first: follows the pages to the end. */
  async listConversations(): Promise<ConversationSummary[]> {
    const all: ConversationSummary[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.listConversationsPage({ limit: 200, cursor });
      all.push(...page.conversations);
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
    return all;
  }

  /** One page of conversations (default 50, at most 200) and the cursor of the next. */
  async listConversationsPage(
    query: { limit?: number; cursor?: string } = {},
  ): Promise<{ conversations: ConversationSummary[]; nextCursor: string | null }> {
    const r = await this.call<{ conversations: ConversationSummary[]; next_cursor: string | null }>(
      "GET",
      "/api/v1/conversations",
      { query },
    );
    for (const c of r.conversations) this.seen(c);
    return { conversations: r.conversations, nextCursor: r.next_cursor ?? null };
  }

  async getConversation(id: string): Promise<Conversation> {
    return this.conv(await this.call("GET", `/api/v1/conversations/${enc(id)}`));
  }

  async createConversation(request: CreateConversation): Promise<Conversation> {
    return this.conv(await this.call("POST", "/api/v1/conversations", { body: request }));
  }

  async renameConversation(id: string, title: string): Promise<Conversation> {
    return this.conv(await this.call("PATCH", `/api/v1/conversations/${enc(id)}`, { body: { title } }));
  }

  async addMembers(id: string, members: string[]): Promise<Conversation> {
    return this.conv(await this.call("POST", `/api/v1/conversations/${enc(id)}/members`, { body: { members } }));
  }

  async removeMember(id: string, userId: string): Promise<void> {
    await this.call("DELETE", `/api/v1/conversations/${enc(id)}/members/${enc(userId)}`);
  }

  async setRole(id: string, userId: string, role: "owner" | "admin" | "member"): Promise<Conversation> {
    return this.conv(await this.call("PUT", `/api/v1/conversations/${enc(id)}/members/${enc(userId)}/role`, { body: { role } }));
  }

  async leaveConversation(id: string): Promise<void> {
    await this.call("POST", `/api/v1/conversations/${enc(id)}/leave`);
  }

  async hideConversation(id: string, hidden = true): Promise<void> {
    await this.call(hidden ? "POST" : "DELETE", `/api/v1/conversations/${enc(id)}/hide`);
  }

  async listRooms(query: { limit?: number; offset?: number } = {}): Promise<Room[]> {
    return (await this.call<{ rooms: Room[] }>("GET", "/api/v1/rooms", { query })).rooms;
  }

  async joinRoom(id: string): Promise<Conversation> {
    return this.conv(await this.call("POST", `/api/v1/rooms/${enc(id)}/join`));
  }

  async unread(): Promise<{ total: number; conversations: Record<string, number> }> {
    return this.call("GET", "/api/v1/unread");
  }

  // ---- messages ----

  /** One page of history, ascending seq (rest.md: `before`, `after`, `limit`). */
  async history(conversationId: string, query: HistoryQuery = {}): Promise<HistoryPage> {
    return this.call("GET", `/api/v1/conversations/${enc(conversationId)}/messages`, { query: { ...query } });
  }

  async getMessage(id: string): Promise<Message> {
    return (await this.call<{ message: Message }>("GET", `/api/v1/messages/${enc(id)}`)).message;
  }

  async messageVersions(id: string): Promise<{ body: string; written_at: string }[]> {
    return (await this.call<{ versions: { body: string; written_at: string }[] }>("GET", `/api/v1/messages/${enc(id)}/history`)).versions;
  }

  async sendMessage(conversationId: string, body: Record<string, unknown>): Promise<Message> {
    const r = await this.call<{ message: Message }>("POST", `/api/v1/conversations/${enc(conversationId)}/messages`, { body });
    return r.message;
  }

  async editMessage(id: string, body: string): Promise<Message> {
    return (await this.call<{ message: Message }>("PATCH", `/api/v1/messages/${enc(id)}`, { body: { body } })).message;
  }

  async deleteMessage(id: string): Promise<Message> {
    return (await this.call<{ message: Message }>("DELETE", `/api/v1/messages/${enc(id)}`)).message;
  }

  async react(id: string, emoji: string, add: boolean): Promise<{ changed: boolean; count: number }> {
    return this.call(add ? "PUT" : "DELETE", `/api/v1/messages/${enc(id)}/reactions/${enc(emoji)}`);
  }

  async movePointer(conversationId: string, kind: "read" | "delivered", seq: number): Promise<{ moved: boolean }> {
    return this.call("POST", `/api/v1/conversations/${enc(conversationId)}/${kind}`, { body: { seq } });
  }

  async search(q: string, query: SearchQuery = {}): Promise<SearchResult> {
    return this.call("GET", "/api/v1/search", {
      query: { q, conversation_id: query.conversationId, limit: query.limit, offset: query.offset },
    });
  }

  // ---- uploads ----

  /** Upload one file (multipart field `file`); send it with `send(..., {kind, attachments: [upload.id]})`. */
  async upload(file: UploadInput, name?: string): Promise<{ upload: Upload; url: string }> {
    return this.call("POST", "/api/v1/uploads", {
      form: () => {
        const form = new FormData();
        if (typeof Blob !== "undefined" && file instanceof Blob) {
          const fileName = name ?? (file as Blob & { name?: string }).name ?? "file";
          form.append("file", file, fileName);
        } else {
          // React Native's FormData takes {uri, name, type}.
          const rn = file as { uri: string; name: string; type: string };
          form.append("file", { ...rn, name: name ?? rn.name } as unknown as Blob);
        }
        return form;
      },
    });
  }

  /** Download a file (the URL of an attachment, or an upload id) as a Blob. */
  async download(urlOrId: string): Promise<Blob> {
    const path = urlOrId.startsWith("/") ? urlOrId : `/api/v1/uploads/${enc(urlOrId)}`;
    let token = (await this.tokens.get()).token;
    for (let attempt = 0; ; attempt++) {
      const response = await this.send("GET", path, token, {});
      if (response.status === 401 && attempt === 0) {
        token = (await this.tokens.refresh()).token;
        continue;
      }
      if (!response.ok) throw new HubbubError("http_" + response.status, `download failed: HTTP ${response.status}`, response.status);
      return response.blob();
    }
  }

  // ---- people ----

  async presence(userIds: string[]): Promise<Presence[]> {
    return (await this.call<{ presence: Presence[] }>("GET", "/api/v1/presence", { query: { user: userIds } })).presence;
  }

  /** How many members of a conversation are online (any member may ask). */
  async onlineCount(conversationId: string): Promise<OnlineCount> {
    return this.call<OnlineCount>("GET", `/api/v1/conversations/${enc(conversationId)}/presence`);
  }

  async blocks(): Promise<string[]> {
    return (await this.call<{ blocked: string[] }>("GET", "/api/v1/blocks")).blocked;
  }

  async block(userId: string, blocked = true): Promise<void> {
    await this.call(blocked ? "POST" : "DELETE", `/api/v1/blocks/${enc(userId)}`);
  }

  /** Register this device for pushes; call it at every start (idempotent per token). */
  async registerDevice(device: RegisterDevice): Promise<PushDevice> {
    return (await this.call<{ device: PushDevice }>("POST", "/api/v1/push/devices", { body: device })).device;
  }

  async devices(): Promise<PushDevice[]> {
    return (await this.call<{ devices: PushDevice[] }>("GET", "/api/v1/push/devices")).devices;
  }

  /** Forget a device (on sign-out). */
  async deleteDevice(id: string): Promise<void> {
    await this.call("DELETE", `/api/v1/push/devices/${enc(id)}`);
  }

  async notifications(conversationId: string): Promise<NotificationSetting> {
    const path = `/api/v1/conversations/${enc(conversationId)}/notifications`;
    return (await this.call<{ notifications: NotificationSetting }>("GET", path)).notifications;
  }

  /** Push `all` messages, only `mentions` (and replies), or `none`; `until` (a Date or RFC 3339) ends it. */
  async setNotifications(conversationId: string, level: NotifyLevel, until?: Date | string): Promise<NotificationSetting> {
    const path = `/api/v1/conversations/${enc(conversationId)}/notifications`;
    const body = { level, until: until === undefined ? null : instant(until) };
    return (await this.call<{ notifications: NotificationSetting }>("PUT", path, { body })).notifications;
  }

  async doNotDisturb(): Promise<{ until: string | null }> {
    return (await this.call<{ do_not_disturb: { until: string | null } }>("GET", "/api/v1/push/do-not-disturb")).do_not_disturb;
  }

  /** No pushes at all until then; `null` ends do-not-disturb. */
  async setDoNotDisturb(until: Date | string | null): Promise<{ until: string | null }> {
    const body = { until: until === null ? null : instant(until) };
    return (await this.call<{ do_not_disturb: { until: string | null } }>("PUT", "/api/v1/push/do-not-disturb", { body }))
      .do_not_disturb;
  }
}

function instant(value: Date | string): string {
  return typeof value === "string" ? value : value.toISOString();
}

function enc(part: string): string {
  return encodeURIComponent(part);
}
