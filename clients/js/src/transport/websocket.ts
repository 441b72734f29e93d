import type { Transport, TransportOptions, WebSocketConstructor, WebSocketLike } from "./types.js";
import { CLOSE_ABNORMAL } from "./types.js";

/** `ws(s)://host/ws?token=...` from the http(s) base URL. */
export function webSocketUrl(baseUrl: string, token: string): string {
  const url = baseUrl.replace(/^http/, "ws");
  return `${url}/ws?token=${encodeURIComponent(token)}`;
}

export class WebSocketTransport implements Transport {
  readonly kind = "websocket" as const;
  onframe: Transport["onframe"] = () => {};
  onclose: Transport["onclose"] = () => {};
  onactivity: Transport["onactivity"] = () => {};
  private readonly ws: WebSocketLike;
  private closed = false;

  constructor(Ctor: WebSocketConstructor, options: TransportOptions) {
    try {
      this.ws = new Ctor(webSocketUrl(options.baseUrl, options.token));
    } catch (error) {
      // A constructor that throws (blocked, bad URL) is a failed attempt, reported like one.
      this.ws = { readyState: 3, send() {}, close() {}, onopen: null, onmessage: null, onclose: null, onerror: null };
      setTimeout(() => this.finish(CLOSE_ABNORMAL, `WebSocket failed: ${String(error)}`), 0);
      return;
    }
    this.ws.onmessage = (event) => {
      if (this.closed) return;
      this.onactivity();
      const data = event.data;
      if (typeof data !== "string") return; // hubbub sends text frames only
      let frame: unknown;
      try {
        frame = JSON.parse(data);
      } catch {
        return;
      }
      if (frame && typeof frame === "object" && typeof (frame as { type?: unknown }).type === "string") {
        this.onframe(frame as { type: string });
      }
    };
    this.ws.onclose = (event) => this.finish(event.code || CLOSE_ABNORMAL, event.reason || "");
    this.ws.onerror = () => {
      // a close event follows
    };
  }

  send(frame: object): void {
    if (this.closed || this.ws.readyState !== 1) return;
    this.ws.send(JSON.stringify(frame));
  }

  close(code = 1000, reason = ""): void {
    if (this.closed) return;
    try {
      // Browsers only allow 1000 and 3000-4999 from scripts.
      const allowed = code === 1000 || (code >= 3000 && code <= 4999);
      this.ws.close(allowed ? code : 1000, reason);
    } catch {
      // already closing
    }
    this.finish(code, reason);
  }

  private finish(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.ws.onmessage = null;
    this.ws.onclose = null;
    this.onclose(code, reason);
  }
}
