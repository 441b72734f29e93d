import type { TransportKind } from "../events.js";

/** Close codes the SDK uses for closes it decides itself (not sent by hubbub). */
export const CLOSE_ABNORMAL = 1006;
export const CLOSE_OPEN_TIMEOUT = 4000;
export const CLOSE_HEARTBEAT_TIMEOUT = 4001;
export const CLOSE_UNAUTHORIZED = 4401;

/**
 * One session with the server, over some transport. Frames in and out are
 * hubbub's JSON frames. `onclose` is called exactly once, also when the
 * session could not be opened.
 */
export interface Transport {
  readonly kind: TransportKind;
  send(frame: object): void;
  close(code?: number, reason?: string): void;
  onframe: (frame: { type: string; [key: string]: unknown }) => void;
  onclose: (code: number, reason: string) => void;
  /** Any sign of life (a frame, an SSE comment). */
  onactivity: () => void;
}

export interface TransportOptions {
  /** http(s) base URL of the server, without a trailing slash. */
  baseUrl: string;
  token: string;
}

/** A WebSocket constructor: the browser's, React Native's, or `ws` in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type FetchLike = typeof fetch;
