/**
 * The connection state in the header ("Connected · WebSocket", "Connected ·
 * SSE (HTTP fallback)", "Reconnecting…") and the banner shown while the
 * connection is down, when messages sent wait in the SDK's outbox.
 */
import type { ChatApp } from "./chat.js";
import { show } from "./dom.js";

export class ConnectionState {
  private everConnected = false;

  constructor(private readonly chat: ChatApp) {}

  wire(): void {
    window.addEventListener("online", () => this.render());
    window.addEventListener("offline", () => this.render());
  }

  render(): void {
    const { client, ui } = this.chat;
    const state = client.state;
    const transport = client.transport;
    if (state === "connected") this.everConnected = true;
    const conn = ui.conn;
    conn.dataset.state = state;
    conn.dataset.transport = transport ?? "";
    if (state === "connected") conn.textContent = transport === "sse" ? "Connected · SSE (HTTP fallback)" : "Connected · WebSocket";
    else if (state === "closed") conn.textContent = "Signed out";
    else conn.textContent = this.everConnected ? "Reconnecting…" : "Connecting…";
    const offline = navigator.onLine === false;
    const down = this.everConnected && state !== "connected" && state !== "closed";
    ui.banner.textContent = offline
      ? "You are offline. Messages you send are kept and go out when the connection is back."
      : "Reconnecting… Messages you send are kept and go out when the connection is back.";
    ui.banner.dataset.state = offline ? "offline" : "reconnecting";
    show(ui.banner, down || (offline && this.everConnected));
  }
}
