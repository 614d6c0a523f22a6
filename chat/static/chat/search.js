// The search box over the conversation list (contract v3, "Search"): matches with snippets.
import { pageUrl, searchConversations } from "./api.js";
import { UNTITLED } from "./sidebar.js";
import { gettext } from "./i18n.js";

const DEBOUNCE_MS = 200;
const WORD = /[\p{L}\p{N}]+/gu;

// Case and accents aside, as the server searches: "CAFÉ" and "cafe" fold alike.
const fold = (text) => text.normalize("NFD").replace(/\p{M}/gu, "").toLowerCase();

// `text` folded, and for each folded position the index in `text` it came from.
function folded(text) {
  let out = "";
  const index = [];
  for (let i = 0; i < text.length; ) {
    const char = String.fromCodePoint(text.codePointAt(i));
    const f = fold(char);
    out += f;
    for (let k = 0; k < f.length; k++) index.push(i);
    i += char.length;
  }
  index.push(text.length);
  return [out, index];
}

const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

// The snippet as nodes: plain text, the searched words in <mark>s (built, never parsed).
export function highlighted(text, query) {
  const words = [...new Set((fold(query).match(WORD) || []))];
  const [flat, index] = folded(text);
  const ranges = [];
  for (const word of words) {
    const pattern = new RegExp(`(?<![\\p{L}\\p{N}])${escapeRegExp(word)}(?![\\p{L}\\p{N}])`, "gu");
    for (const match of flat.matchAll(pattern)) {
      ranges.push([index[match.index], index[match.index + match[0].length]]);
    }
  }
  ranges.sort((a, b) => a[0] - b[0]);
  const nodes = [];
  let at = 0;
  for (const [start, end] of ranges) {
    if (start < at) continue; // overlaps the one before
    if (start > at) nodes.push(document.createTextNode(text.slice(at, start)));
    const mark = document.createElement("mark");
    mark.textContent = text.slice(start, end);
    nodes.push(mark);
    at = end;
  }
  if (at < text.length) nodes.push(document.createTextNode(text.slice(at)));
  return nodes;
}

export class Search {
  // box: the <input type=search>; results: a <ul>; status: a <p> for "no match" and errors;
  // nav: what gets the `searching` class (it hides the plain list); hooks: {onOpen(id)}.
  constructor({ box, results, status, nav, hooks }) {
    Object.assign(this, { box, results, status, nav, hooks });
    this.timer = 0;
    this.ticket = 0;
    box.addEventListener("input", () => this.schedule());
    box.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && box.value) {
        event.preventDefault();
        event.stopPropagation();
        box.value = "";
        this.clear();
      } else if (event.key === "Enter") {
        event.preventDefault();
        this.run();
      }
    });
    results.addEventListener("click", (event) => this.click(event));
  }

  schedule() {
    clearTimeout(this.timer);
    if (!this.box.value.trim()) {
      this.clear();
      return;
    }
    this.timer = setTimeout(() => this.run(), DEBOUNCE_MS);
  }

  // Back to the plain list.
  clear() {
    clearTimeout(this.timer);
    this.ticket += 1; // an answer still on its way is dropped
    this.nav.classList.remove("searching");
    this.results.replaceChildren();
    this.results.hidden = true;
    this.status.textContent = "";
  }

  async run() {
    clearTimeout(this.timer);
    const query = this.box.value.trim();
    if (!query) return this.clear();
    const ticket = ++this.ticket;
    this.nav.classList.add("searching");
    let found;
    try {
      ({ conversations: found } = await searchConversations(query));
    } catch (error) {
      if (ticket !== this.ticket) return;
      this.show([], query, error.message);
      return;
    }
    if (ticket === this.ticket) this.show(found, query);
  }

  show(found, query, error = null) {
    this.results.replaceChildren(...found.map((hit) => this.item(hit, query)));
    this.results.hidden = found.length === 0;
    // A live region that stays in the page (one unhidden as it changes may go unannounced).
    this.status.textContent = error || (found.length ? "" : gettext("No conversation matches."));
  }

  item(hit, query) {
    const item = document.createElement("li");
    item.className = "conv search-hit";
    item.dataset.id = hit.id;
    const link = document.createElement("a");
    link.className = "conv-link";
    link.href = pageUrl(hit.id);
    const title = document.createElement("span");
    title.className = "search-title";
    if (hit.match_message_id) title.textContent = hit.title || UNTITLED;
    else title.append(...highlighted(hit.title || UNTITLED, query));
    link.append(title);
    if (hit.match_message_id) {
      const snippet = document.createElement("span");
      snippet.className = "snippet";
      snippet.append(...highlighted(hit.snippet, query));
      link.append(snippet);
    }
    item.append(link);
    return item;
  }

  click(event) {
    const item = event.target.closest("li.search-hit");
    if (!item || !event.target.closest(".conv-link")) return;
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    this.hooks.onOpen(item.dataset.id);
  }
}
