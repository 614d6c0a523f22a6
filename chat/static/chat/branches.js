// Versions of a message (contract v3, "Branches"): an edit or a regenerate adds a sibling
// instead of replacing, and "‹ 2 / 3 ›" under a message with siblings switches between them.
// The switch is stored by the server (POST .../branch), so a reload shows the same branch;
// chat.js then draws the branch the server answers with.
import * as API from "./api.js";
import { gettext, interpolate } from "./i18n.js";

function navButton(className, text, label, target) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = `version-step ${className}`;
  el.textContent = text;
  el.setAttribute("aria-label", label);
  if (target) el.dataset.target = target;
  else el.disabled = true;
  return el;
}

// The "‹ 2 / 3 ›" of `message`, or null when it has no other version.
export function versionsElement(message) {
  const ids = message.sibling_ids || [];
  const at = ids.indexOf(message.id);
  if (ids.length < 2 || at < 0) return null;
  const nav = document.createElement("div");
  nav.className = "versions";
  nav.setAttribute("role", "group");
  // The group's name says where one is, as the count shows it: "version 2 of 3".
  const what =
    message.role === "user"
      ? gettext("Versions of this message: version %(at)s of %(count)s")
      : gettext("Versions of this reply: version %(at)s of %(count)s");
  nav.setAttribute("aria-label", interpolate(what, { at: at + 1, count: ids.length }, true));
  const count = document.createElement("span");
  count.className = "version-count";
  count.textContent = `${at + 1} / ${ids.length}`;
  nav.append(
    navButton("previous", "‹", gettext("Previous version"), ids[at - 1]),
    count,
    navButton("next", "›", gettext("Next version"), ids[at + 1]),
  );
  return nav;
}

// Puts the versions of `message` on its element (replacing any it had).
export function showVersions(el, message) {
  el.querySelector(":scope > .versions")?.remove();
  const nav = versionsElement(message);
  if (nav) el.append(nav);
}

// The message a version button leads to, or null.
export function versionTarget(target) {
  const button = target.closest(".version-step");
  return button && !button.disabled ? { id: button.dataset.target, next: button.classList.contains("next") } : null;
}

// Makes the branch through `messageId` current; answers the conversation with that branch.
export const switchBranch = (conversationId, messageId) => API.chooseBranch(conversationId, messageId);
