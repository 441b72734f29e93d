/**
 * One open session on a transport: waits for hello, matches every ack and
 * error to its request by id (with a timeout), pings when the line is silent,
 * and fails what is still pending when it closes.
 */
import type { AckFrame, ErrorFrame, Hello, TransportKind } from "./events.js";
import { HubbubError } from "./errors.js";
import type { Transport } from "./transport/types.js";
import { CLOSE_HEARTBEAT_TIMEOUT, CLOSE_OPEN_TIMEOUT } from "./transport/types.js";
import { utf8Exceeds } from "./utf8.js";

export interface ConnectionHooks {
  nextId(): number;
  requestTimeoutMs: number;
  openTimeoutMs: number;
  pingTimeoutMs: number;
  /** Silence (ms) before a ping; default: hello's heartbeat_interval_ms. */
  heartbeatMs?: number;
  onOpen(conn: Connection, hello: Hello): void;
  onFrame(conn: Connection, frame: { type: string; [key: string]: unknown }): void;
  onClose(conn: Connection, code: number, reason: string): void;
}

interface Pending {
  resolve(ack: AckFrame): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

export class Connection {
  hello: Hello | null = null;
  closed = false;
  closeCode = 0;
  closeReason = "";
  /** Resolves with hello; rejects with the close when the session never opened. */
  readonly opened: Promise<Hello>;
  private readonly pending = new Map<number | string, Pending>();
  private lastActivity = Date.now();
  private heartbeat: ReturnType<typeof setInterval> | null = null;
  private openTimer: ReturnType<typeof setTimeout> | null;
  private draining = false;
  private drainTimer: ReturnType<typeof setTimeout> | null = null;
  private pinging = false;
  private resolveOpen!: (hello: Hello) => void;
  private rejectOpen!: (error: Error) => void;

  constructor(
    readonly transport: Transport,
    private readonly hooks: ConnectionHooks,
  ) {
    this.opened = new Promise<Hello>((resolve, reject) => {
      this.resolveOpen = resolve;
      this.rejectOpen = reject;
    });
    this.opened.catch(() => {});
    this.openTimer = setTimeout(() => this.close(CLOSE_OPEN_TIMEOUT, "no hello in time"), hooks.openTimeoutMs);
    transport.onactivity = () => {
      this.lastActivity = Date.now();
    };
    transport.onframe = (frame) => this.frame(frame);
    transport.onclose = (code, reason) => this.finished(code, reason);
  }

  get kind(): TransportKind {
    return this.transport.kind;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Send a request frame (an `id` is added); resolves with its ack, rejects with its error.
   * A frame over hello's `max_frame_bytes` is not sent: it rejects with `too_large` at once
   * (the server would refuse it, and beyond its hard ceiling close the connection with 1009).
   */
  request(frame: { type: string; [key: string]: unknown }, timeoutMs = this.hooks.requestTimeoutMs): Promise<AckFrame> {
    if (this.closed || !this.hello) {
      return Promise.reject(new HubbubError("not_connected", `cannot send ${frame.type}: not connected`));
    }
    const id = this.hooks.nextId();
    const max = this.hello.limits?.max_frame_bytes;
    if (typeof max === "number" && max > 0 && utf8Exceeds(JSON.stringify({ ...frame, id }), max)) {
      return Promise.reject(new HubbubError("too_large", `the ${frame.type} frame is over the server's ${max}-byte frame limit`));
    }
    return new Promise<AckFrame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new HubbubError("timeout", `no reply to ${frame.type} within ${timeoutMs} ms`));
        this.settled();
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.transport.send({ ...frame, id });
    });
  }

  /** Check the line now: a ping that must be answered in time, or the connection is dropped. */
  probe(timeoutMs = this.hooks.pingTimeoutMs): void {
    if (this.pinging || this.closed || !this.hello) return;
    this.pinging = true;
    this.request({ type: "ping" }, timeoutMs).then(
      () => {
        this.pinging = false;
      },
      (error: HubbubError) => {
        this.pinging = false;
        if (error.code === "timeout") this.close(CLOSE_HEARTBEAT_TIMEOUT, "no answer to ping");
      },
    );
  }

  /** Stop being the client's connection: close once every pending request is answered. */
  drain(): void {
    this.draining = true;
    this.drainTimer = setTimeout(() => this.close(1000, "replaced"), this.hooks.requestTimeoutMs);
    this.settled();
  }

  close(code = 1000, reason = ""): void {
    if (this.closed) return;
    this.transport.close(code, reason);
    this.finished(code, reason); // in case the transport had already gone quiet
  }

  private settled(): void {
    if (this.draining && this.pending.size === 0) this.close(1000, "replaced");
  }

  private frame(frame: { type: string; [key: string]: unknown }): void {
    this.lastActivity = Date.now();
    if (frame.type === "hello" && !this.hello) {
      this.hello = frame as unknown as Hello;
      if (this.openTimer) clearTimeout(this.openTimer);
      this.openTimer = null;
      const interval = this.hooks.heartbeatMs ?? this.hello.heartbeat_interval_ms ?? 30_000;
      this.heartbeat = setInterval(
        () => {
          if (Date.now() - this.lastActivity >= interval) this.probe();
        },
        Math.max(100, Math.min(interval / 2, 5000)),
      );
      this.hooks.onOpen(this, this.hello);
      this.resolveOpen(this.hello);
      return;
    }
    if ((frame.type === "ack" || frame.type === "error") && frame.id !== null && frame.id !== undefined) {
      const pending = this.pending.get(frame.id as number);
      if (pending) {
        this.pending.delete(frame.id as number);
        clearTimeout(pending.timer);
        if (frame.type === "ack") pending.resolve(frame as AckFrame);
        else {
          const e = frame as unknown as ErrorFrame;
          const wait = typeof e.retry_after_ms === "number" ? e.retry_after_ms : undefined;
          pending.reject(new HubbubError(e.code, e.message, undefined, wait));
        }
        this.settled();
      }
      return;
    }
    if (!this.draining) this.hooks.onFrame(this, frame);
  }

  private finished(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.closeCode = code;
    this.closeReason = reason;
    if (this.openTimer) clearTimeout(this.openTimer);
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.drainTimer) clearTimeout(this.drainTimer);
    const error = new HubbubError("connection_lost", `connection lost (${code}${reason ? ": " + reason : ""}) before the reply`);
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      this.pending.delete(id);
      pending.reject(error);
    }
    if (!this.hello) this.rejectOpen(new HubbubError("connection_lost", `could not connect (${code}${reason ? ": " + reason : ""})`));
    this.hooks.onClose(this, code, reason);
  }
}
