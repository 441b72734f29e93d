/**
 * Typing, both ways: a handle that sends `start` while the user types (renewed
 * every few seconds) and `stop` when they pause, and the indicators of the
 * other members, cleared `typing_ttl_ms` after their last start.
 */
import type { TypingEvent } from "./events.js";

export interface TypingHandle {
  /** Call on every keystroke (input event). */
  keystroke(): void;
  /** The user stopped (cleared the input, left the screen). */
  stop(): void;
}

export class OutgoingTyping implements TypingHandle {
  private active = false;
  private lastStart = 0;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly sendState: (state: "start" | "stop") => void,
    private readonly ttlMs: () => number,
    private readonly idleMs: number,
  ) {}

  keystroke(): void {
    const now = Date.now();
    const renewMs = Math.max(500, Math.min(2500, this.ttlMs() * 0.4));
    if (!this.active || now - this.lastStart >= renewMs) {
      this.active = true;
      this.lastStart = now;
      this.sendState("start");
    }
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.stop(), Math.min(this.idleMs, this.ttlMs()));
  }

  stop(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (!this.active) return;
    this.active = false;
    this.sendState("stop");
  }

  /** The server ended it (a message was sent, the connection closed). */
  reset(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    this.active = false;
  }
}

export class IncomingTyping {
  private readonly timers = new Map<string, Map<string, ReturnType<typeof setTimeout>>>();

  constructor(
    private readonly emit: (event: TypingEvent) => void,
    private readonly ttlMs: () => number,
  ) {}

  users(conversationId: string): string[] {
    return [...(this.timers.get(conversationId)?.keys() ?? [])];
  }

  start(conversationId: string, userId: string): void {
    let users = this.timers.get(conversationId);
    if (!users) this.timers.set(conversationId, (users = new Map()));
    const old = users.get(userId);
    if (old) clearTimeout(old);
    users.set(
      userId,
      setTimeout(() => this.stop(conversationId, userId, true), this.ttlMs()),
    );
    if (!old) this.emit({ type: "typing", conversation_id: conversationId, user_id: userId, state: "start" });
  }

  stop(conversationId: string, userId: string, expired = false): void {
    const users = this.timers.get(conversationId);
    const timer = users?.get(userId);
    if (!users || !timer) return;
    clearTimeout(timer);
    users.delete(userId);
    if (!users.size) this.timers.delete(conversationId);
    const event: TypingEvent = { type: "typing", conversation_id: conversationId, user_id: userId, state: "stop" };
    if (expired) event.expired = true;
    this.emit(event);
  }

  clear(): void {
    for (const users of this.timers.values()) for (const t of users.values()) clearTimeout(t);
    this.timers.clear();
  }
}
