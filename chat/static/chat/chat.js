// The chat page: one conversation in the log, the list of conversations in the sidebar.
// User text is only ever set with textContent; model output goes through markdown.js
// (marked, then DOMPurify). Modules, no build step: see docs/API.md for what it speaks.
import * as API from "./api.js";
import { Attachments, attachmentsElement } from "./attachments.js";
import { Feedback } from "./feedback.js";
import { showVersions, switchBranch, versionTarget } from "./branches.js";
import { warmUp } from "./markdown.js";
import { Reply } from "./reply.js";
import { ShareDialog } from "./share.js";
import { Search } from "./search.js";
import { Sidebar, UNTITLED } from "./sidebar.js";
import { gettext, interpolate } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const app = document.querySelector(".app");
const log = $("log");
const welcome = $("welcome");
const form = $("composer");
const prompt = $("prompt");
const sendButton = $("send");
const stopButton = $("stop");
const notice = $("notice");
const editing = $("editing");
const announcer = $("announcer");
const titleEl = $("title");
const modelSelect = $("model");

const models = JSON.parse($("chat-models").textContent);
const defaultModel = app.dataset.defaultModel;

const state = {
  conversation: null, // {id, title, model, ...} of the open conversation
  replies: new Map(), // id -> Reply shown in the log
  editing: null, // the id of the user message being edited
  loading: 0, // bumped on every navigation, so that late answers for another page are dropped
};

// --- small helpers -------------------------------------------------------------------------

function announce(text) {
  announcer.textContent = "";
  requestAnimationFrame(() => {
    announcer.textContent = text;
  });
}

function setTitle(title) {
  titleEl.textContent = title || UNTITLED;
  document.title = title ? interpolate(gettext("%(title)s · Chat"), { title }, true) : gettext("Chat");
}

// Follow the end of the log while the reader is there; leave them be when they scroll up.
let stickToBottom = true;
log.addEventListener("scroll", () => {
  stickToBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
});
function keepAtBottom(force = false) {
  if (force || stickToBottom) log.scrollTop = log.scrollHeight;
}

let noticeTimer = 0;
// A wait as a person reads it: "45 s", "3 min 20 s", "12 h 38 min" (a quota may last a day).
function countdown(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h) return interpolate(gettext("%(h)s h %(m)s min"), { h, m }, true);
  return m ? interpolate(gettext("%(m)s min %(s)s s"), { m, s }, true) : interpolate(gettext("%(s)s s"), { s }, true);
}
// A failure the person can act on: the sentence, and a retry when one makes sense. A 429
// says when to try again and keeps the retry button disabled until then.
function showNotice(error, retry) {
  clearInterval(noticeTimer);
  notice.replaceChildren();
  const text = document.createElement("span");
  text.className = "notice-text";
  notice.append(text);
  let retryButton = null;
  if (retry) {
    retryButton = document.createElement("button");
    retryButton.type = "button";
    retryButton.className = "retry";
    retryButton.textContent = gettext("Retry");
    retryButton.addEventListener("click", () => {
      hideNotice();
      retry();
    });
    notice.append(retryButton);
  }
  const sentence = error?.message || String(error);
  if (error?.status === 429) {
    let left = error.retryAfter ?? 10;
    const tick = () => {
      const later =
        left > 0
          ? interpolate(gettext("You can try again in %(wait)s."), { wait: countdown(left) }, true)
          : gettext("You can try again now.");
      text.textContent = `${sentence} ${later}`;
      if (retryButton) retryButton.disabled = left > 0;
      if (left <= 0) clearInterval(noticeTimer);
      left -= 1;
    };
    tick();
    noticeTimer = setInterval(tick, 1000);
  } else {
    text.textContent = sentence;
  }
  notice.hidden = false;
}

function hideNotice() {
  clearInterval(noticeTimer);
  notice.hidden = true;
  notice.replaceChildren();
}

// --- the log ---------------------------------------------------------------------------------

function userElement(message) {
  const el = document.createElement("article");
  el.className = "msg user";
  if (message.id) el.dataset.id = message.id;
  el.setAttribute("aria-label", gettext("You"));
  const text = document.createElement("div");
  text.className = "text";
  text.textContent = message.content;
  text.hidden = !message.content; // a picture with no words
  const actions = document.createElement("div");
  actions.className = "actions";
  const edit = document.createElement("button");
  edit.type = "button";
  edit.className = "edit";
  edit.textContent = gettext("Edit");
  edit.setAttribute("aria-label", gettext("Edit this message"));
  actions.append(edit);
  el.append(text, actions);
  const files = attachmentsElement(message.attachments); // attachments.js
  if (files) el.prepend(files);
  if (message.id) showVersions(el, message);
  return el;
}

function addReply(message) {
  const reply = new Reply(message, {
    onRender: () => keepAtBottom(),
    onFinish: () => refreshControls(),
    onComplete: (r) => replyFinished(r),
    lookup: (r) => lookupMessage(r.id),
  });
  reply.feedback = new Feedback(reply, { onError: (error) => showNotice(error) }); // feedback.js
  state.replies.set(message.id, reply);
  showVersions(reply.el, message);
  log.append(reply.el);
  return reply;
}

// Before a stream reconnects: is the reply still there? One message, not its conversation
// (which may hold thousands). A 404 means gone (reply.js).
async function lookupMessage(id) {
  return API.getMessage(id);
}

function streamingReply() {
  for (const reply of state.replies.values()) if (reply.streaming) return reply;
  return null;
}

// Marks the last message of each kind (only those can be edited or answered again) and
// switches Send and Stop.
function refreshControls() {
  const messages = [...log.querySelectorAll(".msg")];
  for (const el of messages) el.classList.remove("is-last");
  messages.filter((el) => el.classList.contains("user")).at(-1)?.classList.add("is-last");
  messages.filter((el) => el.classList.contains("assistant")).at(-1)?.classList.add("is-last");
  const busy = streamingReply() !== null;
  app.classList.toggle("busy", busy);
  stopButton.hidden = !busy;
  sendButton.hidden = busy;
  welcome.hidden = messages.length > 0;
}

function replyFinished(reply) {
  refreshControls();
  const status = reply.message.status;
  announce(
    status === "error"
      ? interpolate(gettext("The reply failed: %(error)s"), { error: reply.message.error || "" }, true)
      : status === "stopped"
        ? gettext("Reply stopped.")
        : gettext("Reply finished."),
  );
  refreshTitle();
}

function clearLog() {
  for (const reply of state.replies.values()) reply.detach();
  state.replies.clear();
  for (const el of log.querySelectorAll(".msg")) el.remove();
  cancelEdit();
  hideNotice();
}

// --- conversations -------------------------------------------------------------------------

const sidebar = new Sidebar($("conversations"), $("no-conversations"), {
  onOpen: (id) => openConversation(id, { push: true }),
  onDeleted: (id) => {
    if (state.conversation?.id === id) newChat({ push: true });
  },
  onRenamed: (conversation) => {
    if (state.conversation?.id === conversation.id) {
      state.conversation.title = conversation.title;
      setTitle(conversation.title);
    }
  },
  onError: (error) => showNotice(error),
});

new Search({
  box: $("search-box"),
  results: $("search-results"),
  status: $("search-status"),
  nav: $("conversation-nav"),
  hooks: { onOpen: (id) => openConversation(id, { push: true }) },
});

// The title may be improved by the model in the background: look again a little later.
let titleTimer = 0;
async function refreshTitle(again = true) {
  await sidebar.refresh();
  const current = state.conversation && sidebar.get(state.conversation.id);
  if (current) {
    state.conversation.title = current.title;
    setTitle(current.title);
  }
  clearTimeout(titleTimer);
  if (again && current && log.querySelectorAll(".msg.user").length === 1) {
    titleTimer = setTimeout(() => refreshTitle(false), 3000);
  }
}

const shareDialog = new ShareDialog(); // the header's Share button (share.js)

function setConversation(conversation) {
  state.conversation = conversation;
  shareDialog.setConversation(conversation);
  setTitle(conversation?.title);
  sidebar.setActive(conversation?.id || null);
  const offered = models.some((m) => m.id === conversation?.model);
  modelSelect.value = offered ? conversation.model : defaultModel;
}

function newChat({ push }) {
  state.loading += 1;
  clearLog();
  setConversation(null);
  if (push && location.pathname !== API.pageUrl()) history.pushState(null, "", API.pageUrl());
  refreshControls();
  closeSidebar();
  prompt.focus();
}

async function openConversation(id, { push }) {
  const ticket = ++state.loading;
  clearLog();
  closeSidebar();
  if (push) history.pushState(null, "", API.pageUrl(id));
  sidebar.setActive(id);
  let conversation;
  try {
    conversation = await API.getConversation(id);
  } catch (error) {
    if (ticket !== state.loading) return;
    setConversation(null);
    refreshControls();
    showNotice(error.status === 404 ? new Error(gettext("This conversation does not exist, or is not yours.")) : error);
    return;
  }
  if (ticket !== state.loading) return;
  setConversation(conversation);
  showMessages(conversation);
}

// The conversation's current branch in the log (after a load, or a switch of versions).
function showMessages(conversation) {
  for (const message of conversation.messages) {
    if (message.role === "user") log.append(userElement(message));
    else if (message.role === "assistant") {
      const reply = addReply(message);
      if (message.status === "streaming") reply.follow();
      else reply.show();
    }
  }
  refreshControls();
  keepAtBottom(true);
}

// --- sending, stopping, answering again, editing ---------------------------------------------

async function send(text, attachments = []) {
  hideNotice();
  const editId = state.editing;
  const pending = userElement({ content: text, attachments });
  pending.classList.add("pending");
  log.append(pending);
  welcome.hidden = true;
  keepAtBottom(true);
  const body = { content: text };
  if (modelSelect.value) body.model = modelSelect.value;
  if (attachments.length) body.attachments = attachments.map((a) => a.id);
  let sent;
  try {
    if (state.conversation) {
      if (editId) body.edit = editId;
      sent = await API.sendMessage(state.conversation.id, body);
    } else {
      // An extension of POST /api/conversations: create it and send the first message at once.
      sent = await API.createConversation(body);
      const { user_message: _u, assistant_message: _a, stream_url: _s, ...conversation } = sent;
      setConversation(conversation);
      history.pushState(null, "", API.pageUrl(conversation.id));
    }
  } catch (error) {
    pending.remove();
    if (!prompt.value) prompt.value = text;
    files.restore(attachments);
    refreshControls();
    showNotice(error, () => {
      prompt.value = "";
      send(text, files.take());
    });
    return;
  }
  if (editId) {
    // The new version takes the edited one's place; the old one stays a version away.
    removeMessages(log.querySelector(`.msg.user[data-id="${CSS.escape(editId)}"]`), "msg");
    cancelEdit();
    log.append(pending);
  }
  pending.classList.remove("pending");
  pending.dataset.id = sent.user_message.id;
  showVersions(pending, sent.user_message);
  addReply(sent.assistant_message).follow();
  refreshControls();
  keepAtBottom(true);
  sidebar.upsert({ ...state.conversation });
}

// Removes, from `start` to the end of the log, the elements of class `kind` ("msg": every
// message; "assistant": the replies), detaching the streams of the replies among them.
function removeMessages(start, kind) {
  for (let el = start; el; ) {
    const next = el.nextElementSibling;
    if (el.classList.contains(kind)) {
      state.replies.get(el.dataset.id)?.detach();
      state.replies.delete(el.dataset.id);
      el.remove();
    }
    el = next;
  }
}

// Answers again the question of the reply `replyId` (default: the last reply of the branch).
async function answerAgain(replyId = null) {
  if (!state.conversation || streamingReply()) return;
  hideNotice();
  const body = modelSelect.value ? { model: modelSelect.value } : {};
  if (replyId) body.message_id = replyId;
  let sent;
  try {
    sent = await API.regenerate(state.conversation.id, body);
  } catch (error) {
    showNotice(error, () => answerAgain(replyId));
    return;
  }
  // The new reply takes the old one's place (and of what followed it): a version away.
  const user = log.querySelector(`.msg.user[data-id="${CSS.escape(sent.user_message.id)}"]`);
  removeMessages(user?.nextElementSibling, "msg");
  addReply(sent.assistant_message).follow();
  refreshControls();
  keepAtBottom(true);
}

// Another version of a message: the server stores the switch and answers the branch through
// it; a reply still being written elsewhere goes on (its stream is followed again when shown).
async function showVersion({ id, next }) {
  if (!state.conversation) return;
  const ticket = ++state.loading;
  let conversation;
  try {
    conversation = await switchBranch(state.conversation.id, id);
  } catch (error) {
    if (ticket === state.loading) showNotice(error);
    return;
  }
  if (ticket !== state.loading) return;
  clearLog();
  showMessages(conversation);
  const shown = log.querySelector(`.msg[data-id="${CSS.escape(id)}"]`);
  const count = shown?.querySelector(".version-count")?.textContent;
  const [at, of] = count ? count.split(" / ") : [];
  if (count) announce(interpolate(gettext("Version %(at)s of %(count)s"), { at, count: of }, true));
  // Keep the focus where it was: on the same button, now of the version shown.
  const again = shown?.querySelector(`.version-step.${next ? "next" : "previous"}`);
  (again && !again.disabled ? again : shown?.querySelector(".version-step:not(:disabled)"))?.focus();
}

async function stop() {
  const reply = streamingReply();
  if (!reply) return;
  stopButton.disabled = true;
  try {
    const message = await API.stopReply(reply.id);
    // The stream ends with `done` by itself; this covers a stream that is reconnecting.
    if (message.status !== "streaming" && reply.streaming) reply.finish(message);
  } catch (error) {
    showNotice(error);
  } finally {
    stopButton.disabled = false;
  }
}

function startEdit(el) {
  state.editing = el.dataset.id;
  prompt.value = el.querySelector(".text").textContent;
  editing.hidden = false;
  el.classList.add("being-edited");
  autosize();
  prompt.focus();
}

function cancelEdit() {
  if (!state.editing) return;
  log.querySelector(".being-edited")?.classList.remove("being-edited");
  state.editing = null;
  editing.hidden = true;
  prompt.value = "";
  autosize();
}

async function copyText(text, buttonEl) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Not a secure context (plain http on another host): the old way.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  const label = buttonEl.textContent;
  buttonEl.textContent = gettext("Copied");
  setTimeout(() => {
    buttonEl.textContent = label;
  }, 1500);
}

// --- events ------------------------------------------------------------------------------------

// Files in the composer (attachments.js): a send waits for the uploads in flight; when one of
// those is refused, nothing is sent (its chip says why) and the person sends again.
const files = new Attachments({ form, prompt, dropArea: document.querySelector(".main") }, { announce });
let waitingForUploads = false;

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const empty = () => !prompt.value.trim() && !files.count; // files alone may be sent
  if (streamingReply() || waitingForUploads || empty()) return;
  if (files.uploading) {
    waitingForUploads = true;
    sendButton.disabled = true;
    announce(gettext("Sending once the files are uploaded…"));
    const ok = await files.settled();
    waitingForUploads = false;
    sendButton.disabled = false;
    if (!ok || streamingReply()) return;
  }
  if (empty()) return;
  const text = prompt.value;
  prompt.value = "";
  autosize();
  send(text, files.take());
});

prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

function autosize() {
  prompt.style.height = "auto";
  prompt.style.height = `${Math.min(prompt.scrollHeight, 240)}px`;
}
prompt.addEventListener("input", autosize);

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented) return;
  if (streamingReply()) {
    event.preventDefault();
    stop();
  } else if (state.editing) {
    cancelEdit();
  } else if (app.classList.contains("sidebar-open")) {
    closeSidebar({ refocus: true });
  }
});

stopButton.addEventListener("click", stop);
$("cancel-edit").addEventListener("click", cancelEdit);

log.addEventListener("click", (event) => {
  const target = event.target;
  const msg = target.closest(".msg");
  if (target.closest(".copy-code")) {
    const code = target.closest(".code-block")?.querySelector("code");
    if (code) copyText(code.textContent, target.closest(".copy-code"));
  } else if (target.closest(".copy-reply") && msg) {
    copyText(state.replies.get(msg.dataset.id)?.view.text || "", target.closest(".copy-reply"));
  } else if (target.closest(".regenerate") || target.closest(".retry")) {
    answerAgain(msg?.classList.contains("assistant") ? msg.dataset.id : null);
  } else if (versionTarget(target) && msg) {
    showVersion(versionTarget(target));
  } else if (target.closest(".edit") && msg) {
    startEdit(msg);
  }
});

$("new-chat").addEventListener("click", (event) => {
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  newChat({ push: true });
});

// On a phone the sidebar is a drawer over the page: opening it moves focus into it, and
// closing it (Escape, the close button, the scrim) gives focus back to the toggle (issue 32).
function openSidebar() {
  app.classList.add("sidebar-open");
  $("scrim").hidden = false;
  $("open-sidebar").setAttribute("aria-expanded", "true");
  $("sidebar").querySelector("a[href], button:not([disabled]), input:not([disabled])")?.focus();
}
function closeSidebar({ refocus = false } = {}) {
  const wasOpen = app.classList.contains("sidebar-open");
  app.classList.remove("sidebar-open");
  $("scrim").hidden = true;
  $("open-sidebar").setAttribute("aria-expanded", "false");
  if (refocus && wasOpen) $("open-sidebar").focus();
}
$("open-sidebar").addEventListener("click", openSidebar);
$("close-sidebar").addEventListener("click", () => closeSidebar({ refocus: true }));
$("scrim").addEventListener("click", () => closeSidebar({ refocus: true }));

window.addEventListener("popstate", () => {
  const id = API.conversationIdIn(location.pathname);
  if (id) openConversation(id, { push: false });
  else newChat({ push: false });
});

// Back online: reconnect at once instead of waiting for the next try.
window.addEventListener("online", () => {
  for (const reply of state.replies.values()) if (reply.streaming && !reply.source) reply.reconnect();
});

// --- start -------------------------------------------------------------------------------------

sidebar.refresh();
if (app.dataset.conversationId) openConversation(app.dataset.conversationId, { push: false });
else newChat({ push: false });
app.classList.add("ready");
warmUp();
