/**
 * The outbox: messages the app sent that the server has not acked yet, kept in
 * storage and in send order, and the sent messages whose delivered/read status
 * the client still follows from receipts.
 */
import type { Message, MessageKind, SendStatus } from "./events.js";
import type { JsonSlot } from "./storage.js";

export interface OutboxEntry {
  client_msg_id: string;
  conversation_id: string;
  body: string;
  kind?: MessageKind;
  attachments?: string[];
  reply_to?: string | null;
  /** ms since the epoch. */
  created_at: number;
}

/** The handle `send()` returns; `status` and `message` follow the message's progress. */
export interface OutgoingMessage {
  readonly client_msg_id: string;
  readonly conversation_id: string;
  status: SendStatus;
  /** The stored message, once acked. */
  message?: Message;
  /** Resolves with the stored message when acked; rejects when refused for good (or the client is closed). */
  readonly sent: Promise<Message>;
}

interface Handle extends OutgoingMessage {
  resolve(message: Message): void;
  reject(error: Error): void;
}

/** An outbox entry read from storage, or null when it is not one. */
function validEntry(item: unknown): OutboxEntry | null {
  if (!item || typeof item !== "object") return null;
  const e = item as Record<string, unknown>;
  const id = e.client_msg_id;
  if (typeof id !== "string" || !id || typeof e.conversation_id !== "string" || !e.conversation_id) return null;
  const entry: OutboxEntry = {
    client_msg_id: id,
    conversation_id: e.conversation_id,
    body: typeof e.body === "string" ? e.body : "",
    created_at: typeof e.created_at === "number" ? e.created_at : Date.now(),
  };
  if (typeof e.kind === "string") entry.kind = e.kind as MessageKind;
  if (Array.isArray(e.attachments) && e.attachments.every((a) => typeof a === "string")) entry.attachments = e.attachments as string[];
  if (typeof e.reply_to === "string") entry.reply_to = e.reply_to;
  return entry;
}

export class Outbox {
  private entries: OutboxEntry[] = [];
  private readonly handles = new Map<string, Handle>();

  constructor(private readonly slot: JsonSlot<OutboxEntry[]>) {}

  /** Merge what storage holds (entries from before a reload go first); what is not an entry is dropped. */
  async load(): Promise<void> {
    const raw: unknown = await this.slot.load();
    const known = new Set(this.entries.map((e) => e.client_msg_id));
    const saved: OutboxEntry[] = [];
    for (const item of Array.isArray(raw) ? raw : []) {
      const entry = validEntry(item);
      if (entry && !known.has(entry.client_msg_id)) {
        known.add(entry.client_msg_id);
        saved.push(entry);
      }
    }
    this.entries = [...saved, ...this.entries];
    for (const e of this.entries) this.handle(e);
    this.save();
  }

  add(entry: OutboxEntry): OutgoingMessage {
    const existing = this.handles.get(entry.client_msg_id);
    if (existing) return existing;
    this.entries.push(entry);
    this.save();
    return this.handle(entry);
  }

  list(): OutboxEntry[] {
    return [...this.entries];
  }

  get(clientMsgId: string): OutgoingMessage | undefined {
    return this.handles.get(clientMsgId);
  }

  /** Acked: out of the outbox. */
  acked(clientMsgId: string, message: Message): OutgoingMessage | undefined {
    const handle = this.remove(clientMsgId);
    if (handle) {
      handle.message = message;
      handle.status = "sent";
      handle.resolve(message);
    }
    return handle;
  }

  /** Refused for good: out of the outbox. */
  failed(clientMsgId: string, error: Error): OutgoingMessage | undefined {
    const handle = this.remove(clientMsgId);
    if (handle) {
      handle.status = "failed";
      handle.reject(error);
    }
    return handle;
  }

  /** The client is closed: the entries stay in storage, the promises fail. */
  abandon(error: Error): void {
    for (const handle of this.handles.values()) handle.reject(error);
    this.handles.clear();
  }

  private remove(clientMsgId: string): Handle | undefined {
    this.entries = this.entries.filter((e) => e.client_msg_id !== clientMsgId);
    this.save();
    const handle = this.handles.get(clientMsgId);
    this.handles.delete(clientMsgId);
    return handle;
  }

  private handle(entry: OutboxEntry): Handle {
    let handle = this.handles.get(entry.client_msg_id);
    if (handle) return handle;
    let resolve!: (m: Message) => void;
    let reject!: (e: Error) => void;
    const sent = new Promise<Message>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    sent.catch(() => {}); // the app need not wait for it
    handle = {
      client_msg_id: entry.client_msg_id,
      conversation_id: entry.conversation_id,
      status: "pending",
      sent,
      resolve,
      reject,
    };
    this.handles.set(entry.client_msg_id, handle);
    return handle;
  }

  private save(): void {
    this.slot.save(this.entries);
  }
}

interface Tracked {
  handle: OutgoingMessage;
  seq: number;
}

/** Sent messages waiting for the other members' delivered and read pointers. */
export class ReceiptTracker {
  private readonly byConversation = new Map<string, Tracked[]>();
  static readonly MAX_PER_CONVERSATION = 500;

  track(handle: OutgoingMessage, seq: number): void {
    let list = this.byConversation.get(handle.conversation_id);
    if (!list) this.byConversation.set(handle.conversation_id, (list = []));
    list.push({ handle, seq });
    if (list.length > ReceiptTracker.MAX_PER_CONVERSATION) list.shift();
  }

  /** Another member's pointers moved: the handles whose status changed. */
  update(conversationId: string, deliveredSeq: number, readSeq: number): OutgoingMessage[] {
    const list = this.byConversation.get(conversationId);
    if (!list) return [];
    const changed: OutgoingMessage[] = [];
    for (const t of list) {
      if (t.seq <= readSeq && t.handle.status !== "read") {
        t.handle.status = "read";
        changed.push(t.handle);
      } else if (t.seq <= deliveredSeq && t.handle.status === "sent") {
        t.handle.status = "delivered";
        changed.push(t.handle);
      }
    }
    const left = list.filter((t) => t.handle.status !== "read");
    if (left.length) this.byConversation.set(conversationId, left);
    else this.byConversation.delete(conversationId);
    return changed;
  }
}
