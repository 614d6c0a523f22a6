// The list of the visitor's conversations: open, rename, delete.
import { deleteConversation, listConversations, pageUrl, renameConversation } from "./api.js";
import { gettext, interpolate } from "./i18n.js";

export const UNTITLED = gettext("New chat");

const ICONS = {
  rename: "M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4",
  delete: "M5 7h14M10 7V4h4v3M7 7l1 13h8l1-13M10 11v6M14 11v6",
};

function icon(name) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}

function button(className, content, label) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = className;
  if (ICONS[content]) el.append(icon(content));
  else el.textContent = content;
  el.title = label;
  el.setAttribute("aria-label", label);
  return el;
}

export class Sidebar {
  // hooks: {onOpen(id), onDeleted(id), onRenamed(conversation), onError(error)}
  constructor(list, empty, hooks) {
    this.list = list;
    this.empty = empty;
    this.hooks = hooks;
    this.conversations = [];
    this.activeId = null;
    list.addEventListener("click", (event) => this.click(event));
  }

  async refresh() {
    try {
      const { conversations } = await listConversations();
      this.conversations = conversations;
      this.render();
    } catch (error) {
      this.hooks.onError?.(error);
    }
    return this.conversations;
  }

  get(id) {
    return this.conversations.find((c) => c.id === id) || null;
  }

  // A conversation that just had activity goes to the top.
  upsert(conversation) {
    this.conversations = [conversation, ...this.conversations.filter((c) => c.id !== conversation.id)];
    this.render();
  }

  setActive(id) {
    this.activeId = id;
    for (const item of this.list.children) {
      const active = item.dataset.id === id;
      item.classList.toggle("active", active);
      const link = item.querySelector(".conv-link");
      if (link) {
        if (active) link.setAttribute("aria-current", "page");
        else link.removeAttribute("aria-current");
      }
    }
  }

  render() {
    const items = this.conversations.map((c) => this.item(c));
    this.list.replaceChildren(...items);
    this.empty.hidden = items.length > 0;
    this.setActive(this.activeId);
  }

  item(conversation) {
    const item = document.createElement("li");
    item.className = "conv";
    item.dataset.id = conversation.id;
    const link = document.createElement("a");
    link.className = "conv-link";
    link.href = pageUrl(conversation.id);
    link.textContent = conversation.title || UNTITLED;
    link.title = conversation.title || UNTITLED;
    const tools = document.createElement("span");
    tools.className = "conv-tools";
    // Each button names the conversation it acts on (issue 32): a screen reader's list of
    // buttons otherwise reads "Rename, Delete, Rename, Delete..." with nothing to tell them apart.
    const title = conversation.title || UNTITLED;
    tools.append(
      button("rename", "rename", interpolate(gettext("Rename “%s”"), [title])),
      button("delete", "delete", interpolate(gettext("Delete “%s”"), [title])),
    );
    item.append(link, tools);
    return item;
  }

  click(event) {
    const item = event.target.closest("li.conv");
    if (!item) return;
    const id = item.dataset.id;
    const target = event.target;
    if (target.closest(".conv-link")) {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      this.hooks.onOpen(id);
    } else if (target.closest(".rename")) {
      this.startRename(item);
    } else if (target.closest(".delete")) {
      this.confirmDelete(item);
    } else if (target.closest(".confirm-delete")) {
      this.remove(id);
    } else if (target.closest(".cancel-delete")) {
      this.render();
    }
  }

  startRename(item) {
    const conversation = this.get(item.dataset.id);
    const input = document.createElement("input");
    input.type = "text";
    input.className = "rename-input";
    input.maxLength = 200;
    input.value = conversation?.title || "";
    input.setAttribute("aria-label", gettext("New title"));
    let settled = false;
    const finish = async (save) => {
      if (settled) return;
      settled = true;
      const title = input.value.trim();
      if (save && title && title !== conversation?.title) {
        try {
          const renamed = await renameConversation(item.dataset.id, title);
          this.conversations = this.conversations.map((c) => (c.id === renamed.id ? { ...c, ...renamed } : c));
          this.hooks.onRenamed?.(renamed);
        } catch (error) {
          this.hooks.onError?.(error);
        }
      }
      this.render();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        finish(true);
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
    item.replaceChildren(input);
    input.focus();
    input.select();
  }

  confirmDelete(item) {
    const conversation = this.get(item.dataset.id);
    const question = document.createElement("span");
    question.className = "confirm-text";
    const title = conversation?.title || UNTITLED;
    question.textContent = interpolate(gettext("Delete “%(title)s”?"), { title }, true);
    // A button's name holds its visible word (WCAG 2.5.3, axe's label-content-name-mismatch).
    const yes = button("confirm-delete danger", gettext("Delete"), interpolate(gettext("Delete “%s”"), [title]));
    const no = button("cancel-delete", gettext("Cancel"), interpolate(gettext("Cancel, keep “%s”"), [title]));
    item.replaceChildren(question, yes, no);
    item.classList.add("confirming");
    no.focus();
  }

  async remove(id) {
    try {
      await deleteConversation(id);
    } catch (error) {
      if (error.status !== 404) {
        this.hooks.onError?.(error);
        this.render();
        return;
      }
    }
    this.conversations = this.conversations.filter((c) => c.id !== id);
    this.render();
    this.hooks.onDeleted?.(id);
  }
}
