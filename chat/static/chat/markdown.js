// Model output to safe DOM: Markdown (marked), then the sanitizer (DOMPurify), then code
// highlighting (highlight.js, whose output is sanitized as well). Nothing here assigns
// innerHTML: sanitized markup arrives as a DocumentFragment.
//
// A streamed reply is rendered incrementally so that the total work grows with its length,
// not its square: the blocks that are complete (a later block has begun) are rendered once,
// highlighted, and never touched again; only the last, still growing block is parsed and
// rendered again, at most once per animation frame, and each frame does a bounded amount.
import { Marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.mjs";
import hljs from "./vendor/highlight.min.js";
import { settleOpenMarkdown } from "./partial.js";
import { gettext, interpolate } from "./i18n.js";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);

const marked = new Marked({
  gfm: true,
  renderer: {
    // Raw HTML in a reply is shown as the text it is: a model that writes <b> or <script>
    // outside a code block is talking about HTML, and must not be able to inject any.
    html({ text, block }) {
      return block ? `<p class="raw-html">${escapeHtml(text)}</p>` : escapeHtml(text);
    },
    // Images become links: a reply must not make the browser fetch a URL on its own, since a
    // reply steered by a prompt injection could carry the conversation away in that URL.
    image({ href, text }) {
      return `<a href="${escapeHtml(href)}">${escapeHtml(text || href)}</a>`;
    },
  },
});

const PURIFY = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "form", "button", "textarea", "select", "img", "video", "audio", "picture", "source"],
  FORBID_ATTR: ["style"],
  RETURN_DOM_FRAGMENT: true,
};
const PURIFY_HIGHLIGHT = { ALLOWED_TAGS: ["span"], ALLOWED_ATTR: ["class"], RETURN_DOM_FRAGMENT: true };

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

const SLICE = 2000; // characters parsed at a time when much text waits to be drawn
const AUTO_HIGHLIGHT_LIMIT = 2000; // guessing the language of a long unlabeled block is slow

function highlight(code, language) {
  const text = code.textContent;
  let result = null;
  if (language && hljs.getLanguage(language)) {
    result = hljs.highlight(text, { language, ignoreIllegals: true });
  } else if (!language && text.length <= AUTO_HIGHLIGHT_LIMIT) {
    result = hljs.highlightAuto(text);
  }
  if (result) {
    code.replaceChildren(DOMPurify.sanitize(result.value, PURIFY_HIGHLIGHT));
    code.classList.add("hljs");
  }
}

// A code block gets a header with its language and a copy button (chat.js handles clicks).
function decorateCode(code, final) {
  const pre = code.parentElement;
  const language = (code.className.match(/(?:^|\s)language-([\w+#.-]+)/) || [])[1] || "";
  if (final) highlight(code, language.toLowerCase());
  const box = document.createElement("div");
  box.className = "code-block";
  const head = document.createElement("div");
  head.className = "code-head";
  const label = document.createElement("span");
  label.className = "code-lang";
  label.textContent = language || gettext("text");
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy-code";
  copy.textContent = gettext("Copy");
  copy.setAttribute(
    "aria-label",
    language ? interpolate(gettext("Copy the %(language)s block"), { language }, true) : gettext("Copy the code block"),
  );
  head.append(label, copy);
  pre.tabIndex = 0; // a long line scrolls sideways: from the keyboard too (issue 32)
  pre.replaceWith(box);
  box.append(head, pre);
}

function fragmentOf(tokens, links, final) {
  tokens.links = links;
  const fragment = DOMPurify.sanitize(marked.parser(tokens), PURIFY);
  for (const code of fragment.querySelectorAll("pre > code")) decorateCode(code, final);
  return fragment;
}

// highlight.js compiles a language's grammar on first use, and the JIT warms up on the first
// parse: do both while the page is idle, a little at a time, not in a reply's first frame.
export function warmUp(languages = ["python", "bash", "javascript", "json", "xml", "css", "typescript", "sql"]) {
  const idle = window.requestIdleCallback || ((fn) => setTimeout(fn, 50));
  const steps = [() => renderMarkdown("# A\n\nSome **bold** and `code`.\n\n- one\n- two\n"), ...languages.map(
    (language) => () => hljs.highlight("x = 1", { language, ignoreIllegals: true }),
  )];
  const next = () => {
    const step = steps.shift();
    if (!step) return;
    step();
    idle(next);
  };
  idle(next);
}

// Markdown to a fragment in one go (finished messages, tests).
export function renderMarkdown(text) {
  const tokens = marked.lexer(text);
  return fragmentOf(tokens, tokens.links, true);
}

export class MarkdownView {
  constructor(root) {
    this.root = root;
    this.reset();
  }

  reset() {
    this.text = ""; // the reply so far, line ends normalized as marked does
    this.pendingCR = false;
    this.committed = 0; // characters of `text` whose blocks are final in the DOM
    this.links = Object.create(null);
    this.rendered = null; // the text of the live block as last rendered
    this.live = document.createElement("div");
    this.live.className = "md-live";
    this.root.replaceChildren(this.live);
  }

  get length() {
    return this.text.length;
  }

  append(delta) {
    if (!this.pendingCR && !delta.includes("\r")) {
      this.text += delta;
      return;
    }
    // "\r\n" may arrive split across two deltas: hold a trailing "\r" until the next one.
    let s = (this.pendingCR ? "\r" : "") + delta;
    this.pendingCR = s.endsWith("\r");
    if (this.pendingCR) s = s.slice(0, -1);
    this.text += s.replace(/\r\n?/g, "\n");
  }

  // Show the text received so far, within about `budgetMs` of work, and say whether all of
  // it is shown. Text arriving faster than it can be drawn (a fast server, a replay) is
  // drawn over several frames in slices, so that no frame is long; `final` draws the last
  // block as complete (highlighted) once everything is shown.
  render(final = false, budgetMs = Infinity) {
    if (final && this.pendingCR) this.append("\n");
    const started = performance.now();
    let size = SLICE;
    for (;;) {
      const end = Math.min(this.text.length, this.committed + size);
      const whole = end === this.text.length;
      const tail = this.text.slice(this.committed, end);
      if (whole && !final && tail === this.rendered) return true;
      const tokens = marked.lexer(tail);
      Object.assign(this.links, tokens.links);
      // Every block but the last non-blank one is complete: a later block has begun after it.
      let keep = tokens.length;
      if (!(final && whole)) {
        keep = tokens.length - 1;
        while (keep > 0 && tokens[keep].type === "space") keep--;
      }
      // Commit the complete blocks whose source is exactly the start of `tail`.
      let done = 0;
      let offset = 0;
      while (done < keep && tail.startsWith(tokens[done].raw, offset)) offset += tokens[done++].raw.length;
      if (done > 0) {
        this.live.before(fragmentOf(tokens.slice(0, done), this.links, true));
        this.committed += offset;
      }
      if (whole || performance.now() - started > budgetMs) {
        if (final && whole) {
          this.rendered = null;
          this.live.replaceChildren(fragmentOf(tokens.slice(done), this.links, true));
        } else {
          this.rendered = this.text.slice(this.committed, end);
          this.live.replaceChildren(fragmentOf(this.draft(this.rendered, tokens.slice(done)), this.links, false));
        }
        return whole;
      }
      // A block longer than the slice: look further, else go on with the next slice.
      size = done > 0 ? SLICE : size * 2;
    }
  }

  // The live block as drawn: open spans closed, trailing markers held back (partial.js).
  draft(text, tokens) {
    const settled = settleOpenMarkdown(text);
    if (settled === text) return tokens;
    const drafted = marked.lexer(settled);
    Object.assign(this.links, drafted.links);
    return drafted;
  }
}
