// One assistant reply on the page: its element, its Markdown, and following its stream.
//
// Following uses EventSource on GET /api/messages/<id>/stream. EventSource reconnects by
// itself after a network error and sends Last-Event-ID (the offset of the text received),
// so the server answers exactly the rest. When the browser gives up (the server answered
// an error status), this reconnects itself with ?last_event_id= and a growing delay.
import { ApiError, streamUrl } from "./api.js";
import { ApprovalPrompt } from "./approval.js";
import { MarkdownView } from "./markdown.js";
import { StepsView } from "./steps.js";
import { gettext, interpolate } from "./i18n.js";

const FRAME_BUDGET_MS = 6; // drawing work per animation frame, when much text waits
const STATES = {
  thinking: gettext("Thinking…"),
  queued: gettext("Waiting for the model…"),
  reconnecting: gettext("Reconnecting…"),
  cached: gettext("Answered before: from the cache…"),
  reasoning: gettext("Reasoning…"),
  writing: gettext("Writing…"),
};
const stateLabel = (state, name) =>
  state === "tool" && name
    ? interpolate(gettext("Using %(name)s…"), { name }, true)
    : STATES[state] || `${state.charAt(0).toUpperCase()}${state.slice(1)}…`;

function button(className, text, label) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = className;
  el.textContent = text;
  if (label) el.setAttribute("aria-label", label);
  return el;
}

export class Reply {
  // `hooks`: {onRender(reply), onFinish(reply) (the stream ended), onComplete(reply) (and is
  // drawn), lookup(reply) -> message|null (null: gone)}
  constructor(message, hooks = {}) {
    this.id = message.id;
    this.message = message;
    this.hooks = hooks;
    this.source = null;
    this.frame = 0;
    this.timer = 0;
    this.retries = 0;
    this.lastEventId = "";
    this.streaming = false;
    this.ending = null; // the end event of a stream, until all its text is drawn

    this.el = document.createElement("article");
    this.el.className = "msg assistant";
    this.el.dataset.id = message.id;
    this.el.setAttribute("aria-label", gettext("Reply"));
    this.progress = document.createElement("div");
    this.progress.className = "progress";
    this.progress.hidden = true;
    const body = document.createElement("div");
    body.className = "markdown";
    this.view = new MarkdownView(body);
    this.note = document.createElement("div");
    this.note.className = "note";
    this.note.hidden = true;
    this.actions = document.createElement("div");
    this.actions.className = "actions";
    // A small mark on an answer told again from the answer cache (docs/API-extensions.md).
    this.cachedMark = document.createElement("span");
    this.cachedMark.className = "cached-mark";
    this.cachedMark.textContent = gettext("cached");
    this.cachedMark.title = gettext("The same question was answered before: this answer came from the cache.");
    this.cachedMark.hidden = true;
    this.actions.append(
      this.cachedMark,
      button("copy-reply", gettext("Copy"), gettext("Copy the reply")),
      button("regenerate", gettext("Regenerate"), gettext("Regenerate: answer this message again")),
    );
    this.steps = new StepsView(); // reasoning and tool steps, folded (issue 12)
    this.approval = new ApprovalPrompt(message.id); // a tool call waiting for the person (issue 31)
    this.el.append(this.progress, this.steps.el, body, this.note, this.actions);
  }

  // A finished reply, shown at once.
  show() {
    this.steps.show(this.message.steps);
    this.view.append(this.message.content || "");
    this.view.render(true);
    this.showEnd(this.message);
    return this;
  }

  // A reply still being generated. Its stored content is a checkpoint that may lag behind:
  // show it at once, follow the stream from the start (the server replays the text so far
  // quickly) and take over once the replay has caught up, so no text is lost or doubled.
  follow() {
    this.streaming = true;
    this.el.classList.add("streaming");
    this.el.setAttribute("aria-busy", "true");
    this.checkpoint = this.message.content || "";
    this.replayed = "";
    this.caughtUp = this.checkpoint === "";
    this.steps.reset(); // the stream replays them from its start
    if (!this.caughtUp) {
      this.view.append(this.checkpoint);
      this.view.render();
    }
    this.setProgress(this.checkpoint ? "" : stateLabel("thinking"));
    this.open();
    return this;
  }

  open() {
    this.closeSource();
    const source = new EventSource(streamUrl(this.id, this.lastEventId));
    this.source = source;
    source.addEventListener("start", () => {
      this.retries = 0;
      if (this.progress.textContent === STATES.reconnecting) this.setProgress("");
    });
    source.addEventListener("status", (event) => {
      const status = JSON.parse(event.data);
      const asking = this.approval.update(status, this.steps.el); // issue 31
      if (asking) this.setProgress(asking);
      else if (this.view.length === 0) this.setProgress(stateLabel(status.state, status.name));
      else this.setProgress(""); // after the text began, only a question is shown
    });
    source.addEventListener("message", (event) => {
      this.lastEventId = event.lastEventId;
      this.steps.endRun();
      this.receive(JSON.parse(event.data).text);
    });
    source.addEventListener("reasoning", (event) => {
      this.lastEventId = event.lastEventId;
      this.steps.reasoning(JSON.parse(event.data).text);
    });
    source.addEventListener("tool_call", (event) => {
      this.lastEventId = event.lastEventId;
      this.steps.toolCall(JSON.parse(event.data));
    });
    source.addEventListener("tool_result", (event) => {
      this.lastEventId = event.lastEventId;
      this.steps.toolResult(JSON.parse(event.data));
    });
    source.addEventListener("done", (event) => this.finish(JSON.parse(event.data)));
    source.addEventListener("error", (event) => {
      if (event.data) {
        // The contract's `error` event: the model failed.
        const failure = JSON.parse(event.data);
        this.finish({ status: "error", error: failure.error, code: failure.code });
        return;
      }
      if (!this.streaming) return;
      // A network error: EventSource reconnects by itself unless it gave up (CLOSED).
      this.setProgress(STATES.reconnecting);
      if (source.readyState === EventSource.CLOSED) this.reconnectLater();
    });
  }

  reconnectLater() {
    this.closeSource();
    const delay = Math.min(500 * 2 ** this.retries, 15000);
    this.retries += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.reconnect(), delay);
  }

  // Reconnect now (also called when the browser comes back online).
  async reconnect() {
    clearTimeout(this.timer);
    if (!this.streaming) return;
    if (this.hooks.lookup) {
      let message;
      try {
        message = await this.hooks.lookup(this);
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 404)) return this.reconnectLater();
        message = null;
      }
      if (!this.streaming) return;
      if (message === null) {
        this.finish({ status: "error", error: gettext("This reply no longer exists.") });
        return;
      }
    }
    this.open();
  }

  receive(delta) {
    if (this.caughtUp) {
      this.view.append(delta);
    } else {
      this.replayed += delta;
      if (this.replayed.length < this.checkpoint.length) return;
      if (this.replayed.startsWith(this.checkpoint)) {
        this.view.append(this.replayed.slice(this.checkpoint.length));
      } else {
        this.view.reset();
        this.view.append(this.replayed);
      }
      this.caughtUp = true;
      this.replayed = "";
    }
    if (!this.progress.hidden) this.setProgress("");
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.paint());
  }

  // One frame's work: draw what arrived within a budget; what is left waits for the next
  // frame. Once the stream has ended and all is drawn, the reply is complete.
  paint() {
    this.frame = 0;
    const shown = this.view.render(false, FRAME_BUDGET_MS);
    if (shown && this.ending) this.complete();
    else if (!shown) this.schedule();
    this.hooks.onRender?.(this);
  }

  // The end of a stream (done or error): stop following; the drawing finishes in paint().
  finish(end) {
    if (!this.streaming) return;
    this.streaming = false;
    this.closeSource();
    clearTimeout(this.timer);
    if (!this.caughtUp && this.replayed) {
      this.view.reset();
      this.view.append(this.replayed);
    }
    this.setProgress("");
    this.steps.endRun();
    this.approval.clear();
    this.ending = end;
    this.hooks.onFinish?.(this);
    this.schedule();
  }

  complete() {
    const end = this.ending;
    this.ending = null;
    this.view.render(true);
    this.el.classList.remove("streaming");
    this.el.setAttribute("aria-busy", "false");
    this.message = { ...this.message, ...end, content: this.view.text };
    this.showEnd(end);
    this.hooks.onComplete?.(this);
  }

  showEnd(end) {
    const status = end.status;
    this.el.dataset.status = status;
    this.cachedMark.hidden = !end.cached;
    this.el.classList.toggle("failed", status === "error");
    let text = "";
    if (status === "stopped") text = gettext("Stopped.");
    else if (status === "interrupted") text = gettext("The server stopped before this reply was finished.");
    else if (status === "error") text = end.error || gettext("The model failed.");
    this.note.replaceChildren();
    this.note.hidden = !text;
    if (!text) return;
    const sentence = document.createElement("span");
    sentence.textContent = text;
    this.note.append(sentence);
    if (status === "error" || status === "interrupted") {
      this.note.append(button("retry", gettext("Retry"), gettext("Try this reply again")));
    }
  }

  setProgress(text) {
    this.progress.textContent = text;
    this.progress.hidden = !text;
  }

  closeSource() {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  // Stop following (the page shows another conversation); the reply goes on on the server.
  detach() {
    this.streaming = false;
    this.ending = null;
    this.closeSource();
    clearTimeout(this.timer);
    cancelAnimationFrame(this.frame);
    this.frame = 0;
  }
}
