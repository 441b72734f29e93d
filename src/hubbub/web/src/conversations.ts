/**
 * The conversation list (last message, unread badge, presence dot), the open
 * conversation's header, loading both, and the dialog for new chats and groups.
 */
import type { Conversation } from "@hubbub/client";
import type { ChatApp } from "./chat.js";
import { byId, el, fill, hue, initials, shortTime, show } from "./dom.js";
import { nameOf, newConv, partnerOf, preview, putMessage, setMembers, titleOf, type Conv } from "./model.js";
import { errorText } from "./ui.js";

export class ConversationList {
  private listTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly chat: ChatApp) {}

  wire(): void {
    const ui = this.chat.ui;
    byId("new-direct").addEventListener("click", () => this.openDialog("direct"));
    byId("new-group").addEventListener("click", () => this.openDialog("group"));
    byId("new-cancel").addEventListener("click", () => ui.dialog.close());
    ui.dialogForm.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.create();
    });
  }

  // ------------------------------------------------------------------ loading

  loadSoon(): void {
    if (this.listTimer) return;
    this.listTimer = setTimeout(() => {
      this.listTimer = null;
      void this.load();
    }, 100);
  }

  async load(): Promise<void> {
    const chat = this.chat;
    let list;
    try {
      list = await chat.client.listConversations();
    } catch (error) {
      if (chat.client.state === "connected") chat.toast(`Could not list conversations: ${errorText(error)}`);
      return;
    }
    for (const summary of list) {
      const conv = chat.convs.get(summary.id);
      if (!conv) {
        chat.convs.set(summary.id, newConv(summary, summary));
        continue;
      }
      setMembers(conv, summary);
      if (summary.last_message && (!conv.last || summary.last_message.seq >= conv.last.seq)) putMessage(conv, summary.last_message);
      conv.unread = chat.active === summary.id && document.visibilityState === "visible" ? 0 : summary.unread_count;
    }
    this.render();
    if (chat.active) {
      this.renderHead();
      chat.readSoon();
    }
    await this.loadPresence();
  }

  async loadPresence(): Promise<void> {
    const chat = this.chat;
    const users = new Set<string>();
    for (const conv of chat.convs.values()) {
      if (conv.info.kind === "room") continue;
      for (const m of conv.info.members) if (m.user_id !== chat.me) users.add(m.user_id);
    }
    const ids = [...users].slice(0, 100);
    if (!ids.length) return;
    try {
      for (const p of await chat.client.presence(ids)) chat.presence.set(p.user_id, p);
    } catch {
      return; // presence is a nicety; events keep it current
    }
    this.render();
    this.renderHead();
  }

  // ------------------------------------------------------------------ drawing

  render(): void {
    const { convs: all, me, presence, active } = this.chat;
    const convs = [...all.values()].sort((a, b) => activity(b).localeCompare(activity(a)));
    const items = convs.map((conv) => {
      const id = conv.info.id;
      const title = titleOf(conv, me);
      const partner = partnerOf(conv, me);
      const status = partner ? presence.get(partner)?.status ?? "offline" : null;
      const last = conv.last;
      const who = last && !last.deleted_at && conv.info.kind !== "direct" ? (last.sender_id === me ? "You: " : `${nameOf(conv, last.sender_id)}: `) : last?.sender_id === me && !last.deleted_at ? "You: " : "";
      const avatar = el("span", { class: "avatar", text: conv.info.kind === "direct" ? initials(title) : "#" });
      avatar.style.setProperty("--hue", String(hue(partner ?? id)));
      if (status) avatar.append(el("span", { class: `dot ${status}`, title: status }));
      const classes = ["conv"];
      if (id === active) classes.push("active");
      if (conv.unread > 0) classes.push("unread");
      return el(
        "li",
        {},
        el(
          "button",
          { type: "button", class: classes.join(" "), "data-id": id, "data-presence": status ?? undefined, onclick: () => void this.chat.open(id) },
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
    fill(this.chat.ui.list, ...items);
  }

  /** The open conversation's title and, under it, presence or the members. */
  renderHead(): void {
    const { ui, me, presence, active } = this.chat;
    const conv = active ? this.chat.convs.get(active) : undefined;
    if (!conv) return;
    ui.title.textContent = titleOf(conv, me);
    const partner = partnerOf(conv, me);
    if (partner) {
      const p = presence.get(partner);
      ui.sub.dataset.presence = p?.status ?? "offline";
      ui.sub.textContent = p?.status === "online" ? "online" : p?.last_seen ? `last seen ${shortTime(p.last_seen)}` : "offline";
    } else {
      const members = conv.info.members;
      const online = members.filter((m) => m.user_id !== me && presence.get(m.user_id)?.status === "online").length;
      ui.sub.dataset.presence = "";
      const more = conv.memberCount > members.length ? ", …" : "";
      ui.sub.textContent = `${conv.memberCount} members${online ? ` · ${online} online` : ""} · ${members.map((m) => m.name || m.user_id).join(", ")}${more}`;
    }
  }

  // ------------------------------------------------------------------ new conversations

  private openDialog(kind: "direct" | "group"): void {
    const form = this.chat.ui.dialogForm;
    form.reset();
    form.dataset.kind = kind;
    byId("new-heading").textContent = kind === "direct" ? "New chat" : "New group";
    for (const node of form.querySelectorAll<HTMLElement>("[data-for]")) show(node, node.dataset.for === kind);
    for (const input of form.querySelectorAll<HTMLInputElement>("input")) input.required = input.closest<HTMLElement>("[data-for]")?.dataset.for === kind && input.name !== "members";
    byId("new-error").textContent = "";
    this.chat.ui.dialog.showModal();
    form.querySelector<HTMLInputElement>(`[data-for="${kind}"] input`)?.focus();
  }

  private async create(): Promise<void> {
    const chat = this.chat;
    const form = chat.ui.dialogForm;
    const data = new FormData(form);
    const kind = form.dataset.kind === "group" ? "group" : "direct";
    try {
      let conversation: Conversation;
      if (kind === "direct") {
        conversation = await chat.client.openDirect(String(data.get("user") ?? "").trim());
      } else {
        const members = String(data.get("members") ?? "")
          .split(/[\s,]+/)
          .filter(Boolean);
        conversation = await chat.client.createConversation({ kind: "group", title: String(data.get("title") ?? ""), members });
      }
      chat.onConversation(conversation);
      chat.ui.dialog.close();
      await chat.open(conversation.id);
    } catch (error) {
      byId("new-error").textContent = errorText(error);
    }
  }
}

/** When a conversation last saw activity, for sorting the list. */
function activity(conv: Conv): string {
  const last = conv.last?.created_at ?? "";
  return last > conv.info.last_activity_at ? last : conv.info.last_activity_at;
}
