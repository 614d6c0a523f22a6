// A minimal page to try the engine by hand: send a message, watch the reply stream in.
// Text is only ever set with textContent: model output never becomes markup here.
const root = document.querySelector(".chat");
const log = document.getElementById("log");
const form = document.getElementById("composer");
const prompt = document.getElementById("prompt");
const stopButton = document.getElementById("stop");
const modelPicker = document.getElementById("model"); // the models offered, rendered by the server
let conversationId = root.dataset.conversationId || null;
let current = null; // {source, messageId}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrfToken() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new Error(data?.error || `HTTP ${response.status}`);
  return data;
}

function bubble(role, text) {
  const item = document.createElement("li");
  item.className = role;
  item.textContent = text;
  log.append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function follow(message) {
  const item = bubble("assistant", "");
  const state = document.createElement("span");
  state.className = "state";
  item.append(state);
  const body = document.createTextNode(message.content || "");
  item.prepend(body);
  const url = `/api/messages/${message.id}/stream` + (message.content ? `?last_event_id=${message.content.length}` : "");
  const source = new EventSource(url);
  current = { source, messageId: message.id };
  stopButton.hidden = false;
  const finish = () => { source.close(); current = null; stopButton.hidden = true; state.textContent = ""; };
  source.addEventListener("status", (e) => { state.textContent = JSON.parse(e.data).state + "…"; });
  source.onmessage = (e) => { state.textContent = ""; body.appendData(JSON.parse(e.data).text); };
  source.addEventListener("done", (e) => {
    const done = JSON.parse(e.data);
    finish();
    if (done.status !== "complete") state.textContent = ` [${done.status}]`;
  });
  source.addEventListener("error", (e) => {
    if (!e.data) { state.textContent = " reconnecting…"; return; } // network: EventSource retries
    finish();
    item.classList.add("error");
    state.textContent = " " + JSON.parse(e.data).error;
  });
}

async function send(text) {
  if (!conversationId) {
    conversationId = (await api("POST", "/api/conversations", { model: modelPicker.value })).id;
    history.replaceState(null, "", `/c/${conversationId}/`);
  }
  bubble("user", text);
  const sent = await api("POST", `/api/conversations/${conversationId}/messages`, { content: text, model: modelPicker.value });
  follow(sent.assistant_message);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = prompt.value;
  if (!text.trim()) return;
  prompt.value = "";
  send(text).catch((error) => bubble("assistant error", error.message));
});
prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  if (event.key === "Escape" && current) stopButton.click();
});
stopButton.addEventListener("click", () => {
  if (current) api("POST", `/api/messages/${current.messageId}/stop`).catch(() => {});
});

if (conversationId) {
  api("GET", `/api/conversations/${conversationId}`).then((conversation) => {
    if ([...modelPicker.options].some((option) => option.value === conversation.model)) {
      modelPicker.value = conversation.model;
    }
    for (const message of conversation.messages) {
      if (message.role === "assistant" && message.status === "streaming") follow(message);
      else bubble(message.role, message.content);
    }
  }).catch((error) => bubble("assistant error", error.message));
}
