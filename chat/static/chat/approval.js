// A tool call that waits for the person (issue 31): Approve and Deny in the tool's step.
//
// The stream says `status` {"state": "approval", tool_call_id, name, arguments} while the reply
// waits, and again to a stream that joins meanwhile (a reload), so the question comes back;
// any later status (the tool runs, or the model goes on) or the reply's end takes it away.
import { approveTool } from "./api.js";
import { gettext, interpolate } from "./i18n.js";

function button(className, text) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = className;
  el.textContent = text;
  return el;
}

export class ApprovalPrompt {
  constructor(messageId) {
    this.messageId = messageId;
    this.el = null; // the question on show, if any
    this.callId = null;
  }

  // A status of the reply's stream: the progress label while it asks, else null.
  update(status, stepsEl) {
    if (status.state !== "approval") {
      this.clear();
      return null;
    }
    if (this.callId !== status.tool_call_id) this.ask(status, stepsEl);
    return interpolate(gettext("Waiting for your approval to run %(name)s…"), { name: status.name }, true);
  }

  ask(status, stepsEl) {
    this.clear();
    this.callId = status.tool_call_id;
    const group = document.createElement("div");
    group.className = "approval";
    group.setAttribute("role", "group");
    const question = document.createElement("p");
    question.className = "approval-question";
    question.id = `approval-${this.messageId}-${status.tool_call_id}`.replace(/[^\w-]/g, "_");
    question.textContent = interpolate(
      gettext("Run the tool %(name)s with the arguments above?"),
      { name: status.name },
      true,
    );
    group.setAttribute("aria-labelledby", question.id);
    const approve = button("approve", gettext("Approve"));
    const deny = button("deny", gettext("Deny"));
    const problem = document.createElement("p");
    problem.className = "approval-error";
    problem.setAttribute("role", "alert");
    problem.hidden = true;
    approve.addEventListener("click", () => this.decide(true, [approve, deny], problem));
    deny.addEventListener("click", () => this.decide(false, [approve, deny], problem));
    group.append(question, approve, deny, problem);
    // In the call's own step, opened; a step not shown (yet) gets the question below the steps.
    const step = [...stepsEl.querySelectorAll("details.step.tool")].find((d) => d.dataset.call === status.tool_call_id);
    if (step) {
      step.open = true;
      step.querySelector(".step-body").append(group);
    } else {
      stepsEl.append(group);
      stepsEl.hidden = false;
    }
    this.el = group;
  }

  async decide(approved, buttons, problem) {
    for (const b of buttons) b.disabled = true;
    problem.hidden = true;
    try {
      await approveTool(this.messageId, this.callId, approved);
    } catch (error) {
      problem.textContent = error.message; // the server's sentence
      problem.hidden = false;
      if (error.status !== 409) for (const b of buttons) b.disabled = false; // 409: no longer waits
    }
  }

  clear() {
    this.el?.remove();
    this.el = null;
    this.callId = null;
  }
}
