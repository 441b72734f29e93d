/**
 * The open conversation's messages: history and scroll-back, the rows with
 * their ticks (sent messages and those still in the outbox or refused), the
 * row actions (reply, edit, delete, react, attachments), and the typing line.
 * A row is drawn by messages.ts and redrawn only when its signature changes.
 */
import type { Attachment, EventOf, Message, OutboxEntry } from "@hubbub/client";
import type { ChatApp } from "./chat.js";
import { el, fill } from "./dom.js";
import { buildRow, keyOf, signature, type Row, type RowActions } from "./messages.js";
import { movePointers, nameOf, oldestSeq, preview, sortedMessages, statusOf, type Conv } from "./model.js";
import { errorText, snippet } from "./ui.js";

const PAGE = 30;

export class MessageView {
  private nodes = new Map<string, { node: HTMLElement; sig: string }>();
  private readonly images = new Map<string, Promise<string>>();
  private readonly quotes = new Map<string, Message | null>();
  private readonly failed = new Map<string, { row: Row }>();
  /** Outbox entries seen, so that a refused one can still be shown with its text. */
  private readonly outgoing = new Map<string, OutboxEntry>();

  constructor(private readonly chat: ChatApp) {}

  wire(): void {
    const ui = this.chat.ui;
    ui.older.addEventListener("click", () => void this.loadOlder());
    ui.scroller.addEventListener("scroll", () => {
      if (ui.scroller.scrollTop < 60) void this.loadOlder();
    });
  }

  /** Forget the drawn rows (another conversation is opened, or none). */
  clear(): void {
    this.nodes = new Map();
    fill(this.chat.ui.messages);
  }

  onStatus(e: EventOf<"message.status">): void {
    const chat = this.chat;
    if (e.status === "pending") {
      const entry = chat.client.pending().find((p) => p.client_msg_id === e.client_msg_id);
      if (entry) this.outgoing.set(entry.client_msg_id, entry);
    } else if (e.status === "sent" && e.message) {
      this.outgoing.delete(e.client_msg_id);
      chat.onMessage(e.conversation_id, e.message, false);
    } else if (e.status === "failed") {
      const entry = this.outgoing.get(e.client_msg_id);
      this.outgoing.delete(e.client_msg_id);
      this.failed.set(e.client_msg_id, {
        row: {
          key: "c:" + e.client_msg_id,
          entry: entry ?? { client_msg_id: e.client_msg_id, conversation_id: e.conversation_id, body: "", created_at: Date.now() },
          mine: true,
          status: "failed",
          error: e.error?.message ?? "refused",
          senderName: "",
          showSender: false,
          quote: null,
          canEdit: false,
          canDelete: false,
        },
      });
    }
    if (chat.active === e.conversation_id) this.render();
  }

  // ------------------------------------------------------------------ history

  async loadFirstPage(conv: Conv): Promise<void> {
    conv.loading = true;
    try {
      const page = await this.chat.client.history(conv.info.id, { limit: PAGE });
      for (const m of page.messages) if (!conv.messages.has(m.id)) conv.messages.set(m.id, m);
      for (const r of page.receipts) movePointers(conv, r.user_id, r.read_seq, r.delivered_seq);
      conv.hasMore = page.has_more;
      conv.loaded = true;
    } catch (error) {
      this.chat.toast(`Could not load messages: ${errorText(error)}`);
    } finally {
      conv.loading = false;
    }
  }

  async loadOlder(): Promise<boolean> {
    const chat = this.chat;
    const conv = chat.active ? chat.convs.get(chat.active) : undefined;
    if (!conv || !conv.loaded || conv.loading || !conv.hasMore) return false;
    const before = oldestSeq(conv);
    if (before === undefined) return false;
    conv.loading = true;
    chat.ui.older.textContent = "Loading…";
    try {
      const page = await chat.client.history(conv.info.id, { before, limit: PAGE });
      for (const m of page.messages) if (!conv.messages.has(m.id)) conv.messages.set(m.id, m);
      conv.hasMore = page.has_more;
    } catch (error) {
      chat.toast(`Could not load older messages: ${errorText(error)}`);
      return false;
    } finally {
      conv.loading = false;
    }
    if (chat.active === conv.info.id) this.render({ keepPosition: true });
    return true;
  }

  // ------------------------------------------------------------------ drawing

  renderTyping(): void {
    const { client, convs, me, active: id } = this.chat;
    const conv = id ? convs.get(id) : undefined;
    const users = id ? client.typingUsers(id).filter((u) => u !== me) : [];
    const names = users.map((u) => nameOf(conv, u));
    this.chat.ui.typing.textContent =
      names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : names.length === 2 ? `${names[0]} and ${names[1]} are typing…` : "Several people are typing…";
  }

  private rows(conv: Conv): Row[] {
    const me = this.chat.me;
    const rows: Row[] = [];
    const seen = new Set<string>();
    const myRole = conv.info.members.find((m) => m.user_id === me)?.role;
    const moderator = conv.info.kind !== "direct" && (myRole === "owner" || myRole === "admin");
    let previous: string | null = null;
    for (const m of sortedMessages(conv)) {
      const mine = m.sender_id === me;
      const key = keyOf(m, me);
      seen.add(key);
      rows.push({
        key,
        message: m,
        mine,
        status: mine && m.kind !== "system" ? statusOf(conv, m, me) : null,
        senderName: m.sender_id === "system" ? "hubbub" : m.sender_name || nameOf(conv, m.sender_id),
        showSender: conv.info.kind !== "direct" && previous !== m.sender_id,
        quote: m.reply_to ? this.quote(conv, m.reply_to) : null,
        canEdit: mine && !m.deleted_at && m.kind !== "system",
        canDelete: !m.deleted_at && (mine || moderator),
      });
      previous = m.sender_id;
    }
    for (const entry of this.chat.client.pending()) {
      const key = "c:" + entry.client_msg_id;
      this.outgoing.set(entry.client_msg_id, entry);
      if (entry.conversation_id !== conv.info.id || seen.has(key)) continue;
      seen.add(key);
      rows.push({
        key,
        entry,
        mine: true,
        status: "pending",
        senderName: "",
        showSender: false,
        quote: entry.reply_to ? this.quote(conv, entry.reply_to) : null,
        canEdit: false,
        canDelete: false,
      });
    }
    for (const [cmid, { row }] of this.failed) {
      if (row.entry?.conversation_id === conv.info.id && !seen.has("c:" + cmid)) rows.push(row);
    }
    return rows;
  }

  /** The quoted line of a reply; a message not loaded is fetched once. */
  private quote(conv: Conv, id: string): string {
    const target = conv.messages.get(id) ?? this.quotes.get(id);
    if (target === undefined) {
      this.quotes.set(id, null);
      this.chat.client.rest.getMessage(id).then(
        (m) => {
          this.quotes.set(id, m);
          if (this.chat.active === conv.info.id) this.render();
        },
        () => {},
      );
    }
    if (!target) return "↩ an earlier message";
    return `↩ ${nameOf(conv, target.sender_id)}: ${snippet(preview(target))}`;
  }

  render(opts: { toBottom?: boolean; keepPosition?: boolean } = {}): void {
    const { ui, convs, active } = this.chat;
    const conv = active ? convs.get(active) : undefined;
    if (!conv) return;
    const scroller = ui.scroller;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48;
    const list = ui.messages;
    const next = new Map<string, { node: HTMLElement; sig: string }>();
    const ordered: HTMLElement[] = [];
    for (const row of this.rows(conv)) {
      const sig = signature(row);
      const old = this.nodes.get(row.key);
      let node = old?.node;
      if (!node || old?.sig !== sig) {
        node?.remove();
        node = buildRow(row, this.actions);
      }
      next.set(row.key, { node, sig });
      ordered.push(node);
    }
    for (const [key, { node }] of this.nodes) if (!next.has(key)) node.remove();
    this.nodes = next;
    list.querySelector(":scope > .none")?.remove();
    ordered.forEach((node, i) => {
      const at = list.children[i];
      if (at !== node) list.insertBefore(node, at ?? null);
    });
    if (!ordered.length) list.append(el("div", { class: "none", text: conv.loaded ? "No messages yet. Say hello!" : "Loading…" }));

    ui.older.hidden = !(conv.loaded && conv.hasMore);
    ui.older.textContent = "Load older messages";
    if (opts.keepPosition) scroller.scrollTop = scroller.scrollHeight - fromBottom;
    else if (opts.toBottom || atBottom) scroller.scrollTop = scroller.scrollHeight;
  }

  // ------------------------------------------------------------------ row actions

  private readonly actions: RowActions = {
    reply: (m) => this.chat.composer.setContext("reply", m),
    edit: (m) => this.chat.composer.setContext("edit", m),
    remove: (m) => {
      if (!window.confirm("Delete this message for everyone?")) return;
      this.chat.client.deleteMessage(m.id).catch((error) => this.chat.toast(`Could not delete: ${errorText(error)}`));
    },
    toggleReaction: (m, emoji, mine) => {
      const client = this.chat.client;
      (mine ? client.unreact(m.id, emoji) : client.react(m.id, emoji)).catch((error) => this.chat.toast(`Could not react: ${errorText(error)}`));
    },
    dismiss: (row) => {
      if (row.entry) this.failed.delete(row.entry.client_msg_id);
      this.render();
    },
    image: (a) => this.objectUrl(a),
    download: (a) => void this.download(a),
  };

  private objectUrl(a: Attachment): Promise<string> {
    let url = this.images.get(a.id);
    if (!url) {
      url = this.chat.client.rest.download(a.url).then((blob) => URL.createObjectURL(blob));
      url.catch(() => this.images.delete(a.id));
      this.images.set(a.id, url);
    }
    return url;
  }

  private async download(a: Attachment): Promise<void> {
    try {
      const url = URL.createObjectURL(await this.chat.client.rest.download(a.url));
      const link = el("a", { href: url, download: a.name });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (error) {
      this.chat.toast(`Download failed: ${errorText(error)}`);
    }
  }
}
