// The admin's transcript (issue 32): each assistant message's Markdown drawn by the page's own
// renderer (markdown.js: marked, then DOMPurify, no innerHTML), so the admin shows a reply as
// its reader saw it, and is exactly as safe. The template prints the text escaped; without
// JavaScript that text stays, as plain text.
import { renderMarkdown } from "./markdown.js";

for (const el of document.querySelectorAll(".chat-transcript [data-markdown]")) {
  el.replaceChildren(renderMarkdown(el.textContent));
  el.classList.add("markdown", "chat-rendered");
}
