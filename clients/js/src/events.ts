/**
 * Types of hubbub's objects and frames (docs/protocol.md, docs/rest.md), and of
 * the events this SDK hands to the app: the server's frames plus a few of its own.
 */

export interface Attachment {
  id: string;
  name: string;
  content_type: string;
  size: number;
  url: string;
}

export interface Reaction {
  emoji: string;
  count: number;
  me: boolean;
}

export type MessageKind = "text" | "image" | "file" | "system";

export interface Message {
  id: string;
  conversation_id: string;
  seq: number;
  sender_id: string;
  sender_name: string | null;
  kind: MessageKind;
  body: string;
  client_msg_id: string | null;
  reply_to: string | null;
  created_at: string;
  edited_at: string | null;
  deleted_at: string | null;
  attachments: Attachment[];
  reactions: Reaction[];
}

export type Role = "owner" | "admin" | "member";
export type ConversationKind = "direct" | "group" | "room";

export interface Member {
  user_id: string;
  name: string | null;
  role: Role;
  joined_at: string;
  read_seq: number;
  delivered_seq: number;
}

export interface Conversation {
  id: string;
  kind: ConversationKind;
  title: string | null;
  created_by: string;
  created_at: string;
  last_seq: number;
  last_activity_at: string;
  members: Member[];
}

/**
 * An entry of `GET /api/v1/conversations`. `members` holds the first 20
 * members to join and you; `member_count` counts them all
 * (`rest.getConversation` lists them all).
 */
export interface ConversationSummary extends Conversation {
  member_count: number;
  last_message: Message | null;
  unread_count: number;
  read_seq: number;
}

export interface Upload {
  id: string;
  owner_id: string;
  name: string;
  content_type: string;
  size: number;
  created_at: string;
}

export interface Receipt {
  conversation_id: string;
  user_id: string;
  read_seq: number;
  delivered_seq: number;
}

export interface Presence {
  user_id: string;
  status: "online" | "offline";
  last_seen: string | null;
}

export interface Hello {
  type: "hello";
  user_id: string;
  connection_id: string;
  protocol_version: number;
  server_time: string;
  heartbeat_interval_ms: number;
  resume_window_ms: number;
  typing_ttl_ms: number;
  limits: {
    max_frame_bytes: number;
    max_body_chars: number;
    resume_limit: number;
    outbound_buffer_bytes: number;
    /** Users one connection may watch with `subscribePresence`. */
    presence_subscriptions: number;
  };
}

// ---- stream events: each has a conversation seq ------------------------------

interface StreamBase {
  conversation_id: string;
  seq: number;
}
export interface MessageNewEvent extends StreamBase {
  type: "message.new";
  message: Message;
}
export interface MessageEditedEvent extends StreamBase {
  type: "message.edited";
  message: Message;
}
export interface MessageDeletedEvent extends StreamBase {
  type: "message.deleted";
  message: Message;
  deleted_by: string;
}
export interface MemberJoinedEvent extends StreamBase {
  type: "member.joined";
  user_id: string;
  role: Role;
  by: string | null;
}
export interface MemberLeftEvent extends StreamBase {
  type: "member.left";
  user_id: string;
  by: string | null;
  reason: "left" | "removed";
}
export interface MemberRoleChangedEvent extends StreamBase {
  type: "member.role_changed";
  user_id: string;
  role: Role;
  by: string | null;
}
export interface ConversationRenamedEvent extends StreamBase {
  type: "conversation.renamed";
  title: string;
  by: string;
}

export type StreamEvent =
  | MessageNewEvent
  | MessageEditedEvent
  | MessageDeletedEvent
  | MemberJoinedEvent
  | MemberLeftEvent
  | MemberRoleChangedEvent
  | ConversationRenamedEvent;

export const STREAM_TYPES: ReadonlySet<string> = new Set([
  "message.new",
  "message.edited",
  "message.deleted",
  "member.joined",
  "member.left",
  "member.role_changed",
  "conversation.renamed",
]);

export function isStreamEvent(frame: { type: string }): frame is StreamEvent {
  return STREAM_TYPES.has(frame.type);
}

// ---- other server events -------------------------------------------------------

export interface ReceiptEvent {
  type: "receipt";
  conversation_id: string;
  user_id: string;
  kind: "read" | "delivered";
  seq: number;
  read_seq: number;
  delivered_seq: number;
}
export interface ReactionEvent {
  type: "reaction";
  conversation_id: string;
  message_id: string;
  user_id: string;
  emoji: string;
  action: "added" | "removed";
  count: number;
}
/**
 * Another member started or stopped typing. The SDK emits a `start` only when
 * the user was not already typing, and emits `stop` itself `typing_ttl_ms`
 * after the last start it received (`expired: true`).
 */
export interface TypingEvent {
  type: "typing";
  conversation_id: string;
  user_id: string;
  state: "start" | "stop";
  expired?: boolean;
}
/** The ack of a `presence` command (`subscribePresence` / `unsubscribePresence`). */
export interface PresenceSubscription {
  /** The current state of each user just subscribed to. */
  presence: Presence[];
  /** Users that may not be watched (no shared conversation, blocked, yourself). */
  refused: string[];
  /** How many users the connection now watches. */
  watching: number;
}
/** `GET /api/v1/conversations/{id}/presence`. */
export interface OnlineCount {
  conversation_id: string;
  members: number;
  online: number;
}
export interface PresenceEvent {
  type: "presence";
  user_id: string;
  status: "online" | "offline";
  last_seen: string | null;
}
export interface ConversationCreatedEvent {
  type: "conversation.created";
  conversation: Conversation;
}
/** Also emitted by the SDK after it reloaded a conversation (too_far_behind). */
export interface ConversationUpdatedEvent {
  type: "conversation.updated";
  conversation: Conversation;
}
export interface ResyncEvent {
  type: "resync";
  reason: string;
}

export type ServerEvent =
  | StreamEvent
  | ReceiptEvent
  | ReactionEvent
  | TypingEvent
  | PresenceEvent
  | ConversationCreatedEvent
  | ConversationUpdatedEvent
  | ResyncEvent;

// ---- events made by the SDK -----------------------------------------------------

export type ConnectionState = "connecting" | "connected" | "disconnected" | "closed";
export type TransportKind = "websocket" | "sse";

/** The connection's state changed. */
export interface StateEvent {
  type: "state";
  state: ConnectionState;
  transport: TransportKind | null;
  /** Close code of the connection that ended (for `disconnected`). */
  code?: number;
  reason?: string;
}

/** A connection said hello and its `resume` was answered: the client is current. */
export interface ResumedEvent {
  type: "resumed";
  transport: TransportKind;
  hello: Hello;
  /** The `resume` ack's `conversations`, merged over every chunk. */
  conversations: Record<string, ResumeStatus>;
}

export interface ResumeStatus {
  status: "ok" | "too_far_behind" | "unavailable";
  last_seq: number;
  replayed: number;
  typing?: string[];
}

/** You are no longer a member of this conversation (resume said `unavailable`). */
export interface ConversationUnavailableEvent {
  type: "conversation.unavailable";
  conversation_id: string;
}

export type SendStatus = "pending" | "sent" | "delivered" | "read" | "failed";

/** An outgoing message moved: pending -> sent -> delivered -> read (or failed). */
export interface MessageStatusEvent {
  type: "message.status";
  conversation_id: string;
  client_msg_id: string;
  status: SendStatus;
  message?: Message;
  error?: { code: string; message: string };
}

/** Something went wrong that the SDK handles itself (for logs). */
export interface WarningEvent {
  type: "warning";
  message: string;
  error?: unknown;
}

export type ClientEvent =
  | StateEvent
  | ResumedEvent
  | ConversationUnavailableEvent
  | MessageStatusEvent
  | WarningEvent;

export type HubbubEvent = ServerEvent | ClientEvent;
export type HubbubEventType = HubbubEvent["type"];
export type EventOf<K extends HubbubEventType> = Extract<HubbubEvent, { type: K }>;

/** A reply frame: `ack` or `error`. */
export interface AckFrame {
  type: "ack";
  id: number | string;
  [field: string]: unknown;
}
export interface ErrorFrame {
  type: "error";
  id: number | string | null;
  code: string;
  message: string;
  /** With `rate_limited`: milliseconds until the next send can pass. */
  retry_after_ms?: number;
}

export type ServerFrame = Hello | AckFrame | ErrorFrame | ServerEvent;
