// A reply's reasoning and tool steps (issue 12), folded above its answer: "Thought for 4
// seconds", "Used current_time". Built from the stream's `reasoning`, `tool_call` and
// `tool_result` events as they come, or from a stored message's `steps`.
import { gettext, interpolate, ngettext } from "./i18n.js";

// "Thought for 4 seconds", in the reader's language (the count decides the plural's form).
function thoughtFor(ms) {
  const s = Math.max(1, Math.round(ms / 1000));
  return interpolate(ngettext("Thought for %(count)s second", "Thought for %(count)s seconds", s), { count: s }, true);
}

function pretty(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function fold(className, summaryText) {
  const details = document.createElement("details");
  details.className = `step ${className}`;
  const summary = document.createElement("summary");
  summary.textContent = summaryText;
  const body = document.createElement("div");
  body.className = "step-body";
  details.append(summary, body);
  return details;
}

function block(label, value) {
  const wrap = document.createElement("div");
  const title = document.createElement("div");
  title.className = "step-label";
  title.textContent = label;
  const pre = document.createElement("pre");
  pre.textContent = pretty(value);
  wrap.append(title, pre);
  return wrap;
}

export class StepsView {
  constructor() {
    this.el = document.createElement("div");
    this.el.className = "steps";
    this.reset();
  }

  reset() {
    this.el.replaceChildren();
    this.el.hidden = true;
    this.run = null; // the reasoning being streamed: {details, body, started}
    this.calls = new Map(); // call id -> details
  }

  // The stream: a reasoning delta.
  reasoning(text) {
    if (!this.run) {
      const details = fold("reasoning", gettext("Thinking…"));
      this.el.append(details);
      this.el.hidden = false;
      this.run = { details, body: details.querySelector(".step-body"), started: performance.now() };
    }
    this.run.body.append(text);
  }

  // Anything but reasoning came: the reasoning run is over.
  endRun() {
    if (!this.run) return;
    const { details, started } = this.run;
    details.querySelector("summary").textContent = thoughtFor(performance.now() - started);
    this.run = null;
  }

  toolCall(call) {
    this.endRun();
    const details = fold("tool", interpolate(gettext("Using %(name)s…"), { name: call.name }, true));
    details.dataset.call = call.id;
    details.querySelector(".step-body").append(block(gettext("Arguments"), call.arguments));
    this.calls.set(call.id, details);
    this.el.append(details);
    this.el.hidden = false;
  }

  toolResult(result) {
    let details = this.calls.get(result.id);
    if (!details) {
      this.toolCall({ id: result.id, name: result.name, arguments: {} });
      details = this.calls.get(result.id);
    }
    this.calls.delete(result.id);
    const failed = result.error !== null && result.error !== undefined;
    details.classList.toggle("failed", failed);
    const timed = result.duration_ms !== null && result.duration_ms !== undefined;
    const summary = failed
      ? timed
        ? gettext("%(name)s failed (%(ms)s ms)")
        : gettext("%(name)s failed")
      : timed
        ? gettext("Used %(name)s (%(ms)s ms)")
        : gettext("Used %(name)s");
    details.querySelector("summary").textContent = interpolate(summary, { name: result.name, ms: result.duration_ms }, true);
    details.querySelector(".step-body").append(
      failed ? block(gettext("Error"), result.error) : block(gettext("Result"), result.result),
    );
  }

  // A stored message's steps.
  show(steps) {
    this.reset();
    for (const step of steps || []) {
      if (step.type === "reasoning") {
        const details = fold("reasoning", thoughtFor(step.duration_ms || 0));
        details.querySelector(".step-body").append(step.text);
        this.el.append(details);
      } else if (step.type === "tool") {
        this.toolCall(step);
        if (step.duration_ms !== null) this.toolResult(step);
      }
    }
    this.el.hidden = this.el.childElementCount === 0;
  }
}
