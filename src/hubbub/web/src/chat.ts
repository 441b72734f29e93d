/**
 * The chat screen. Connecting, reconnecting, resuming, the outbox, typing
 * timers and receipts are the SDK's (clients/js); the app only draws what it
 * hands over and calls it.
 *
 * This file holds the state the parts share (the client, the conversations,
 * presence, which one is open), routes the SDK's events, and opens and closes
 * conversations. The parts draw and take input:
 *   conversations.ts  the list, the open conversation's header, new chats
 *   messageview.ts    the open conversation's messages, paging, typing line
 *   composer.ts       writing, replying, editing, uploads
 *   search.ts         full-text search
 *   connection.ts     the connection state and the reconnecting banner
 */
import { connect, localStorageAdapter, type Conversation, type HubbubClient, type Message, type Presence, type TransportKind } from "@hubbub/client";
import { Composer } from "./composer.js";
import { ConnectionState } from "./connection.js";
import { ConversationList } from "./conversations.js";
import { byId, hue, initials, show } from "./dom.js";
import { MessageView } from "./messageview.js";
import { applyReaction, movePointers, newConv, putMessage, setMembers, type Conv } from "./model.js";
import { Search } from "./search.js";
import { signOut, type Session } from "./signin.js";
import { errorText, findUi, Toast } from "./ui.js";

export class ChatApp {
  readonly client: HubbubClient;
  readonly me: string;
  readonly convs = new Map<string, Conv>();
  readonly presence = new Map<string, Presence>();
  /** The open conversation's id. */
  active: string | null = null;
  private readTimer: ReturnType<typeof setTimeout> | null = null;

  readonly ui = findUi();
  private readonly toaster = new Toast(this.ui.toast);
  readonly list = new ConversationList(this);
  readonly view = new MessageView(this);
  readonly composer = new Composer(this);
  readonly search = new Search(this);
  readonly connection = new ConnectionState(this);

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
    this.connection.render();
    void this.list.load().then(() => {
      const wanted = decodeURIComponent(location.hash.slice(1));
      if (wanted && this.convs.has(wanted)) void this.open(wanted);
    });
  }

  toast(text: string): void {
    this.toaster.show(text);
  }

  // ------------------------------------------------------------------ SDK events

  private wireClient(): void {
    const c = this.client;
    c.on("state", () => this.connection.render());
    c.on("resumed", () => {
      this.connection.render();
      this.list.loadSoon();
    });
    c.on("message.new", (e) => this.onMessage(e.conversation_id, e.message, true));
    c.on("message.edited", (e) => this.onMessage(e.conversation_id, e.message, false));
    c.on("message.deleted", (e) => this.onMessage(e.conversation_id, e.message, false));
    c.on("conversation.created", (e) => this.onConversation(e.conversation));
    c.on("conversation.updated", (e) => this.onConversation(e.conversation));
    c.on("conversation.unavailable", (e) => {
      this.convs.delete(e.conversation_id);
      if (this.active === e.conversation_id) this.close();
      this.list.render();
    });
    c.on("receipt", (e) => {
      const conv = this.convs.get(e.conversation_id);
      if (!conv) return;
      movePointers(conv, e.user_id, e.read_seq, e.delivered_seq);
      if (e.user_id === this.me && conv.last && e.read_seq >= conv.last.seq) {
        conv.unread = 0;
        this.list.render();
      }
      if (this.active === e.conversation_id) this.view.render();
    });
    c.on("reaction", (e) => {
      const conv = this.convs.get(e.conversation_id);
      const message = conv?.messages.get(e.message_id);
      if (!conv || !message) return;
      conv.messages.set(message.id, applyReaction(message, e, this.me));
      if (this.active === e.conversation_id) this.view.render();
    });
    c.on("typing", (e) => {
      if (e.conversation_id === this.active) this.view.renderTyping();
    });
    c.on("presence", (e) => {
      this.presence.set(e.user_id, { user_id: e.user_id, status: e.status, last_seen: e.last_seen });
      // Names come with the user's tokens: one never seen before may have one now.
      const nameless = [...this.convs.values()].some((c) => c.info.members.some((m) => m.user_id === e.user_id && !m.name));
      if (e.status === "online" && nameless) this.list.loadSoon();
      this.list.render();
      this.list.renderHead();
    });
    c.on("message.status", (e) => this.view.onStatus(e));
  }

  onMessage(id: string, message: Message, isNew: boolean): void {
    const conv = this.convs.get(id);
    if (!conv) {
      this.list.loadSoon();
      return;
    }
    putMessage(conv, message);
    if (isNew) {
      if (message.sender_id === this.me) movePointers(conv, this.me, message.seq, message.seq);
      else if (this.active === id && document.visibilityState === "visible") this.readSoon();
      else conv.unread += 1;
    }
    this.list.render();
    if (this.active === id) {
      this.view.render();
      this.view.renderTyping();
    }
  }

  onConversation(info: Conversation): void {
    const conv = this.convs.get(info.id);
    if (conv) setMembers(conv, info);
    else this.convs.set(info.id, newConv(info));
    this.list.render();
    if (this.active === info.id) this.list.renderHead();
    void this.list.loadPresence();
  }

  // ------------------------------------------------------------------ opening

  async open(id: string): Promise<void> {
    const conv = this.convs.get(id);
    if (!conv) return;
    if (this.active !== id) {
      this.active = id;
      this.view.clear();
      this.composer.clear();
      history.replaceState(null, "", "#" + encodeURIComponent(id));
    }
    this.ui.app.classList.add("chat-open");
    show(this.ui.empty, false);
    show(this.ui.head, true);
    show(this.ui.composer, true);
    this.list.renderHead();
    this.list.render();
    this.view.renderTyping();
    if (conv.memberCount > conv.info.members.length) void this.loadMembers(id);
    if (!conv.loaded && !conv.loading) {
      this.ui.older.hidden = true;
      await this.view.loadFirstPage(conv);
    }
    if (this.active !== id) return;
    this.view.render({ toBottom: true });
    this.readSoon();
    this.ui.input.focus();
  }

  /** The whole member list of a large group (its list entry has the first few). */
  async loadMembers(id: string): Promise<void> {
    try {
      this.onConversation(await this.client.rest.getConversation(id));
    } catch (error) {
      if (this.client.state === "connected") this.toast(`Could not load the members: ${errorText(error)}`);
    }
  }

  close(): void {
    this.active = null;
    this.view.clear();
    this.ui.app.classList.remove("chat-open");
    show(this.ui.empty, true);
    show(this.ui.head, false);
    show(this.ui.composer, false);
    this.ui.older.hidden = true;
    history.replaceState(null, "", location.pathname + location.search);
  }

  /** Open a conversation at a message (a search result): page back until it is loaded. */
  async jumpTo(message: Message): Promise<void> {
    await this.open(message.conversation_id);
    const conv = this.convs.get(message.conversation_id);
    for (let i = 0; conv && !conv.messages.has(message.id) && conv.hasMore && i < 50; i++) {
      if (!(await this.view.loadOlder())) break;
    }
    const node = this.ui.messages.querySelector<HTMLElement>(`[data-id="${CSS.escape(message.id)}"]`);
    if (!node) return;
    node.scrollIntoView({ block: "center" });
    node.classList.add("highlight");
    setTimeout(() => node.classList.remove("highlight"), 2000);
  }

  /** Mark the open conversation read, soon (once for a burst of messages). */
  readSoon(): void {
    if (this.readTimer) return;
    this.readTimer = setTimeout(() => {
      this.readTimer = null;
      const conv = this.active ? this.convs.get(this.active) : undefined;
      if (!conv || document.visibilityState !== "visible") return;
      const mine = conv.pointers.get(this.me)?.read ?? 0;
      if (conv.unread > 0 || (conv.last && conv.last.seq > mine)) {
        conv.unread = 0;
        this.list.render();
        this.client.markRead(conv.info.id).catch(() => {});
      }
    }, 150);
  }

  // ------------------------------------------------------------------ user input

  private wireUi(): void {
    byId("signout").addEventListener("click", () => {
      this.client.close();
      signOut();
    });
    byId("back").addEventListener("click", () => this.close());
    this.list.wire();
    this.search.wire();
    this.view.wire();
    this.composer.wire();
    this.connection.wire();
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.readSoon();
    });
  }
}

