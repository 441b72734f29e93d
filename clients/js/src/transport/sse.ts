/**
 * The HTTP fallback: Server-Sent Events read with a streaming `fetch` (so the
 * Authorization header can be sent), commands POSTed to `/sse/{connection_id}`,
 * one POST in flight at a time, queued frames batched into the next one.
 */
import type { FetchLike, Transport, TransportOptions } from "./types.js";
import { CLOSE_ABNORMAL, CLOSE_UNAUTHORIZED } from "./types.js";

/** hubbub refuses POST bodies over 1 MiB; stay well below. */
const MAX_BATCH_BYTES = 512 * 1024;

export class SseTransport implements Transport {
  readonly kind = "sse" as const;
  onframe: Transport["onframe"] = () => {};
  onclose: Transport["onclose"] = () => {};
  onactivity: Transport["onactivity"] = () => {};
  private readonly abort = new AbortController();
  private connectionId: string | null = null;
  private queue: string[] = [];
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
    this.queue.push(JSON.stringify(frame));
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
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let data: string[] = [];
    let event = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.onactivity();
        buffer += decoder.decode(value, { stream: true });
        let nl: number;
        while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + (buffer[nl] === "\r" && buffer[nl + 1] === "\n" ? 2 : 1));
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
        const batch: string[] = [];
        let size = 0;
        while (this.queue.length && (batch.length === 0 || size + this.queue[0]!.length < MAX_BATCH_BYTES)) {
          const line = this.queue.shift()!;
          size += line.length + 1;
          batch.push(line);
        }
        let response: Response;
        try {
          response = await this.fetchImpl(`${this.options.baseUrl}/sse/${encodeURIComponent(this.connectionId)}`, {
            method: "POST",
            headers: { Authorization: `Bearer ${this.options.token}`, "Content-Type": "application/x-ndjson" },
            body: batch.join("\n"),
            signal: this.abort.signal,
          });
          try {
            await response.text();
          } catch {
            // body not needed
          }
        } catch (error) {
          if (!this.closed) this.finish(CLOSE_ABNORMAL, `SSE command POST failed: ${String(error)}`);
          return;
        }
        if (response.status === 401) return this.finish(CLOSE_UNAUTHORIZED, "unauthorized");
        if (response.status === 404) return this.finish(CLOSE_ABNORMAL, "SSE session gone");
        if (!response.ok) return this.finish(CLOSE_ABNORMAL, `SSE command POST answered ${response.status}`);
      }
    } finally {
      this.posting = false;
    }
  }
}
