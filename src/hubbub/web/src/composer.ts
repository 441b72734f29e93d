/**
 * The composer: writing and sending (Enter sends, Shift+Enter is a new line),
 * typing notices, replying to and editing a message, and files to send
 * (picked, dropped or pasted), previewed before they go.
 */
import type { Message } from "@hubbub/client";
import type { ChatApp } from "./chat.js";
import { byId, el, extension, fill, show } from "./dom.js";
import { nameOf, preview } from "./model.js";
import { errorText, snippet } from "./ui.js";

export class Composer {
  private replyTo: Message | null = null;
  private editing: Message | null = null;
  private files: { file: File; url: string | null }[] = [];

  constructor(private readonly chat: ChatApp) {}

  wire(): void {
    const chat = this.chat;
    const ui = chat.ui;
    ui.input.addEventListener("input", () => {
      this.autosize();
      if (chat.active && !this.editing && ui.input.value.trim()) chat.client.typing(chat.active).keystroke();
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
    const pane = byId("chat");
    pane.addEventListener("dragover", (e) => {
      if (chat.active && e.dataTransfer?.types.includes("Files")) e.preventDefault();
    });
    pane.addEventListener("drop", (e) => {
      if (!chat.active || !e.dataTransfer?.files.length) return;
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
  }

  /** Start afresh (another conversation is opened). */
  clear(): void {
    this.cancelContext();
    this.clearFiles();
    this.chat.ui.input.value = "";
  }

  // ------------------------------------------------------------------ sending

  private async submit(): Promise<void> {
    const chat = this.chat;
    const id = chat.active;
    if (!id) return;
    const body = chat.ui.input.value.trim();
    if (this.editing) {
      const target = this.editing;
      if (!body || body === target.body) {
        this.cancelContext();
        return;
      }
      try {
        await chat.client.editMessage(target.id, body);
        this.cancelContext();
        chat.ui.input.value = "";
      } catch (error) {
        chat.toast(`Could not edit: ${errorText(error)}`);
      }
      return;
    }
    const replyTo = this.replyTo?.id ?? null;
    if (this.files.length) {
      await this.sendFiles(id, body, replyTo);
      return;
    }
    if (!body) return;
    chat.client.send(id, { body, reply_to: replyTo });
    chat.ui.input.value = "";
    this.autosize();
    this.cancelContext();
    chat.view.render({ toBottom: true });
  }

  private async sendFiles(id: string, body: string, replyTo: string | null): Promise<void> {
    const chat = this.chat;
    const send = chat.ui.send;
    const files = this.files.map((f) => f.file);
    send.disabled = true;
    send.textContent = "Uploading…";
    try {
      const uploads = await Promise.all(files.map((f) => chat.client.upload(f, f.name)));
      const kind = files.every((f) => f.type.startsWith("image/")) ? "image" : "file";
      chat.client.send(id, { kind, body, attachments: uploads.map((u) => u.upload.id), reply_to: replyTo });
      this.clearFiles();
      chat.ui.input.value = "";
      this.autosize();
      this.cancelContext();
      chat.view.render({ toBottom: true });
    } catch (error) {
      chat.toast(`Upload failed: ${errorText(error)}`);
    } finally {
      send.disabled = false;
      send.textContent = "Send";
    }
  }

  // ------------------------------------------------------------------ files

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
    const box = this.chat.ui.files;
    fill(box, ...items);
    show(box, items.length > 0);
  }

  // ------------------------------------------------------------------ reply / edit

  setContext(kind: "reply" | "edit", message: Message): void {
    const ui = this.chat.ui;
    const conv = this.chat.convs.get(message.conversation_id);
    this.replyTo = kind === "reply" ? message : null;
    this.editing = kind === "edit" ? message : null;
    ui.contextText.textContent =
      kind === "reply" ? `Replying to ${nameOf(conv, message.sender_id)}: ${snippet(preview(message))}` : "Editing your message";
    ui.context.dataset.kind = kind;
    show(ui.context, true);
    if (kind === "edit") {
      ui.input.value = message.body;
      this.autosize();
    }
    ui.input.focus();
  }

  private cancelContext(): void {
    if (this.editing) this.chat.ui.input.value = "";
    this.replyTo = null;
    this.editing = null;
    show(this.chat.ui.context, false);
  }

  private autosize(): void {
    const input = this.chat.ui.input;
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 160) + "px";
  }
}
