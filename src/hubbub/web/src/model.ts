/**
 * What the app knows of each conversation: its object, the messages loaded so
 * far (by id), paging state, every member's read and delivered pointers, and
 * the unread count. Plain data and small functions; no DOM here.
 */
import type { Conversation, ConversationSummary, Message, ReactionEvent, SendStatus } from "@hubbub/client";

export interface Pointers {
  read: number;
  delivered: number;
}

export interface Conv {
  info: Conversation;
  last: Message | null;
  unread: number;
  /** Messages loaded (history pages and live ones since), by id. */
  messages: Map<string, Message>;
  loaded: boolean;
  hasMore: boolean;
  loading: boolean;
  pointers: Map<string, Pointers>;
  /** All members; a conversation list entry lists only the first of a large group's. */
  memberCount: number;
}

export function newConv(info: Conversation, summary?: ConversationSummary): Conv {
  const conv: Conv = {
    info,
    last: summary?.last_message ?? null,
    unread: summary?.unread_count ?? 0,
    messages: new Map(),
    loaded: false,
    hasMore: true,
    loading: false,
    pointers: new Map(),
    memberCount: info.members.length,
  };
  setMembers(conv, info);
  return conv;
}

/** A newer conversation object (members, title); pointers only move forward. */
export function setMembers(conv: Conv, info: Conversation | ConversationSummary): void {
  conv.info = info;
  conv.memberCount = "member_count" in info ? info.member_count : info.members.length;
  for (const m of info.members) movePointers(conv, m.user_id, m.read_seq, m.delivered_seq);
}

export function movePointers(conv: Conv, userId: string, read: number, delivered: number): void {
  const p = conv.pointers.get(userId) ?? { read: 0, delivered: 0 };
  conv.pointers.set(userId, { read: Math.max(p.read, read), delivered: Math.max(p.delivered, delivered, read) });
}

/** A message as now (new, edited, deleted); keeps `last` current. */
export function putMessage(conv: Conv, message: Message): void {
  if (conv.loaded || conv.loading || conv.messages.has(message.id)) conv.messages.set(message.id, message);
  if (!conv.last || message.seq >= conv.last.seq) conv.last = message;
  if (message.created_at > conv.info.last_activity_at && !message.deleted_at) conv.info.last_activity_at = message.created_at;
}

export function sortedMessages(conv: Conv): Message[] {
  return [...conv.messages.values()].sort((a, b) => a.seq - b.seq);
}

export function oldestSeq(conv: Conv): number | undefined {
  let seq: number | undefined;
  for (const m of conv.messages.values()) if (seq === undefined || m.seq < seq) seq = m.seq;
  return seq;
}

/** The tick of a message I sent: read or delivered once another member's pointer reaches it. */
export function statusOf(conv: Conv, message: Message, me: string): SendStatus {
  let read = 0;
  let delivered = 0;
  for (const [user, p] of conv.pointers) {
    if (user === me) continue;
    read = Math.max(read, p.read);
    delivered = Math.max(delivered, p.delivered);
  }
  if (message.seq <= read) return "read";
  if (message.seq <= delivered) return "delivered";
  return "sent";
}

/** A `reaction` event applied to a message's counts (`me` follows my own reactions). */
export function applyReaction(message: Message, event: ReactionEvent, me: string): Message {
  const reactions = message.reactions.map((r) => ({ ...r }));
  let entry = reactions.find((r) => r.emoji === event.emoji);
  if (!entry) {
    entry = { emoji: event.emoji, count: 0, me: false };
    reactions.push(entry);
  }
  entry.count = event.count;
  if (event.user_id === me) entry.me = event.action === "added";
  return { ...message, reactions: reactions.filter((r) => r.count > 0) };
}

/** The name to show for a conversation. */
export function titleOf(conv: Conv, me: string): string {
  if (conv.info.title) return conv.info.title;
  const other = conv.info.members.find((m) => m.user_id !== me);
  return other ? other.name || other.user_id : "Just you";
}

/** The other user of a direct conversation. */
export function partnerOf(conv: Conv, me: string): string | null {
  if (conv.info.kind !== "direct") return null;
  return conv.info.members.find((m) => m.user_id !== me)?.user_id ?? null;
}

export function nameOf(conv: Conv | undefined, userId: string): string {
  const member = conv?.info.members.find((m) => m.user_id === userId);
  return member?.name || userId;
}

/** One line of preview text for a message. */
export function preview(message: Message | null): string {
  if (!message) return "No messages yet";
  if (message.deleted_at) return "Message deleted";
  if (message.kind === "image") return "Photo" + (message.body ? ": " + message.body : "");
  if (message.kind === "file") return "File: " + (message.body || message.attachments[0]?.name || "");
  return message.body;
}
