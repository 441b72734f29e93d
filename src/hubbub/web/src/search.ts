/**
 * Full-text search: the box above the list, and the results in the list's
 * place; a result opens its conversation at the message.
 */
import type { ChatApp } from "./chat.js";
import { el, fill, shortTime, show } from "./dom.js";
import { preview, titleOf } from "./model.js";
import { errorText } from "./ui.js";

export class Search {
  constructor(private readonly chat: ChatApp) {}

  wire(): void {
    const ui = this.chat.ui;
    ui.searchForm.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.run(ui.search.value.trim());
    });
    ui.search.addEventListener("input", () => {
      if (!ui.search.value) this.close();
    });
  }

  private async run(q: string): Promise<void> {
    if (!q) return this.close();
    const chat = this.chat;
    const results = chat.ui.results;
    show(results, true);
    show(chat.ui.list, false);
    const close = el("button", { type: "button", class: "link", text: "Close", onclick: () => this.close() });
    fill(results, el("div", { class: "results-head" }, el("span", { text: `Searching “${q}”…` }), close));
    try {
      const found = await chat.client.search(q, { limit: 50 });
      const rows = found.results.map((m) => {
        const conv = chat.convs.get(m.conversation_id);
        return el(
          "li",
          {},
          el(
            "button",
            { type: "button", class: "result", "data-id": m.id, onclick: () => void chat.jumpTo(m) },
            el("span", { class: "result-top" }, el("span", { class: "result-conv", text: conv ? titleOf(conv, chat.me) : "" }), el("span", { class: "conv-time", text: shortTime(m.created_at) })),
            el("span", { class: "result-sender", text: m.sender_id === chat.me ? "You" : m.sender_name || m.sender_id }),
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

  private close(): void {
    const ui = this.chat.ui;
    ui.search.value = "";
    show(ui.results, false);
    show(ui.list, true);
  }
}
