// Thumbs up / down under a finished reply, and a short comment after a thumbs-down.
// POST /api/messages/<id>/feedback: {"rating": 1 | -1 | 0, "comment"?}; pressing the thumb
// that is already pressed clears it (0). aria-pressed tells the state; text only by textContent.
import { sendFeedback } from "./api.js";
import { gettext } from "./i18n.js";

const COMMENT_CHARS = 2000; // the server's limit (chat/feedback.py)

// Feather's thumbs (MIT): drawn, so they show where no emoji font is installed.
const THUMBS = {
  1: "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3",
  [-1]: "M10 15v4a3 3 0 0 0 3 3l4-9V2H5.72a2 2 0 0 0-2 1.7l-1.38 9a2 2 0 0 0 2 2.3zm7-13h2.67A2.31 2.31 0 0 1 22 4v7a2.31 2.31 0 0 1-2.33 2H17",
};

function thumb(rating) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = `thumb ${rating === 1 ? "thumb-up" : "thumb-down"}`;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", THUMBS[rating]);
  svg.append(path);
  el.append(svg);
  const label = rating === 1 ? gettext("Good reply") : gettext("Bad reply");
  el.title = label;
  el.setAttribute("aria-label", label);
  el.setAttribute("aria-pressed", "false");
  return el;
}

export class Feedback {
  // `hooks`: {onError(error)}
  constructor(reply, hooks = {}) {
    this.reply = reply;
    this.hooks = hooks;
    this.rating = reply.message.feedback?.rating ?? 0;
    this.up = thumb(1);
    this.down = thumb(-1);
    this.el = document.createElement("span");
    this.el.className = "feedback";
    this.el.setAttribute("role", "group");
    this.el.setAttribute("aria-label", gettext("Rate this reply"));
    this.el.append(this.up, this.down);
    this.up.addEventListener("click", () => this.rate(1));
    this.down.addEventListener("click", () => this.rate(-1));
    this.form = this.commentForm();
    reply.actions.append(this.el);
    reply.actions.after(this.form);
    this.render();
  }

  commentForm() {
    const form = document.createElement("form");
    form.className = "feedback-comment";
    form.hidden = true;
    const label = document.createElement("label");
    label.textContent = gettext("What was wrong with this reply? (optional)");
    this.comment = document.createElement("textarea");
    this.comment.rows = 2;
    this.comment.maxLength = COMMENT_CHARS;
    label.append(this.comment);
    const send = document.createElement("button");
    send.type = "submit";
    send.className = "feedback-send";
    send.textContent = gettext("Send");
    const skip = document.createElement("button");
    skip.type = "button";
    skip.className = "feedback-skip";
    skip.textContent = gettext("Skip");
    skip.addEventListener("click", () => this.closeForm());
    form.append(label, send, skip);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save({ rating: -1, comment: this.comment.value }).then((ok) => ok && this.closeForm());
    });
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault(); // not the page's Escape (stop a reply, cancel an edit)
        this.closeForm();
      }
    });
    return form;
  }

  render() {
    this.up.setAttribute("aria-pressed", String(this.rating === 1));
    this.down.setAttribute("aria-pressed", String(this.rating === -1));
  }

  async rate(rating) {
    const next = this.rating === rating ? 0 : rating;
    if (!(await this.save({ rating: next }))) return;
    if (next === -1) {
      this.form.hidden = false;
      this.comment.focus();
    } else {
      this.closeForm();
    }
  }

  async save(body) {
    for (const el of [this.up, this.down]) el.disabled = true;
    try {
      const message = await sendFeedback(this.reply.id, body);
      this.rating = message.feedback?.rating ?? 0;
      this.comment.value = message.feedback?.comment ?? "";
      this.reply.message = { ...this.reply.message, feedback: message.feedback };
      this.render();
      return true;
    } catch (error) {
      this.hooks.onError?.(error);
      return false;
    } finally {
      for (const el of [this.up, this.down]) el.disabled = false;
    }
  }

  closeForm() {
    this.form.hidden = true;
  }
}
