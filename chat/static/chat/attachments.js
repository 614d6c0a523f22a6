// Files and images (contract v3, "Files and images"). In the composer: the attach button,
// drag and drop onto the page, and pasted screenshots; each file uploads at once (POST
// /api/attachments) and shows as a chip (a thumbnail, or its name and size) until it is sent.
// A file the server refuses keeps its chip with the server's sentence and is never sent.
// In the log: the attachments of a user message, images as thumbnails, other files as links.
// Names are the person's own text: only ever set with textContent or as attributes.
import { attachmentUrl, uploadAttachment } from "./api.js";
import { gettext, interpolate, ngettext } from "./i18n.js";

// A hint for the file picker only: the server judges each file by its content.
export const ACCEPT = [
  "image/png",
  "image/jpeg",
  "image/gif",
  "image/webp",
  ".pdf",
  ".txt",
  ".md",
  ".csv",
  ".json",
  ".py",
  ".js",
  ".ts",
  ".html",
  ".css",
  ".c",
  ".h",
  ".cpp",
  ".java",
  ".go",
  ".rs",
  ".rb",
  ".php",
  ".sh",
  ".sql",
  ".yaml",
  ".yml",
  ".toml",
  ".xml",
].join(",");

const SVG = "http://www.w3.org/2000/svg";
// Feather's file (MIT; its paperclip is the attach button's, in index.html).
const FILE = "M13 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V9zM13 2v7h7";

function icon(d) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", d);
  svg.append(path);
  return svg;
}

// A size as a person reads it: "512 B", "12 KB", "3.4 MB".
export function formatSize(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return "";
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  // 1.5 MB, 1,5 MB: the decimal sign of the page's language (<html lang>).
  const lang = globalThis.document?.documentElement.lang || "en";
  const digits = { maximumFractionDigits: value < 10 ? 1 : 0, useGrouping: false };
  return `${new Intl.NumberFormat(lang, digits).format(value)} ${units[unit]}`;
}

const THUMB_WIDTH = 256; // a thumbnail's largest box in the log, in CSS pixels
const THUMB_HEIGHT = 192;
const isImage = (type) => /^image\//i.test(type || "");

// Only the server's own http(s) URLs go into href and src; anything else: the file's API URL.
function safeUrl(attachment) {
  if (attachment.url) {
    try {
      const url = new URL(attachment.url, location.href);
      if (url.protocol === "http:" || url.protocol === "https:") return url.href;
    } catch {
      // not a URL: fall through
    }
  }
  return attachmentUrl(attachment.id);
}

function span(className, text) {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}

// The attachments of a message in the log (null when it has none): an image is a thumbnail
// that opens the full image in a new tab; another file is a download link with its name and size.
export function attachmentsElement(attachments) {
  if (!attachments?.length) return null;
  const list = document.createElement("ul");
  list.className = "msg-attachments";
  list.setAttribute("aria-label", ngettext("Attached file", "Attached files", attachments.length));
  for (const attachment of attachments) {
    const url = safeUrl(attachment);
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = url;
    if (isImage(attachment.content_type)) {
      link.target = "_blank";
      link.rel = "noopener";
      item.className = "msg-attachment image";
      const img = document.createElement("img");
      img.src = url;
      img.alt = attachment.name || "";
      img.loading = "lazy";
      img.decoding = "async";
      const { width, height } = attachment;
      if (width > 0 && height > 0) {
        // Its box before it loads, so that the log does not jump (and stays at its end).
        const scale = Math.min(1, THUMB_WIDTH / width, THUMB_HEIGHT / height);
        img.width = Math.max(1, Math.round(width * scale));
        img.height = Math.max(1, Math.round(height * scale));
      }
      link.title = interpolate(gettext("%(name)s (opens in a new tab)"), { name: attachment.name }, true);
      link.append(img);
    } else {
      item.className = "msg-attachment file";
      link.download = attachment.name || ""; // the server sends other files as downloads
      link.title = interpolate(gettext("Download %(name)s"), { name: attachment.name }, true);
      link.append(icon(FILE), span("file-name", attachment.name || ""), span("file-size", formatSize(attachment.size)));
    }
    item.append(link);
    list.append(item);
  }
  return list;
}

// The server's object of an uploaded file, as a message carries it.
const described = (item) => ({
  id: item.id,
  name: item.name,
  content_type: item.contentType,
  size: item.size,
  url: item.url || attachmentUrl(item.id),
  width: item.width ?? null,
  height: item.height ?? null,
});

// The composer's files. `hooks`: {announce(text), onChange()} (an upload started or ended).
export class Attachments {
  constructor({ form, prompt, dropArea }, hooks = {}) {
    this.hooks = hooks;
    this.form = form;
    this.prompt = prompt;
    this.items = [];
    this.button = form.querySelector("#attach");
    this.input = form.querySelector("#attach-input");
    this.list = form.querySelector("#attachment-chips");
    this.dropZone = dropArea.querySelector("#drop-zone");
    // The server's limit, told by the page: a larger file is refused here without sending it.
    this.maxBytes = Number(form.dataset.maxAttachmentBytes) || 0;
    this.input.accept = ACCEPT;
    this.button.addEventListener("click", () => this.input.click());
    this.input.addEventListener("change", () => {
      this.add([...this.input.files]);
      this.input.value = ""; // the same file may be chosen again
    });
    prompt.addEventListener("paste", (event) => this.paste(event));
    this.listenForDrops(dropArea);
  }

  // A screenshot (or an image copied from a page) pasted into the message: attached. A paste
  // that also has text is text: pasting from a word processor must not attach its images.
  paste(event) {
    const data = event.clipboardData;
    if (!data || [...data.types].includes("text/plain")) return;
    const images = [...data.files].filter((file) => isImage(file.type));
    if (!images.length) return;
    event.preventDefault();
    this.add(images);
  }

  // Files dragged over the log or the composer: a visible drop target, announced; dropped
  // elsewhere on the page they are ignored, never opened in place of the page.
  listenForDrops(area) {
    const carriesFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
    let depth = 0;
    const show = (on) => {
      if (this.dropZone.hidden === !on) return;
      this.dropZone.hidden = !on;
      area.classList.toggle("dropping", on);
      if (on) this.hooks.announce?.(gettext("Drop the files to attach them to your message."));
    };
    area.addEventListener("dragenter", (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      depth += 1;
      show(true);
    });
    area.addEventListener("dragover", (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      show(true);
    });
    area.addEventListener("dragleave", (event) => {
      if (!carriesFiles(event)) return;
      depth = Math.max(0, depth - 1);
      if (!depth) show(false);
    });
    area.addEventListener("drop", (event) => {
      if (!carriesFiles(event) && !event.dataTransfer?.files?.length) return;
      event.preventDefault();
      depth = 0;
      show(false);
      this.add([...event.dataTransfer.files]);
      this.prompt.focus();
    });
    for (const type of ["dragover", "drop"]) {
      document.addEventListener(type, (event) => {
        if (carriesFiles(event) && !area.contains(event.target)) event.preventDefault();
      });
    }
  }

  // Files in the composer that will be sent: uploaded, or still uploading.
  get count() {
    return this.items.filter((item) => item.state !== "failed").length;
  }

  get uploading() {
    return this.items.some((item) => item.state === "uploading");
  }

  // Resolves when no upload is in flight (files added meanwhile too); true when none of those
  // was refused (one removed meanwhile is no refusal).
  async settled() {
    let ok = true;
    for (let waiting; (waiting = this.items.filter((item) => item.state === "uploading")).length; ) {
      await Promise.allSettled(waiting.map((item) => item.upload));
      ok &&= waiting.every((item) => item.state === "ready" || !this.items.includes(item));
    }
    return ok;
  }

  // The uploaded files, to send: the composer's chips clear (a refused file's too).
  take() {
    const ready = this.items.filter((item) => item.state === "ready").map(described);
    for (const item of [...this.items]) this.drop(item);
    return ready;
  }

  // Files already uploaded back in the composer (a send that failed, to be sent again).
  restore(attachments) {
    for (const attachment of attachments || []) {
      const item = this.item({
        name: attachment.name,
        size: attachment.size,
        contentType: attachment.content_type,
        state: "ready",
      });
      Object.assign(item, { id: attachment.id, width: attachment.width, height: attachment.height });
      item.url = attachment.url || attachmentUrl(attachment.id);
      this.render(item);
    }
  }

  add(files) {
    for (const file of files) {
      const item = this.item({
        name: file.name || "pasted image.png",
        size: file.size,
        contentType: file.type,
        state: "uploading",
      });
      if (this.maxBytes && file.size > this.maxBytes) {
        item.state = "failed";
        item.error = interpolate(
          gettext("The file is too large (%(size)s): the limit is %(limit)s."),
          { size: formatSize(file.size), limit: formatSize(this.maxBytes) },
          true,
        );
        this.render(item);
        continue;
      }
      if (isImage(file.type)) item.preview = URL.createObjectURL(file);
      item.controller = new AbortController();
      item.upload = this.send(item, file);
      this.render(item);
    }
    if (files.length === 1) this.hooks.announce?.(interpolate(gettext("Uploading %(name)s…"), { name: files[0].name }, true));
    else if (files.length) {
      const many = ngettext("Uploading %(count)s file…", "Uploading %(count)s files…", files.length);
      this.hooks.announce?.(interpolate(many, { count: files.length }, true));
    }
    this.changed();
  }

  item(fields) {
    const item = { id: null, url: null, preview: null, progress: 0, error: "", ...fields };
    item.el = document.createElement("li");
    this.items.push(item);
    this.list.append(item.el);
    this.list.hidden = false;
    return item;
  }

  async send(item, file) {
    try {
      const data = await uploadAttachment(file, {
        signal: item.controller.signal,
        onProgress: (fraction) => {
          item.progress = fraction;
          this.renderStatus(item);
        },
      });
      if (!this.items.includes(item)) return;
      Object.assign(item, {
        state: "ready",
        id: data.id,
        name: data.name || item.name,
        size: data.size ?? item.size,
        contentType: data.content_type || item.contentType,
        url: data.url || attachmentUrl(data.id),
        width: data.width,
        height: data.height,
      });
      this.hooks.announce?.(interpolate(gettext("%(name)s is attached."), { name: item.name }, true));
    } catch (error) {
      if (!this.items.includes(item)) return; // removed while uploading
      item.state = "failed";
      item.error = error?.message || String(error);
    }
    this.render(item);
    this.changed();
  }

  // One chip: thumbnail or file icon, name, size or progress or the refusal, and Remove.
  render(item) {
    const el = item.el;
    el.className = `chip ${item.state}`;
    el.setAttribute("aria-busy", String(item.state === "uploading"));
    const image = isImage(item.contentType) && item.state !== "failed";
    let figure;
    if (image && (item.url || item.preview)) {
      figure = document.createElement("img");
      figure.className = "chip-thumb";
      figure.alt = "";
      if (item.url && item.preview) {
        // The server's copy replaces the local one; the local one is freed once it shows.
        const local = item.preview;
        const free = () => URL.revokeObjectURL(local);
        figure.addEventListener("load", free, { once: true });
        figure.addEventListener("error", free, { once: true });
        item.preview = null;
        figure.src = item.url;
      } else {
        figure.src = item.url || item.preview;
      }
    } else {
      figure = icon(FILE);
      figure.classList.add("chip-icon");
    }
    const text = document.createElement("span");
    text.className = "chip-text";
    item.status = span("chip-status", "");
    text.append(span("chip-name", item.name), item.status);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "chip-remove";
    remove.textContent = "×";
    const removeLabel = interpolate(gettext("Remove %(name)s"), { name: item.name }, true);
    remove.setAttribute("aria-label", removeLabel);
    remove.title = removeLabel;
    remove.addEventListener("click", () => this.remove(item));
    el.replaceChildren(figure, text, remove);
    if (item.state === "failed") {
      const alert = span("chip-error", item.error);
      alert.setAttribute("role", "alert");
      el.append(alert);
    }
    this.renderStatus(item);
  }

  renderStatus(item) {
    if (!item.status) return;
    if (item.state === "uploading") {
      const percent = Math.round(item.progress * 100);
      item.status.textContent = percent
        ? interpolate(gettext("Uploading… %(progress)s"), { progress: `${percent}%` }, true)
        : gettext("Uploading…");
      item.el.style.setProperty("--progress", `${percent}%`);
      return;
    }
    item.el.style.removeProperty("--progress");
    item.status.textContent = item.state === "failed" ? gettext("Not attached") : formatSize(item.size);
  }

  // The person's Remove: an upload in flight stops; the focus goes to the next chip, or back
  // to the message.
  remove(item) {
    const at = this.items.indexOf(item);
    this.drop(item);
    const next = this.items[Math.min(at, this.items.length - 1)];
    (next?.el.querySelector(".chip-remove") || this.prompt).focus();
    this.hooks.announce?.(interpolate(gettext("%(name)s removed."), { name: item.name }, true));
    this.changed();
  }

  drop(item) {
    if (item.state === "uploading") item.controller.abort();
    if (item.preview) URL.revokeObjectURL(item.preview);
    item.preview = null;
    item.el.remove();
    this.items = this.items.filter((other) => other !== item);
    this.list.hidden = this.items.length === 0;
  }

  changed() {
    this.form.classList.toggle("uploading", this.uploading);
    this.hooks.onChange?.();
  }
}
