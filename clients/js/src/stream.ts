/**
 * Cursors and ordering: the last seq the app was handed per conversation, and
 * the rule that it is handed each stream event once, in seq order. Events past
 * a gap wait in a buffer while the client fills the gap.
 */
import type { StreamEvent } from "./events.js";
import type { JsonSlot } from "./storage.js";

export interface StreamHooks {
  deliver(event: StreamEvent): void;
  /** A live event skipped seqs and no fill is running for its conversation. */
  gap(conversationId: string): void;
  /** The user's own id (a rejoin after removal jumps the seq: not a gap). */
  me(): string | null;
}

export class Streams {
  private readonly cursors = new Map<string, number>();
  private readonly buffers = new Map<string, StreamEvent[]>();
  private readonly holds = new Map<string, number>();
  private saveScheduled = false;

  constructor(
    private readonly slot: JsonSlot<Record<string, number>>,
    private readonly hooks: StreamHooks,
  ) {}

  async load(): Promise<void> {
    const saved: unknown = await this.slot.load();
    if (!saved || typeof saved !== "object" || Array.isArray(saved)) return; // nothing, or not cursors
    for (const [id, seq] of Object.entries(saved)) {
      if (Number.isSafeInteger(seq) && (seq as number) >= 0 && !this.cursors.has(id)) this.cursors.set(id, seq as number);
    }
  }

  cursor(id: string): number | undefined {
    return this.cursors.get(id);
  }

  all(): Record<string, number> {
    return Object.fromEntries(this.cursors);
  }

  /** A conversation seen over REST or in conversation.created: start at its last_seq if new. */
  know(id: string, lastSeq: number): void {
    if (this.cursors.has(id)) return;
    this.set(id, lastSeq);
  }

  forget(id: string): void {
    this.cursors.delete(id);
    this.buffers.delete(id);
    this.holds.delete(id);
    this.save();
  }

  isHeld(id: string): boolean {
    return (this.holds.get(id) ?? 0) > 0;
  }

  /** A fill or resume runs for this conversation: gaps wait for it. */
  hold(id: string): void {
    this.holds.set(id, (this.holds.get(id) ?? 0) + 1);
  }

  /**
   * The fill is over. With `acceptGap`, events still waiting past a gap are
   * handed on (the gap cannot be filled: the fill was exact); otherwise the
   * next fill is asked for.
   */
  release(id: string, acceptGap: boolean): void {
    const n = (this.holds.get(id) ?? 0) - 1;
    if (n > 0) {
      this.holds.set(id, n);
      return;
    }
    this.holds.delete(id);
    this.drain(id);
    const buffer = this.buffers.get(id);
    if (!buffer?.length) return;
    if (acceptGap) {
      this.set(id, buffer[0]!.seq - 1);
      this.drain(id);
    } else {
      this.hooks.gap(id);
    }
  }

  /** Move the cursor forward without events (after reloading over REST). */
  advance(id: string, seq: number): void {
    if ((this.cursors.get(id) ?? -1) < seq) this.set(id, seq);
    this.drain(id);
  }

  /** A live or replayed stream event. */
  push(event: StreamEvent): void {
    const id = event.conversation_id;
    const cursor = this.cursors.get(id);
    if (cursor === undefined) {
      // A conversation not known yet: its stream starts here for this client.
      this.accept(event);
      this.drain(id);
      return;
    }
    if (event.seq <= cursor) return; // had it
    const rejoin = event.type === "member.joined" && event.user_id === this.hooks.me();
    if (event.seq === cursor + 1 || rejoin) {
      this.accept(event);
      this.drain(id);
      return;
    }
    let buffer = this.buffers.get(id);
    if (!buffer) this.buffers.set(id, (buffer = []));
    if (!buffer.some((e) => e.seq === event.seq)) {
      buffer.push(event);
      buffer.sort((a, b) => a.seq - b.seq);
    }
    if (!this.isHeld(id)) this.hooks.gap(id);
  }

  /** An event made from REST history while a fill holds the conversation. */
  pushFill(event: StreamEvent): void {
    const cursor = this.cursors.get(event.conversation_id) ?? 0;
    if (event.seq > cursor) this.accept(event);
  }

  private accept(event: StreamEvent): void {
    this.set(event.conversation_id, event.seq);
    this.hooks.deliver(event);
  }

  private drain(id: string): void {
    const buffer = this.buffers.get(id);
    if (!buffer) return;
    while (buffer.length) {
      const cursor = this.cursors.get(id) ?? 0;
      const head = buffer[0]!;
      if (head.seq <= cursor) buffer.shift();
      else if (head.seq === cursor + 1) this.accept(buffer.shift()!);
      else break;
    }
    if (!buffer.length) this.buffers.delete(id);
  }

  private set(id: string, seq: number): void {
    this.cursors.set(id, seq);
    this.save();
  }

  private save(): void {
    if (this.saveScheduled) return;
    this.saveScheduled = true;
    setTimeout(() => {
      this.saveScheduled = false;
      this.slot.save(this.all());
    }, 0);
  }
}
