// The `ai` package of tests/node (major 7), and a transport that acts as one signed-in tab:
// the tab's cookies and CSRF token come from the test (CHAT_COOKIE, CHAT_CSRF).
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const require = createRequire(new URL("../node/package.json", import.meta.url));
export const ai = await import(pathToFileURL(require.resolve("ai")).href);

// As docs/ai-sdk.md configures it: only the last message is sent (the server keeps the rest).
export function transport(base) {
  return new ai.DefaultChatTransport({
    api: `${base}/api/ui/chat`,
    body: process.env.CHAT_UI_MODEL ? { model: process.env.CHAT_UI_MODEL } : undefined,
    headers: () => ({ Cookie: process.env.CHAT_COOKIE ?? "", "X-CSRFToken": process.env.CHAT_CSRF ?? "" }),
    prepareSendMessagesRequest: ({ id, messages, trigger, messageId, body }) => ({
      body: { ...body, id, trigger, messageId, messages: messages.slice(-1) },
    }),
  });
}

// The message the package builds from a stream, as useChat shows it at the end.
export async function lastMessage(stream) {
  let message;
  for await (const snapshot of ai.readUIMessageStream({ stream, terminateOnError: true })) message = snapshot;
  return message;
}

export function print(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}
