// The JSON API of docs/API.md (and docs/API-extensions.md), as the page speaks it.
import { gettext, interpolate } from "./i18n.js";

// Where the app is mounted (a host project may include it under any prefix): the page says,
// from Django's URLconf, and every URL below starts there.
const root = document.querySelector("[data-app-root]")?.dataset.appRoot || "/";
export const pageUrl = (conversationId) => (conversationId ? `${root}c/${conversationId}/` : root);
export const conversationIdIn = (path) =>
  path.startsWith(root) ? path.slice(root.length).match(/^c\/([0-9a-f-]{36})\/$/)?.[1] || null : null;
const apiUrl = (path) => `${root}api/${path}`;

export class ApiError extends Error {
  constructor(message, { status = 0, code = "network", retryAfter = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter; // seconds, from a 429's Retry-After
  }
}

// A failure the server did not explain (no JSON error): its status, in the reader's words.
const answered = (r) =>
  interpolate(gettext("The server answered %(status)s %(text)s."), { status: r.status, text: r.statusText }, true);

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

// Retry-After is either seconds or an HTTP date.
export function retryAfterSeconds(value) {
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value);
  const when = Date.parse(value);
  return Number.isNaN(when) ? null : Math.max(0, Math.ceil((when - Date.now()) / 1000));
}

export async function api(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: {
        "Accept": "application/json",
        "X-CSRFToken": csrfToken(),
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(gettext("The server could not be reached. Check your connection and try again."));
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(data?.error || answered(response), {
      status: response.status,
      code: data?.code || "http_error",
      retryAfter: retryAfterSeconds(response.headers.get("Retry-After")),
    });
  }
  return data;
}

export const listConversations = () => api("GET", apiUrl("conversations"));
export const getConversation = (id) => api("GET", apiUrl(`conversations/${id}`));
export const createConversation = (body = {}) => api("POST", apiUrl("conversations"), body);
export const renameConversation = (id, title) => api("PATCH", apiUrl(`conversations/${id}`), { title });
export const deleteConversation = (id) => api("DELETE", apiUrl(`conversations/${id}`));
export const sendMessage = (id, body) => api("POST", apiUrl(`conversations/${id}/messages`), body);
export const regenerate = (id, body = {}) => api("POST", apiUrl(`conversations/${id}/regenerate`), body);
export const getMessage = (messageId) => api("GET", apiUrl(`messages/${messageId}`));
export const stopReply = (messageId) => api("POST", apiUrl(`messages/${messageId}/stop`));
export const streamUrl = (messageId, lastEventId) =>
  apiUrl(`messages/${messageId}/stream`) + (lastEventId ? `?last_event_id=${encodeURIComponent(lastEventId)}` : "");

// Feedback and sharing (contract v3; docs/API-extensions.md, "Feedback and sharing").
export const sendFeedback = (messageId, body) => api("POST", apiUrl(`messages/${messageId}/feedback`), body);
export const shareConversation = (id) => api("POST", apiUrl(`conversations/${id}/share`));
export const unshareConversation = (id) => api("DELETE", apiUrl(`conversations/${id}/share`));

// Contract v3, "Branches": the branch through a message becomes current (stored).
export const chooseBranch = (id, messageId) =>
  api("POST", apiUrl(`conversations/${id}/branch`), { message_id: messageId });

// Search (contract v3, "Search"): the owner's conversations that hold the words, with snippets.
export const searchConversations = (q) => api("GET", `${apiUrl("conversations")}?q=${encodeURIComponent(q)}`);

// Contract v3, "Files and images": one file up (multipart, field `file`), with its progress.
// XMLHttpRequest, not fetch: only it reports upload progress. `onProgress(fraction)`;
// `signal` (an AbortSignal) cancels. Answers {id, name, content_type, size, ...}; throws ApiError.
export const attachmentUrl = (id) => apiUrl(`attachments/${id}`);
export function uploadAttachment(file, { onProgress, signal } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", apiUrl("attachments"));
    xhr.withCredentials = true;
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.responseType = "text";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress?.(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && data) resolve(data);
      else
        reject(
          new ApiError(data?.error || answered(xhr), {
            status: xhr.status,
            code: data?.code || "http_error",
            retryAfter: retryAfterSeconds(xhr.getResponseHeader("Retry-After")),
          }),
        );
    });
    xhr.addEventListener("error", () =>
      reject(new ApiError(gettext("The server could not be reached. Check your connection and try again."))),
    );
    xhr.addEventListener("abort", () => reject(new ApiError(gettext("The upload was cancelled."), { code: "aborted" })));
    signal?.addEventListener("abort", () => xhr.abort());
    const body = new FormData();
    body.append("file", file, file.name);
    xhr.send(body);
  });
}

// Tool approval (issue 31): `approved` true runs the call the reply waits on, false refuses it.
export const approveTool = (messageId, toolCallId, approved) =>
  api("POST", apiUrl(`messages/${messageId}/approve`), { tool_call_id: toolCallId, approved });
