/**
 * The message list of the open conversation: one node per message, keyed so
 * that a message is drawn once from "pending" through "read" (an outgoing
 * message is keyed by its client_msg_id, others by id), rebuilt only when
 * what it shows changed. Everything user-supplied goes in as text.
 */
import type { Attachment, Message, OutboxEntry, SendStatus } from "@hubbub/client";
import { el, extension, fileSize, fullTime, shortTime } from "./dom.js";

export const EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢"];

const TICKS: Record<SendStatus, string> = {
  pending: "🕓",
  sent: "✓",
  delivered: "✓✓",
  read: "✓✓",
  failed: "!",
};
const TICK_TITLES: Record<SendStatus, string> = {
  pending: "Waiting to be sent",
  sent: "Sent",
  delivered: "Delivered",
  read: "Read",
  failed: "Not sent",
};

/** One row of the list: a stored message, or one of mine still in the outbox (or refused). */
export interface Row {
  key: string;
  message?: Message;
  entry?: OutboxEntry;
  mine: boolean;
  status: SendStatus | null;
  error?: string;
  senderName: string;
  showSender: boolean;
  quote: string | null;
  canEdit: boolean;
  canDelete: boolean;
}

export interface RowActions {
  reply(message: Message): void;
  edit(message: Message): void;
  remove(message: Message): void;
  toggleReaction(message: Message, emoji: string, mine: boolean): void;
  dismiss(row: Row): void;
  image(attachment: Attachment): Promise<string>;
  download(attachment: Attachment): void;
}

export function keyOf(message: Message, me: string): string {
  return message.sender_id === me && message.client_msg_id ? "c:" + message.client_msg_id : "m:" + message.id;
}

/** What a row shows; a node is rebuilt when this changes. */
export function signature(row: Row): string {
  const m = row.message;
  return JSON.stringify([
    m ? [m.body, m.edited_at, m.deleted_at, m.reactions, m.attachments.length] : row.entry?.body,
    row.status,
    row.error,
    row.showSender,
    row.senderName,
    row.quote,
    row.canEdit,
    row.canDelete,
  ]);
}

export function buildRow(row: Row, actions: RowActions): HTMLElement {
  const m = row.message;
  const deleted = !!m?.deleted_at;
  const body = m ? m.body : row.entry?.body ?? "";
  const classes = ["msg", row.mine ? "mine" : "theirs"];
  if (deleted) classes.push("deleted");
  if (m?.kind === "system") classes.push("system");
  const node = el("div", {
    class: classes.join(" "),
    "data-key": row.key,
    "data-id": m?.id,
    "data-seq": m?.seq,
    "data-status": row.status ?? undefined,
  });

  const bubble = el("div", { class: "bubble" });
  if (row.showSender && !row.mine) bubble.append(el("div", { class: "sender", text: row.senderName }));
  if (row.quote !== null && !deleted) bubble.append(el("div", { class: "quote", text: row.quote }));
  if (m && !deleted && m.attachments.length) bubble.append(attachments(m, actions));
  if (!m && row.entry?.attachments?.length) {
    bubble.append(el("div", { class: "attachment-note", text: `${row.entry.attachments.length} attachment(s)` }));
  }
  if (deleted) bubble.append(el("div", { class: "body tombstone", text: "Message deleted" }));
  else if (body) bubble.append(el("div", { class: "body", text: body }));

  const meta = el("div", { class: "meta" });
  if (m?.edited_at && !deleted) meta.append(el("span", { class: "edited", text: "edited", title: fullTime(m.edited_at) }));
  meta.append(el("span", { class: "time", text: m ? shortTime(m.created_at) : "", title: m ? fullTime(m.created_at) : "" }));
  if (row.mine && row.status) {
    meta.append(el("span", { class: `tick ${row.status}`, "data-status": row.status, title: TICK_TITLES[row.status], text: TICKS[row.status] }));
  }
  bubble.append(meta);
  if (row.error) {
    bubble.append(
      el("div", { class: "send-error" }, "Not sent: " + row.error + " ", el("button", { type: "button", class: "link", text: "Dismiss", onclick: () => actions.dismiss(row) })),
    );
  }
  node.append(bubble);

  if (m && !deleted && m.reactions.length) {
    const chips = el("div", { class: "reactions" });
    for (const r of m.reactions) {
      chips.append(
        el("button", {
          type: "button",
          class: r.me ? "chip me" : "chip",
          "data-emoji": r.emoji,
          title: r.me ? "Take your reaction back" : "React",
          text: `${r.emoji} ${r.count}`,
          onclick: () => actions.toggleReaction(m, r.emoji, r.me),
        }),
      );
    }
    node.append(chips);
  }

  if (m && !deleted && m.kind !== "system") {
    const picker = el("div", { class: "picker", hidden: true });
    for (const emoji of EMOJI) {
      const mine = m.reactions.some((r) => r.emoji === emoji && r.me);
      picker.append(
        el("button", {
          type: "button",
          class: "emoji",
          "data-emoji": emoji,
          text: emoji,
          onclick: () => {
            picker.hidden = true;
            actions.toggleReaction(m, emoji, mine);
          },
        }),
      );
    }
    const tools = el(
      "div",
      { class: "actions" },
      el("button", { type: "button", class: "act-reply", title: "Reply", text: "Reply", onclick: () => actions.reply(m) }),
      el("button", { type: "button", class: "act-react", title: "React", text: "☺", onclick: () => (picker.hidden = !picker.hidden) }),
      row.canEdit && el("button", { type: "button", class: "act-edit", title: "Edit", text: "Edit", onclick: () => actions.edit(m) }),
      row.canDelete && el("button", { type: "button", class: "act-delete", title: "Delete", text: "Delete", onclick: () => actions.remove(m) }),
    );
    node.append(tools, picker);
  }
  return node;
}

function attachments(m: Message, actions: RowActions): HTMLElement {
  const box = el("div", { class: "attachments" });
  for (const a of m.attachments) {
    if (a.content_type.startsWith("image/")) {
      const img = el("img", { class: "image loading", alt: a.name, title: a.name });
      const link = el("a", { class: "image-link", target: "_blank", rel: "noopener" }, img);
      actions.image(a).then(
        (url) => {
          img.src = url;
          link.href = url;
          img.classList.remove("loading");
        },
        () => img.classList.replace("loading", "broken"),
      );
      box.append(link);
    } else {
      box.append(
        el(
          "button",
          { type: "button", class: "file", title: "Download " + a.name, onclick: () => actions.download(a) },
          el("span", { class: "file-icon", text: extension(a.name) }),
          el("span", { class: "file-name", text: a.name }),
          el("span", { class: "file-size", text: fileSize(a.size) }),
        ),
      );
    }
  }
  return box;
}
