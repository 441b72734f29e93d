/**
 * The HTTP fallback: Server-Sent Events read with a streaming `fetch` (so the
 * Authorization header can be sent), commands POSTed to `/sse/{connection_id}`,
 * one POST in flight at a time, queued frames batched into the next one.
 */
import type { FetchLike, Transport, TransportOptions } from "./types.js";
import { CLOSE_ABNORMAL, CLOSE_UNAUTHORIZED } from "./types.js";
import { utf8Length } from "../utf8.js";

/**
 * Per POST: at most this many bytes of frames (UTF-8; hubbub refuses bodies
 * over 1 MiB with 413) and this many frames (hubbub takes at most
 * `pending_commands`, 256 by default, waiting per session).
 */
const MAX_BATCH_BYTES = 256 * 1024;
const MAX_BATCH_FRAMES = 64;

const ok = (status: number | null): boolean => status !== null && status >= 200 && status < 300;

interface Queued {
  line: string;
  bytes: number;
  /** The request id, to answer a frame the server refused to take. */
  id: unknown;
}

export class SseTransport implements Transport {
  readonly kind = "sse" as const;
  onframe: Transport["onframe"] = () => {};
  onclose: Transport["onclose"] = () => {};
  onactivity: Transport["onactivity"] = () => {};
  private readonly abort = new AbortController();
  private connectionId: string | null = null;
  private queue: Queued[] = [];
  private posting = false;
  private closed = false;

  constructor(
    private readonly fetchImpl: FetchLike,
    private readonly options: TransportOptions,
  ) {
    void this.read();
  }

  send(frame: object): void {
    if (this.closed) return;
    const line = JSON.stringify(frame);
    this.queue.push({ line, bytes: utf8Length(line) + 1, id: (frame as { id?: unknown }).id });
    void this.pump();
  }

  close(code = 1000, reason = ""): void {
    this.finish(code, reason);
  }

  private finish(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    try {
      this.abort.abort();
    } catch {
      // nothing to abort
    }
    this.onclose(code, reason);
  }

  private async read(): Promise<void> {
    try {
      await Promise.resolve(); // the owner sets onclose after the constructor returns
      await this.readStream();
    } catch (error) {
      if (!this.closed) this.finish(CLOSE_ABNORMAL, `SSE stream failed: ${String(error)}`);
    }
  }

  private async readStream(): Promise<void> {
    if (typeof TextDecoder === "undefined") {
      return this.finish(CLOSE_ABNORMAL, "SSE needs TextDecoder (not available here)");
    }
    let response: Response;
    try {
      response = await this.fetchImpl(`${this.options.baseUrl}/sse`, {
        headers: { Authorization: `Bearer ${this.options.token}`, Accept: "text/event-stream" },
        signal: this.abort.signal,
        cache: "no-store",
      });
    } catch (error) {
      this.finish(CLOSE_ABNORMAL, `SSE request failed: ${String(error)}`);
      return;
    }
    if (response.status === 401) return this.finish(CLOSE_UNAUTHORIZED, "unauthorized");
    const type = response.headers.get("content-type") ?? "";
    if (!response.ok || !type.startsWith("text/event-stream") || !response.body) {
      try {
        await response.body?.cancel();
      } catch {
        // ignore
      }
      const why = response.body ? `HTTP ${response.status}` : "no streaming response body (needs a streaming fetch)";
      return this.finish(CLOSE_ABNORMAL, `SSE refused: ${why}`);
    }
    let buffer = "";
    let data: string[] = [];
    let event = "";
    // A line that ended with the last CR of a chunk: an LF starting the next chunk belongs to it.
    let endedWithCR = false;
    try {
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.onactivity();
        buffer += decoder.decode(value, { stream: true });
        if (endedWithCR && buffer.startsWith("\n")) buffer = buffer.slice(1);
        if (buffer.length) endedWithCR = false;
        let nl: number;
        while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
          const line = buffer.slice(0, nl);
          const cr = buffer[nl] === "\r";
          const crlf = cr && buffer[nl + 1] === "\n";
          buffer = buffer.slice(nl + (crlf ? 2 : 1));
          if (cr && !crlf && buffer.length === 0) endedWithCR = true;
          if (line === "") {
            if (data.length) this.dispatch(event, data.join("\n"));
            data = [];
            event = "";
            if (this.closed) return;
            continue;
          }
          if (line.startsWith(":")) continue; // comment: keepalive
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value2 = colon < 0 ? "" : line.slice(colon + 1);
          if (value2.startsWith(" ")) value2 = value2.slice(1);
          if (field === "data") data.push(value2);
          else if (field === "event") event = value2;
        }
      }
    } catch (error) {
      if (!this.closed) this.finish(CLOSE_ABNORMAL, `SSE stream broke: ${String(error)}`);
      return;
    }
    this.finish(CLOSE_ABNORMAL, "SSE stream ended");
  }

  private dispatch(event: string, data: string): void {
    let frame: { type?: unknown; code?: unknown; reason?: unknown; connection_id?: unknown };
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (event === "close") {
      const code = typeof frame.code === "number" ? frame.code : CLOSE_ABNORMAL;
      this.finish(code, typeof frame.reason === "string" ? frame.reason : "");
      return;
    }
    if (!frame || typeof frame.type !== "string") return;
    if (frame.type === "hello" && typeof frame.connection_id === "string") {
      this.connectionId = frame.connection_id;
      void this.pump();
    }
    this.onframe(frame as { type: string });
  }

  private async pump(): Promise<void> {
    if (this.posting || this.closed || this.connectionId === null) return;
    this.posting = true;
    try {
      while (this.queue.length && !this.closed) {
        const batch: Queued[] = [];
        let size = 0;
        while (
          this.queue.length &&
          batch.length < MAX_BATCH_FRAMES &&
          (batch.length === 0 || size + this.queue[0]!.bytes <= MAX_BATCH_BYTES)
        ) {
          const item = this.queue.shift()!;
          size += item.bytes;
          batch.push(item);
        }
        const status = await this.post(batch);
        if (status === 413) {
          // Too large for the server: send the frames one by one, and refuse
          // (like the server refuses a frame) any that is too large alone.
          for (const item of batch) {
            const alone = batch.length === 1 ? status : await this.post([item]);
            if (alone === 413) this.refuse(item, "too_large", "the frame is over the server's limit for one POST");
            else if (!ok(alone)) return this.failed(alone);
          }
        } else if (!ok(status)) {
          return this.failed(status);
        }
      }
    } catch (error) {
      if (!this.closed) this.finish(CLOSE_ABNORMAL, `SSE command POST failed: ${String(error)}`);
    } finally {
      this.posting = false;
    }
  }

  /** POST frames; the HTTP status, or null when closed meanwhile. Throws when the request fails. */
  private async post(batch: Queued[]): Promise<number | null> {
    if (this.closed || this.connectionId === null) return null;
    const response = await this.fetchImpl(`${this.options.baseUrl}/sse/${encodeURIComponent(this.connectionId)}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${this.options.token}`, "Content-Type": "application/x-ndjson" },
      body: batch.map((item) => item.line).join("\n"),
      signal: this.abort.signal,
    });
    try {
      await response.text();
    } catch {
      // body not needed
    }
    return response.status;
  }

  private failed(status: number | null): void {
    if (status === null || this.closed) return;
    if (status === 401) return this.finish(CLOSE_UNAUTHORIZED, "unauthorized");
    if (status === 404) return this.finish(CLOSE_ABNORMAL, "SSE session gone");
    if (status < 200 || status >= 300) this.finish(CLOSE_ABNORMAL, `SSE command POST answered ${status}`);
  }

  /** Answer a frame the server would not take, as the server answers a refused frame. */
  private refuse(item: Queued, code: string, message: string): void {
    if (this.closed) return;
    this.onframe({ type: "error", id: item.id ?? null, code, message });
  }
}
