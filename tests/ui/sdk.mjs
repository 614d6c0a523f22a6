// The `ai` package of tests/node (major 7), and a transport that acts as one signed-in tab:
// the tab's cookies and CSRF token come from the test (CHAT_COOKIE, CHAT_CSRF).
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const require = createRequire(new URL("../node/package.json", import.meta.url));
export const ai = await import(pathToFileURL(require.resolve("ai")).href);

export function tabHeaders() {
  return { Cookie: process.env.CHAT_COOKIE ?? "", "X-CSRFToken": process.env.CHAT_CSRF ?? "" };
}

// As docs/ai-sdk.md configures it: only the last message is sent (the server keeps the rest).
// `onResponse(method)` is told when a response's headers have come (a stream is open).
export function transport(base, { onResponse } = {}) {
  return new ai.DefaultChatTransport({
    api: `${base}/api/ui/chat`,
    body: process.env.CHAT_UI_MODEL ? { model: process.env.CHAT_UI_MODEL } : undefined,
    headers: tabHeaders,
    prepareSendMessagesRequest: ({ id, messages, trigger, messageId, body }) => ({
      body: { ...body, id, trigger, messageId, messages: messages.slice(-1) },
    }),
    fetch: async (url, init) => {
      const response = await fetch(url, init);
      onResponse?.(init?.method ?? "GET");
      return response;
    },
  });
}

// The message the package builds from a stream, as useChat shows it at the end.
export async function lastMessage(stream) {
  let message;
  for await (const snapshot of ai.readUIMessageStream({ stream, terminateOnError: true })) message = snapshot;
  return message;
}

// Send, then hang up after the first text delta, as a page that goes away; the reply's id.
export async function sendAndHangUp(base, chatId, text) {
  const abort = new AbortController();
  const messages = [{ id: "user-1", role: "user", parts: [{ type: "text", text }] }];
  const stream = await transport(base).sendMessages({
    chatId,
    messages,
    trigger: "submit-message",
    abortSignal: abort.signal,
  });
  const reader = stream.getReader();
  let messageId;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the reply ended before the reload");
    if (value.type === "start") messageId = value.messageId;
    if (value.type === "text-delta") break;
  }
  abort.abort();
  await reader.cancel().catch(() => {});
  return messageId;
}

// A chat's state as useChat's is, without React: what AbstractChat (which useChat wraps) needs.
export class State {
  constructor(messages = []) {
    this.messages = messages;
    this.status = "ready";
    this.error = undefined;
  }
  pushMessage(message) {
    this.messages = [...this.messages, message];
  }
  popMessage() {
    this.messages = this.messages.slice(0, -1);
  }
  replaceMessage(index, message) {
    this.messages = this.messages.map((m, i) => (i === index ? this.snapshot(message) : m));
  }
  snapshot(thing) {
    return structuredClone(thing);
  }
}

export function print(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}
