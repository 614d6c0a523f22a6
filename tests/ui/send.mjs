// Send one message through DefaultChatTransport and read the reply as useChat does.
// usage: node send.mjs <base url> <chat id> <text> [submit-message | regenerate-message <message id>]
import { lastMessage, print, transport } from "./sdk.mjs";

const [base, chatId, text, trigger = "submit-message", messageId] = process.argv.slice(2);
const messages = [{ id: "user-1", role: "user", parts: [{ type: "text", text }] }];
const chunks = [];
const stream = await transport(base).sendMessages({ chatId, messages, trigger, messageId });
const seen = stream.pipeThrough(
  new TransformStream({
    transform(chunk, controller) {
      chunks.push(chunk.type);
      controller.enqueue(chunk);
    },
  }),
);
const message = await lastMessage(seen);
print({ message, chunks });
