/**
 * The chat screen's fixed elements (the page's skeleton, static/index.html),
 * looked up once, and small helpers the chat modules share.
 */
import { byId, show } from "./dom.js";

export function findUi() {
  return {
    app: byId("app"),
    meName: byId("me-name"),
    meAvatar: byId("me-avatar"),
    conn: byId("conn"),
    banner: byId("banner"),
    list: byId("conversations"),
    searchForm: byId<HTMLFormElement>("search-form"),
    search: byId<HTMLInputElement>("search"),
    results: byId("search-results"),
    empty: byId("empty"),
    head: byId("chat-head"),
    title: byId("chat-title"),
    sub: byId("chat-sub"),
    scroller: byId("messages"),
    older: byId<HTMLButtonElement>("older"),
    messages: byId("message-list"),
    typing: byId("typing"),
    composer: byId<HTMLFormElement>("composer"),
    context: byId("composer-context"),
    contextText: byId("composer-context-text"),
    files: byId("composer-files"),
    fileInput: byId<HTMLInputElement>("file"),
    input: byId<HTMLTextAreaElement>("input"),
    send: byId<HTMLButtonElement>("send"),
    dialog: byId<HTMLDialogElement>("new-dialog"),
    dialogForm: byId<HTMLFormElement>("new-form"),
    toast: byId("toast"),
  };
}

export type Ui = ReturnType<typeof findUi>;

/** The toast at the bottom: one line for a few seconds. */
export class Toast {
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly node: HTMLElement) {}

  show(text: string): void {
    const toast = this.node;
    toast.textContent = text;
    show(toast, true);
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => show(toast, false), 5000);
  }
}

export function snippet(text: string): string {
  return text.length > 80 ? text.slice(0, 79) + "…" : text;
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
