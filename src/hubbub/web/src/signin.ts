/**
 * Signing in. In dev mode hubbub offers `POST /dev/token`, which mints a token
 * for any user id typed here; in production the page takes a token your
 * backend minted, pasted in. The choice is kept in sessionStorage (per tab),
 * so a reload stays signed in and two tabs can be two users.
 */
import { decodeJwt } from "@hubbub/client";
import { byId, show } from "./dom.js";

export interface Session {
  userId: string;
  name: string | null;
  /** For the SDK's `getToken`: a fresh token (dev), or the pasted one. */
  getToken: () => Promise<string>;
}

const KEY = "hubbub-web:session";

interface Saved {
  mode: "dev" | "token";
  userId: string;
  name: string | null;
  token?: string;
}

export function isDevMode(): boolean {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="hubbub-env"]');
  return meta?.content === "dev";
}

async function devToken(userId: string, name: string | null): Promise<string> {
  const response = await fetch("/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: userId, name }),
  });
  const body = (await response.json().catch(() => null)) as { token?: string; error?: { message?: string } } | null;
  if (!response.ok || !body?.token) throw new Error(body?.error?.message ?? `sign-in failed (HTTP ${response.status})`);
  return body.token;
}

function expired(token: string): boolean {
  const exp = decodeJwt(token)?.exp;
  return typeof exp === "number" && exp * 1000 <= Date.now();
}

function sessionOf(saved: Saved, onExpired: () => void): Session {
  if (saved.mode === "dev") {
    return { userId: saved.userId, name: saved.name, getToken: () => devToken(saved.userId, saved.name) };
  }
  const token = saved.token ?? "";
  return {
    userId: saved.userId,
    name: saved.name,
    getToken: async () => {
      if (expired(token)) {
        onExpired();
        throw new Error("the token expired");
      }
      return token;
    },
  };
}

export function signOut(message?: string): void {
  sessionStorage.removeItem(KEY);
  if (message) sessionStorage.setItem(KEY + ":notice", message);
  location.reload();
}

/** The saved session, or the sign-in form until the user signs in. */
export function signIn(): Promise<Session> {
  const onExpired = () => signOut("Your token expired: paste a new one.");
  const raw = sessionStorage.getItem(KEY);
  if (raw) {
    try {
      const saved = JSON.parse(raw) as Saved;
      if (saved.mode !== "token" || (saved.token && !expired(saved.token))) return Promise.resolve(sessionOf(saved, onExpired));
    } catch {
      // unreadable: sign in again
    }
    sessionStorage.removeItem(KEY);
  }
  const dev = isDevMode();
  const screen = byId("signin");
  const form = byId<HTMLFormElement>(dev ? "dev-signin" : "token-signin");
  const error = byId("signin-error");
  error.textContent = sessionStorage.getItem(KEY + ":notice") ?? "";
  sessionStorage.removeItem(KEY + ":notice");
  show(screen, true);
  show(form, true);
  form.querySelector<HTMLElement>("input, textarea")?.focus();
  return new Promise((resolve) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const button = form.querySelector("button");
      error.textContent = "";
      try {
        if (button) button.disabled = true;
        let saved: Saved;
        if (dev) {
          const userId = String(data.get("user_id") ?? "").trim();
          const name = String(data.get("name") ?? "").trim() || null;
          await devToken(userId, name); // checks the id before going on
          saved = { mode: "dev", userId, name };
        } else {
          const token = String(data.get("token") ?? "").trim();
          const claims = decodeJwt(token);
          if (!claims?.sub) throw new Error("that is not a token (a JWT with a sub claim)");
          if (expired(token)) throw new Error("that token has expired");
          saved = { mode: "token", userId: claims.sub, name: typeof claims.name === "string" ? claims.name : null, token };
        }
        sessionStorage.setItem(KEY, JSON.stringify(saved));
        show(screen, false);
        resolve(sessionOf(saved, onExpired));
      } catch (e) {
        error.textContent = e instanceof Error ? e.message : String(e);
      } finally {
        if (button) button.disabled = false;
      }
    });
  });
}
