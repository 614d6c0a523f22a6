// The header's Share button and its dialog: a read-only link to the conversation as it is
// now (POST /api/conversations/<id>/share), Copy, and Revoke (DELETE). Sharing again keeps
// the link and updates what it shows.
import { shareConversation, unshareConversation } from "./api.js";
import { gettext } from "./i18n.js";

const $ = (id) => document.getElementById(id);

export class ShareDialog {
  // `hooks`: {onError(error)}
  constructor(hooks = {}) {
    this.hooks = hooks;
    this.conversation = null;
    this.button = $("share");
    this.dialog = $("share-dialog");
    this.url = $("share-url");
    this.status = $("share-status");
    this.copyButton = $("share-copy");
    this.update = $("share-update");
    this.revoke = $("share-revoke");
    this.error = $("share-error");
    this.button.addEventListener("click", () => this.open());
    this.copyButton.addEventListener("click", () => this.copy());
    this.update.addEventListener("click", () => this.share());
    this.revoke.addEventListener("click", () => this.unshare());
    $("share-close").addEventListener("click", () => this.dialog.close());
    this.setConversation(null);
  }

  // The open conversation (null: a new chat, nothing to share yet).
  setConversation(conversation) {
    this.conversation = conversation;
    this.button.hidden = !conversation?.id;
    if (this.dialog.open && !conversation?.id) this.dialog.close();
  }

  // Not shared yet: share at once (that is what the button says). Shared: show the link.
  async open() {
    if (!this.conversation?.id) return;
    this.error.hidden = true;
    this.show(this.conversation.share_url || null);
    this.dialog.showModal();
    if (!this.conversation.share_url) await this.share();
  }

  show(url) {
    this.url.value = url || "";
    this.url.hidden = !url;
    this.copyButton.hidden = !url;
    this.revoke.hidden = !url;
    this.update.textContent = url ? gettext("Update to the latest messages") : gettext("Create a link");
    this.status.textContent = url
      ? gettext(
          "Anyone with this link can read the conversation as it was when you shared it. Messages you send later stay private until you update it.",
        )
      : gettext("Not shared.");
  }

  async share() {
    const conversation = this.conversation;
    try {
      const again = Boolean(conversation.share_url);
      const { url } = await shareConversation(conversation.id);
      conversation.share_url = url;
      if (conversation !== this.conversation) return;
      this.show(url);
      if (again) this.status.textContent = gettext("Updated: the link now shows the conversation as it is now.");
    } catch (error) {
      this.fail(error);
    }
  }

  async unshare() {
    const conversation = this.conversation;
    try {
      await unshareConversation(conversation.id);
      conversation.share_url = null;
      if (conversation === this.conversation) {
        this.show(null);
        this.status.textContent = gettext("The link no longer works.");
      }
    } catch (error) {
      this.fail(error);
    }
  }

  async copy() {
    try {
      await navigator.clipboard.writeText(this.url.value);
    } catch {
      this.url.select(); // not a secure context: the old way
      document.execCommand("copy");
    }
    this.copyButton.textContent = gettext("Copied");
    setTimeout(() => {
      this.copyButton.textContent = gettext("Copy");
    }, 1500);
  }

  fail(error) {
    this.error.textContent = error?.message || String(error);
    this.error.hidden = false;
    this.hooks.onError?.(error);
  }
}
