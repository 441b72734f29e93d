/**
 * The chat screen: conversation list, the open conversation, the composer,
 * search, and the connection state. Connecting, reconnecting, resuming, the
 * outbox, typing timers and receipts are the SDK's (clients/js); this file
 * only draws what it hands over and calls it.
 */
import {
  connect,
  localStorageAdapter,
  type Attachment,
  type Conversation,
  type EventOf,
  type HubbubClient,
  type Message,
  type OutboxEntry,
  type Presence,
  type TransportKind,
} from "@hubbub/client";
import { byId, el, extension, fill, hue, initials, shortTime, show } from "./dom.js";
import { buildRow, keyOf, signature, type Row, type RowActions } from "./messages.js";
import {
  applyReaction,
  movePointers,
  nameOf,
  newConv,
  oldestSeq,
  partnerOf,
  preview,
  putMessage,
  setMembers,
  sortedMessages,
  statusOf,
  titleOf,
  type Conv,
} from "./model.js";
import { signOut, type Session } from "./signin.js";

const PAGE = 30;

export class ChatApp {
  private readonly client: HubbubClient;
  private readonly me: string;
  private readonly convs = new Map<string, Conv>();
  private readonly presence = new Map<string, Presence>();
  private active: string | null = null;
  private nodes = new Map<string, { node: HTMLElement; sig: string }>();
  private readonly images = new Map<string, Promise<string>>();
  private readonly quotes = new Map<string, Message | null>();
  private readonly failed = new Map<string, { row: Row }>();
  /** Outbox entries seen, so that a refused one can still be shown with its text. */
  private readonly outgoing = new Map<string, OutboxEntry>();
  private replyTo: Message | null = null;
  private editing: Message | null = null;
  private files: { file: File; url: string | null }[] = [];
  private everConnected = false;
  private readTimer: ReturnType<typeof setTimeout> | null = null;
  private listTimer: ReturnType<typeof setTimeout> | null = null;
  private toastTimer: ReturnType<typeof setTimeout> | null = null;

  private readonly ui = {
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

  constructor(private readonly session: Session) {
    this.me = session.userId;
    const forced = new URLSearchParams(location.search).get("transport");
    const transports: TransportKind[] | undefined = forced === "sse" ? ["sse"] : forced === "websocket" ? ["websocket"] : undefined;
    this.client = connect({
      url: location.origin,
      getToken: session.getToken,
      // Per tab, and kept over a reload: cursors and unsent messages survive it.
      storage: localStorageAdapter(window.sessionStorage),
      storageKey: "hubbub-web",
      transports,
    });
    (window as unknown as { hubbub: HubbubClient }).hubbub = this.client; // for the console
  }

  start(): void {
    show(this.ui.app, true);
    this.ui.meName.textContent = this.session.name ? `${this.session.name} (${this.me})` : this.me;
    this.ui.meAvatar.textContent = initials(this.session.name || this.me);
    this.ui.meAvatar.style.setProperty("--hue", String(hue(this.me)));
    this.wireClient();
    this.wireUi();
    this.renderConnection();
    void this.loadConversations().then(() => {
      const wanted = decodeURIComponent(location.hash.slice(1));
      if (wanted && this.convs.has(wanted)) void this.open(wanted);
    });
  }

  // ------------------------------------------------------------------ SDK events

  private wireClient(): void {
    const c = this.client;
    c.on("state", () => this.renderConnection());
    c.on("resumed", () => {
      this.renderConnection();
      this.loadConversationsSoon();
    });
    c.on("message.new", (e) => this.onMessage(e.conversation_id, e.message, true));
    c.on("message.edited", (e) => this.onMessage(e.conversation_id, e.message, false));
    c.on("message.deleted", (e) => this.onMessage(e.conversation_id, e.message, false));
    c.on("conversation.created", (e) => this.onConversation(e.conversation));
    c.on("conversation.updated", (e) => this.onConversation(e.conversation));
    c.on("conversation.unavailable", (e) => {
      this.convs.delete(e.conversation_id);
      if (this.active === e.conversation_id) this.close();
      this.renderList();
    });
    c.on("receipt", (e) => {
      const conv = this.convs.get(e.conversation_id);
      if (!conv) return;
      movePointers(conv, e.user_id, e.read_seq, e.delivered_seq);
      if (e.user_id === this.me && conv.last && e.read_seq >= conv.last.seq) {
        conv.unread = 0;
        this.renderList();
      }
      if (this.active === e.conversation_id) this.renderMessages();
    });
    c.on("reaction", (e) => {
      const conv = this.convs.get(e.conversation_id);
      const message = conv?.messages.get(e.message_id);
      if (!conv || !message) return;
      conv.messages.set(message.id, applyReaction(message, e, this.me));
      if (this.active === e.conversation_id) this.renderMessages();
    });
    c.on("typing", (e) => {
      if (e.conversation_id === this.active) this.renderTyping();
    });
    c.on("presence", (e) => {
      this.presence.set(e.user_id, { user_id: e.user_id, status: e.status, last_seen: e.last_seen });
      // Names come with the user's tokens: one never seen before may have one now.
      const nameless = [...this.convs.values()].some((c) => c.info.members.some((m) => m.user_id === e.user_id && !m.name));
      if (e.status === "online" && nameless) this.loadConversationsSoon();
      this.renderList();
      this.renderHead();
    });
    c.on("message.status", (e) => this.onStatus(e));
  }

  private onMessage(id: string, message: Message, isNew: boolean): void {
    const conv = this.convs.get(id);
    if (!conv) {
      this.loadConversationsSoon();
      return;
    }
    putMessage(conv, message);
    if (isNew) {
      if (message.sender_id === this.me) movePointers(conv, this.me, message.seq, message.seq);
      else if (this.active === id && document.visibilityState === "visible") this.readSoon();
      else conv.unread += 1;
    }
    this.renderList();
    if (this.active === id) {
      this.renderMessages();
      this.renderTyping();
    }
  }

  private onConversation(info: Conversation): void {
    const conv = this.convs.get(info.id);
    if (conv) setMembers(conv, info);
    else this.convs.set(info.id, newConv(info));
    this.renderList();
    if (this.active === info.id) this.renderHead();
    void this.loadPresence();
  }

  private onStatus(e: EventOf<"message.status">): void {
    if (e.status === "pending") {
      const entry = this.client.pending().find((p) => p.client_msg_id === e.client_msg_id);
      if (entry) this.outgoing.set(entry.client_msg_id, entry);
    } else if (e.status === "sent" && e.message) {
      this.outgoing.delete(e.client_msg_id);
      this.onMessage(e.conversation_id, e.message, false);
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
    if (this.active === e.conversation_id) this.renderMessages();
  }

  // ------------------------------------------------------------------ loading

  private loadConversationsSoon(): void {
    if (this.listTimer) return;
    this.listTimer = setTimeout(() => {
      this.listTimer = null;
      void this.loadConversations();
    }, 100);
  }

  private async loadConversations(): Promise<void> {
    let list;
    try {
      list = await this.client.listConversations();
    } catch (error) {
      if (this.client.state === "connected") this.toast(`Could not list conversations: ${errorText(error)}`);
      return;
    }
    for (const summary of list) {
      const conv = this.convs.get(summary.id);
      if (!conv) {
        this.convs.set(summary.id, newConv(summary, summary));
        continue;
      }
      setMembers(conv, summary);
      if (summary.last_message && (!conv.last || summary.last_message.seq >= conv.last.seq)) putMessage(conv, summary.last_message);
      conv.unread = this.active === summary.id && document.visibilityState === "visible" ? 0 : summary.unread_count;
    }
    this.renderList();
    if (this.active) {
      this.renderHead();
      this.readSoon();
    }
    await this.loadPresence();
  }

  private async loadPresence(): Promise<void> {
    const users = new Set<string>();
    for (const conv of this.convs.values()) {
      if (conv.info.kind === "room") continue;
      for (const m of conv.info.members) if (m.user_id !== this.me) users.add(m.user_id);
    }
    const ids = [...users].slice(0, 100);
    if (!ids.length) return;
    try {
      for (const p of await this.client.presence(ids)) this.presence.set(p.user_id, p);
    } catch {
      return; // presence is a nicety; events keep it current
    }
    this.renderList();
    this.renderHead();
  }

  private async loadFirstPage(conv: Conv): Promise<void> {
    conv.loading = true;
    try {
      const page = await this.client.history(conv.info.id, { limit: PAGE });
      for (const m of page.messages) if (!conv.messages.has(m.id)) conv.messages.set(m.id, m);
      for (const r of page.receipts) movePointers(conv, r.user_id, r.read_seq, r.delivered_seq);
      conv.hasMore = page.has_more;
      conv.loaded = true;
    } catch (error) {
      this.toast(`Could not load messages: ${errorText(error)}`);
    } finally {
      conv.loading = false;
    }
  }

  private async loadOlder(): Promise<boolean> {
    const conv = this.active ? this.convs.get(this.active) : undefined;
    if (!conv || !conv.loaded || conv.loading || !conv.hasMore) return false;
    const before = oldestSeq(conv);
    if (before === undefined) return false;
    conv.loading = true;
    this.ui.older.textContent = "Loading…";
    try {
      const page = await this.client.history(conv.info.id, { before, limit: PAGE });
      for (const m of page.messages) if (!conv.messages.has(m.id)) conv.messages.set(m.id, m);
      conv.hasMore = page.has_more;
    } catch (error) {
      this.toast(`Could not load older messages: ${errorText(error)}`);
      return false;
    } finally {
      conv.loading = false;
    }
    if (this.active === conv.info.id) this.renderMessages({ keepPosition: true });
    return true;
  }

  // ------------------------------------------------------------------ opening

  private async open(id: string): Promise<void> {
    const conv = this.convs.get(id);
    if (!conv) return;
    if (this.active !== id) {
      this.active = id;
      this.nodes = new Map();
      fill(this.ui.messages);
      this.cancelContext();
      this.clearFiles();
      this.ui.input.value = "";
      history.replaceState(null, "", "#" + encodeURIComponent(id));
    }
    this.ui.app.classList.add("chat-open");
    show(this.ui.empty, false);
    show(this.ui.head, true);
    show(this.ui.composer, true);
    this.renderHead();
    this.renderList();
    this.renderTyping();
    if (!conv.loaded && !conv.loading) {
      this.ui.older.hidden = true;
      await this.loadFirstPage(conv);
    }
    if (this.active !== id) return;
    this.renderMessages({ toBottom: true });
    this.readSoon();
    this.ui.input.focus();
  }

  private close(): void {
    this.active = null;
    this.nodes = new Map();
    fill(this.ui.messages);
    this.ui.app.classList.remove("chat-open");
    show(this.ui.empty, true);
    show(this.ui.head, false);
    show(this.ui.composer, false);
    this.ui.older.hidden = true;
    history.replaceState(null, "", location.pathname + location.search);
  }

  /** Open a conversation at a message (a search result): page back until it is loaded. */
  private async jumpTo(message: Message): Promise<void> {
    await this.open(message.conversation_id);
    const conv = this.convs.get(message.conversation_id);
    for (let i = 0; conv && !conv.messages.has(message.id) && conv.hasMore && i < 50; i++) {
      if (!(await this.loadOlder())) break;
    }
    const node = this.ui.messages.querySelector<HTMLElement>(`[data-id="${CSS.escape(message.id)}"]`);
    if (!node) return;
    node.scrollIntoView({ block: "center" });
    node.classList.add("highlight");
    setTimeout(() => node.classList.remove("highlight"), 2000);
  }

  private readSoon(): void {
    if (this.readTimer) return;
    this.readTimer = setTimeout(() => {
      this.readTimer = null;
      const conv = this.active ? this.convs.get(this.active) : undefined;
      if (!conv || document.visibilityState !== "visible") return;
      const mine = conv.pointers.get(this.me)?.read ?? 0;
      if (conv.unread > 0 || (conv.last && conv.last.seq > mine)) {
        conv.unread = 0;
        this.renderList();
        this.client.markRead(conv.info.id).catch(() => {});
      }
    }, 150);
  }

  // ------------------------------------------------------------------ user input

  private wireUi(): void {
    const ui = this.ui;
    byId("signout").addEventListener("click", () => {
      this.client.close();
      signOut();
    });
    byId("new-direct").addEventListener("click", () => this.openDialog("direct"));
    byId("new-group").addEventListener("click", () => this.openDialog("group"));
    byId("new-cancel").addEventListener("click", () => ui.dialog.close());
    ui.dialogForm.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.createConversation();
    });
    byId("back").addEventListener("click", () => this.close());
    ui.searchForm.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.runSearch(ui.search.value.trim());
    });
    ui.search.addEventListener("input", () => {
      if (!ui.search.value) this.closeSearch();
    });
    ui.older.addEventListener("click", () => void this.loadOlder());
    ui.scroller.addEventListener("scroll", () => {
      if (ui.scroller.scrollTop < 60) void this.loadOlder();
    });
    ui.input.addEventListener("input", () => {
      this.autosize();
      if (this.active && !this.editing && ui.input.value.trim()) this.client.typing(this.active).keystroke();
    });
    ui.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        ui.composer.requestSubmit();
      } else if (e.key === "Escape") {
        this.cancelContext();
      }
    });
    ui.composer.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.submit();
    });
    byId("composer-cancel").addEventListener("click", () => this.cancelContext());
    ui.fileInput.addEventListener("change", () => {
      this.addFiles([...(ui.fileInput.files ?? [])]);
      ui.fileInput.value = "";
    });
    const chat = byId("chat");
    chat.addEventListener("dragover", (e) => {
      if (this.active && e.dataTransfer?.types.includes("Files")) e.preventDefault();
    });
    chat.addEventListener("drop", (e) => {
      if (!this.active || !e.dataTransfer?.files.length) return;
      e.preventDefault();
      this.addFiles([...e.dataTransfer.files]);
    });
    ui.input.addEventListener("paste", (e) => {
      const pasted = [...(e.clipboardData?.files ?? [])];
      if (pasted.length) {
        e.preventDefault();
        this.addFiles(pasted);
      }
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.readSoon();
    });
    window.addEventListener("online", () => this.renderConnection());
    window.addEventListener("offline", () => this.renderConnection());
  }

  private async submit(): Promise<void> {
    const id = this.active;
    if (!id) return;
    const body = this.ui.input.value.trim();
    if (this.editing) {
      const target = this.editing;
      if (!body || body === target.body) {
        this.cancelContext();
        return;
      }
      try {
        await this.client.editMessage(target.id, body);
        this.cancelContext();
        this.ui.input.value = "";
      } catch (error) {
        this.toast(`Could not edit: ${errorText(error)}`);
      }
      return;
    }
    const replyTo = this.replyTo?.id ?? null;
    if (this.files.length) {
      await this.sendFiles(id, body, replyTo);
      return;
    }
    if (!body) return;
    this.client.send(id, { body, reply_to: replyTo });
    this.ui.input.value = "";
    this.autosize();
    this.cancelContext();
    this.renderMessages({ toBottom: true });
  }

  private async sendFiles(id: string, body: string, replyTo: string | null): Promise<void> {
    const files = this.files.map((f) => f.file);
    this.ui.send.disabled = true;
    this.ui.send.textContent = "Uploading…";
    try {
      const uploads = await Promise.all(files.map((f) => this.client.upload(f, f.name)));
      const kind = files.every((f) => f.type.startsWith("image/")) ? "image" : "file";
      this.client.send(id, { kind, body, attachments: uploads.map((u) => u.upload.id), reply_to: replyTo });
      this.clearFiles();
      this.ui.input.value = "";
      this.autosize();
      this.cancelContext();
      this.renderMessages({ toBottom: true });
    } catch (error) {
      this.toast(`Upload failed: ${errorText(error)}`);
    } finally {
      this.ui.send.disabled = false;
      this.ui.send.textContent = "Send";
    }
  }

  private addFiles(files: File[]): void {
    for (const file of files.slice(0, 10 - this.files.length)) {
      this.files.push({ file, url: file.type.startsWith("image/") ? URL.createObjectURL(file) : null });
    }
    this.renderFiles();
  }

  private clearFiles(): void {
    for (const f of this.files) if (f.url) URL.revokeObjectURL(f.url);
    this.files = [];
    this.renderFiles();
  }

  private renderFiles(): void {
    const items = this.files.map((f, i) =>
      el(
        "div",
        { class: "file-chip" },
        f.url ? el("img", { src: f.url, alt: "" }) : el("span", { class: "file-icon", text: extension(f.file.name) }),
        el("span", { class: "file-name", text: f.file.name }),
        el("button", {
          type: "button",
          class: "remove",
          title: "Remove",
          text: "×",
          onclick: () => {
            const [gone] = this.files.splice(i, 1);
            if (gone?.url) URL.revokeObjectURL(gone.url);
            this.renderFiles();
          },
        }),
      ),
    );
    fill(this.ui.files, ...items);
    show(this.ui.files, items.length > 0);
  }

  private setContext(kind: "reply" | "edit", message: Message): void {
    const conv = this.convs.get(message.conversation_id);
    this.replyTo = kind === "reply" ? message : null;
    this.editing = kind === "edit" ? message : null;
    this.ui.contextText.textContent =
      kind === "reply" ? `Replying to ${nameOf(conv, message.sender_id)}: ${snippet(preview(message))}` : "Editing your message";
    this.ui.context.dataset.kind = kind;
    show(this.ui.context, true);
    if (kind === "edit") {
      this.ui.input.value = message.body;
      this.autosize();
    }
    this.ui.input.focus();
  }

  private cancelContext(): void {
    if (this.editing) this.ui.input.value = "";
    this.replyTo = null;
    this.editing = null;
    show(this.ui.context, false);
  }

  private autosize(): void {
    const input = this.ui.input;
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 160) + "px";
  }

  private openDialog(kind: "direct" | "group"): void {
    const form = this.ui.dialogForm;
    form.reset();
    form.dataset.kind = kind;
    byId("new-heading").textContent = kind === "direct" ? "New chat" : "New group";
    for (const node of form.querySelectorAll<HTMLElement>("[data-for]")) show(node, node.dataset.for === kind);
    for (const input of form.querySelectorAll<HTMLInputElement>("input")) input.required = input.closest<HTMLElement>("[data-for]")?.dataset.for === kind && input.name !== "members";
    byId("new-error").textContent = "";
    this.ui.dialog.showModal();
    form.querySelector<HTMLInputElement>(`[data-for="${kind}"] input`)?.focus();
  }

  private async createConversation(): Promise<void> {
    const form = this.ui.dialogForm;
    const data = new FormData(form);
    const kind = form.dataset.kind === "group" ? "group" : "direct";
    try {
      let conversation: Conversation;
      if (kind === "direct") {
        conversation = await this.client.openDirect(String(data.get("user") ?? "").trim());
      } else {
        const members = String(data.get("members") ?? "")
          .split(/[\s,]+/)
          .filter(Boolean);
        conversation = await this.client.createConversation({ kind: "group", title: String(data.get("title") ?? ""), members });
      }
      this.onConversation(conversation);
      this.ui.dialog.close();
      await this.open(conversation.id);
    } catch (error) {
      byId("new-error").textContent = errorText(error);
    }
  }

  private async runSearch(q: string): Promise<void> {
    if (!q) return this.closeSearch();
    const results = this.ui.results;
    show(results, true);
    show(this.ui.list, false);
    const close = el("button", { type: "button", class: "link", text: "Close", onclick: () => this.closeSearch() });
    fill(results, el("div", { class: "results-head" }, el("span", { text: `Searching “${q}”…` }), close));
    try {
      const found = await this.client.search(q, { limit: 50 });
      const rows = found.results.map((m) => {
        const conv = this.convs.get(m.conversation_id);
        return el(
          "li",
          {},
          el(
            "button",
            { type: "button", class: "result", "data-id": m.id, onclick: () => void this.jumpTo(m) },
            el("span", { class: "result-top" }, el("span", { class: "result-conv", text: conv ? titleOf(conv, this.me) : "" }), el("span", { class: "conv-time", text: shortTime(m.created_at) })),
            el("span", { class: "result-sender", text: m.sender_id === this.me ? "You" : m.sender_name || m.sender_id }),
            el("span", { class: "result-body", text: preview(m) }),
          ),
        );
      });
      const label = found.results.length ? `${found.results.length} result(s) for “${q}”` : `No messages match “${q}”`;
      fill(results, el("div", { class: "results-head" }, el("span", { text: label }), close), el("ul", { class: "results" }, ...rows));
    } catch (error) {
      fill(results, el("div", { class: "results-head" }, el("span", { text: `Search failed: ${errorText(error)}` }), close));
    }
  }

  private closeSearch(): void {
    this.ui.search.value = "";
    show(this.ui.results, false);
    show(this.ui.list, true);
  }

  // ------------------------------------------------------------------ drawing

  private renderConnection(): void {
    const state = this.client.state;
    const transport = this.client.transport;
    if (state === "connected") this.everConnected = true;
    const conn = this.ui.conn;
    conn.dataset.state = state;
    conn.dataset.transport = transport ?? "";
    if (state === "connected") conn.textContent = transport === "sse" ? "Connected · SSE (HTTP fallback)" : "Connected · WebSocket";
    else if (state === "closed") conn.textContent = "Signed out";
    else conn.textContent = this.everConnected ? "Reconnecting…" : "Connecting…";
    const offline = navigator.onLine === false;
    const down = this.everConnected && state !== "connected" && state !== "closed";
    this.ui.banner.textContent = offline
      ? "You are offline. Messages you send are kept and go out when the connection is back."
      : "Reconnecting… Messages you send are kept and go out when the connection is back.";
    this.ui.banner.dataset.state = offline ? "offline" : "reconnecting";
    show(this.ui.banner, down || (offline && this.everConnected));
  }

  private renderList(): void {
    const convs = [...this.convs.values()].sort((a, b) => activity(b).localeCompare(activity(a)));
    const items = convs.map((conv) => {
      const id = conv.info.id;
      const title = titleOf(conv, this.me);
      const partner = partnerOf(conv, this.me);
      const status = partner ? this.presence.get(partner)?.status ?? "offline" : null;
      const last = conv.last;
      const who = last && !last.deleted_at && conv.info.kind !== "direct" ? (last.sender_id === this.me ? "You: " : `${nameOf(conv, last.sender_id)}: `) : last?.sender_id === this.me && !last.deleted_at ? "You: " : "";
      const avatar = el("span", { class: "avatar", text: conv.info.kind === "direct" ? initials(title) : "#" });
      avatar.style.setProperty("--hue", String(hue(partner ?? id)));
      if (status) avatar.append(el("span", { class: `dot ${status}`, title: status }));
      const classes = ["conv"];
      if (id === this.active) classes.push("active");
      if (conv.unread > 0) classes.push("unread");
      return el(
        "li",
        {},
        el(
          "button",
          { type: "button", class: classes.join(" "), "data-id": id, "data-presence": status ?? undefined, onclick: () => void this.open(id) },
          avatar,
          el(
            "span",
            { class: "conv-main" },
            el("span", { class: "conv-top" }, el("span", { class: "conv-title", text: title }), el("span", { class: "conv-time", text: shortTime(last?.created_at ?? conv.info.last_activity_at) })),
            el(
              "span",
              { class: "conv-bottom" },
              el("span", { class: "conv-preview", text: who + preview(last) }),
              conv.unread > 0 && el("span", { class: "badge", text: conv.unread > 99 ? "99+" : String(conv.unread) }),
            ),
          ),
        ),
      );
    });
    if (!items.length) items.push(el("li", { class: "none", text: "No conversations yet. Start one with “New chat”." }));
    fill(this.ui.list, ...items);
  }

  private renderHead(): void {
    const conv = this.active ? this.convs.get(this.active) : undefined;
    if (!conv) return;
    this.ui.title.textContent = titleOf(conv, this.me);
    const partner = partnerOf(conv, this.me);
    if (partner) {
      const p = this.presence.get(partner);
      this.ui.sub.dataset.presence = p?.status ?? "offline";
      this.ui.sub.textContent = p?.status === "online" ? "online" : p?.last_seen ? `last seen ${shortTime(p.last_seen)}` : "offline";
    } else {
      const members = conv.info.members;
      const online = members.filter((m) => m.user_id !== this.me && this.presence.get(m.user_id)?.status === "online").length;
      this.ui.sub.dataset.presence = "";
      this.ui.sub.textContent = `${members.length} members${online ? ` · ${online} online` : ""} · ${members.map((m) => m.name || m.user_id).join(", ")}`;
    }
  }

  private renderTyping(): void {
    const id = this.active;
    const conv = id ? this.convs.get(id) : undefined;
    const users = id ? this.client.typingUsers(id).filter((u) => u !== this.me) : [];
    const names = users.map((u) => nameOf(conv, u));
    this.ui.typing.textContent =
      names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : names.length === 2 ? `${names[0]} and ${names[1]} are typing…` : "Several people are typing…";
  }

  private rows(conv: Conv): Row[] {
    const rows: Row[] = [];
    const seen = new Set<string>();
    const myRole = conv.info.members.find((m) => m.user_id === this.me)?.role;
    const moderator = conv.info.kind !== "direct" && (myRole === "owner" || myRole === "admin");
    let previous: string | null = null;
    for (const m of sortedMessages(conv)) {
      const mine = m.sender_id === this.me;
      const key = keyOf(m, this.me);
      seen.add(key);
      rows.push({
        key,
        message: m,
        mine,
        status: mine && m.kind !== "system" ? statusOf(conv, m, this.me) : null,
        senderName: m.sender_id === "system" ? "hubbub" : m.sender_name || nameOf(conv, m.sender_id),
        showSender: conv.info.kind !== "direct" && previous !== m.sender_id,
        quote: m.reply_to ? this.quote(conv, m.reply_to) : null,
        canEdit: mine && !m.deleted_at && m.kind !== "system",
        canDelete: !m.deleted_at && (mine || moderator),
      });
      previous = m.sender_id;
    }
    for (const entry of this.client.pending()) {
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
      this.client.rest.getMessage(id).then(
        (m) => {
          this.quotes.set(id, m);
          if (this.active === conv.info.id) this.renderMessages();
        },
        () => {},
      );
    }
    if (!target) return "↩ an earlier message";
    return `↩ ${nameOf(conv, target.sender_id)}: ${snippet(preview(target))}`;
  }

  private renderMessages(opts: { toBottom?: boolean; keepPosition?: boolean } = {}): void {
    const conv = this.active ? this.convs.get(this.active) : undefined;
    if (!conv) return;
    const scroller = this.ui.scroller;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48;
    const list = this.ui.messages;
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

    this.ui.older.hidden = !(conv.loaded && conv.hasMore);
    this.ui.older.textContent = "Load older messages";
    if (opts.keepPosition) scroller.scrollTop = scroller.scrollHeight - fromBottom;
    else if (opts.toBottom || atBottom) scroller.scrollTop = scroller.scrollHeight;
  }

  private readonly actions: RowActions = {
    reply: (m) => this.setContext("reply", m),
    edit: (m) => this.setContext("edit", m),
    remove: (m) => {
      if (!window.confirm("Delete this message for everyone?")) return;
      this.client.deleteMessage(m.id).catch((error) => this.toast(`Could not delete: ${errorText(error)}`));
    },
    toggleReaction: (m, emoji, mine) => {
      (mine ? this.client.unreact(m.id, emoji) : this.client.react(m.id, emoji)).catch((error) => this.toast(`Could not react: ${errorText(error)}`));
    },
    dismiss: (row) => {
      if (row.entry) this.failed.delete(row.entry.client_msg_id);
      this.renderMessages();
    },
    image: (a) => this.objectUrl(a),
    download: (a) => void this.download(a),
  };

  private objectUrl(a: Attachment): Promise<string> {
    let url = this.images.get(a.id);
    if (!url) {
      url = this.client.rest.download(a.url).then((blob) => URL.createObjectURL(blob));
      url.catch(() => this.images.delete(a.id));
      this.images.set(a.id, url);
    }
    return url;
  }

  private async download(a: Attachment): Promise<void> {
    try {
      const url = URL.createObjectURL(await this.client.rest.download(a.url));
      const link = el("a", { href: url, download: a.name });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (error) {
      this.toast(`Download failed: ${errorText(error)}`);
    }
  }

  private toast(text: string): void {
    const toast = this.ui.toast;
    toast.textContent = text;
    show(toast, true);
    if (this.toastTimer) clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => show(toast, false), 5000);
  }
}

function activity(conv: Conv): string {
  const last = conv.last?.created_at ?? "";
  return last > conv.info.last_activity_at ? last : conv.info.last_activity_at;
}

function snippet(text: string): string {
  return text.length > 80 ? text.slice(0, 79) + "…" : text;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
