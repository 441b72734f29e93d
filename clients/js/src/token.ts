/**
 * The current token: read its `exp` (and `iat`, `sub`) without verifying it,
 * fetch a fresh one from the app's `getToken` before it expires, never hand
 * out an expired one.
 */
import { HubbubError } from "./errors.js";

export interface TokenClaims {
  sub?: string;
  exp?: number;
  iat?: number;
  name?: string;
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

function base64UrlDecode(text: string): Uint8Array {
  const clean = text.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const bytes: number[] = [];
  let buffer = 0;
  let bits = 0;
  for (const ch of clean) {
    const value = B64.indexOf(ch);
    if (value < 0) throw new Error("bad base64");
    buffer = (buffer << 6) | value;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((buffer >> bits) & 0xff);
    }
  }
  return new Uint8Array(bytes);
}

function utf8(bytes: Uint8Array): string {
  if (typeof TextDecoder !== "undefined") return new TextDecoder().decode(bytes);
  return decodeURIComponent(Array.from(bytes, (b) => "%" + b.toString(16).padStart(2, "0")).join(""));
}

/** The claims of a JWT, unverified; `{}` when it cannot be read. */
export function decodeJwt(token: string): TokenClaims {
  try {
    const part = token.split(".")[1];
    if (!part) return {};
    const claims = JSON.parse(utf8(base64UrlDecode(part)));
    return typeof claims === "object" && claims !== null ? claims : {};
  } catch {
    return {};
  }
}

export interface TokenInfo {
  token: string;
  claims: TokenClaims;
  /** Expiry in ms since the epoch (Infinity when the token has no `exp`). */
  expiresAt: number;
  /** When to fetch the next one (ms since the epoch). */
  refreshAt: number;
}

export class TokenManager {
  private current: TokenInfo | null = null;
  private inflight: Promise<TokenInfo> | null = null;
  /** Server clock minus ours, in ms (from hello's `server_time`). */
  skewMs = 0;
  /** How many times getToken was called (for tests and logs). */
  calls = 0;

  constructor(private readonly getToken: () => string | Promise<string>) {}

  now(): number {
    return Date.now() + this.skewMs;
  }

  get info(): TokenInfo | null {
    return this.current;
  }

  /** A token that is not about to expire: the current one, or a fresh one. */
  async get(): Promise<TokenInfo> {
    const cur = this.current;
    if (cur && this.now() < cur.refreshAt) return cur;
    try {
      return await this.refresh();
    } catch (error) {
      // getToken failed: a current token that is still valid a while does.
      if (cur && this.current === cur && cur.expiresAt - this.now() > 1000) return cur;
      throw error;
    }
  }

  /** Always ask the app for a new token (after a 401 or a 4401 close). */
  refresh(): Promise<TokenInfo> {
    if (!this.inflight) {
      this.inflight = this.fetch().finally(() => {
        this.inflight = null;
      });
    }
    return this.inflight;
  }

  /** Forget the current token: the next get() fetches a fresh one. */
  invalidate(): void {
    this.current = null;
  }

  private async fetch(): Promise<TokenInfo> {
    this.calls += 1;
    const token = await this.getToken();
    if (typeof token !== "string" || !token) throw new HubbubError("unauthorized", "getToken() returned no token");
    const claims = decodeJwt(token);
    const now = this.now();
    const expiresAt = typeof claims.exp === "number" ? claims.exp * 1000 : Infinity;
    if (expiresAt <= now) throw new HubbubError("unauthorized", "getToken() returned an expired token");
    const issuedAt = typeof claims.iat === "number" ? Math.min(claims.iat * 1000, now) : now;
    const lifetime = expiresAt - issuedAt;
    // Refresh a quarter of the lifetime before expiry: at least 1 s, at most 60 s.
    const margin = Number.isFinite(lifetime) ? Math.min(60_000, Math.max(1000, lifetime / 4)) : 0;
    const refreshAt = Math.max(now, expiresAt - Math.min(margin, (expiresAt - now) / 2));
    this.current = { token, claims, expiresAt, refreshAt };
    return this.current;
  }
}
