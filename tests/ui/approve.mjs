// Tool approval as useChat does it: the package's own Chat (AbstractChat, which useChat wraps)
// with a plain state, sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses.
// It sends, gets the approval request, answers it with addToolApprovalResponse, and the
// automatic request streams the rest of the same reply.
// usage: node approve.mjs <base url> <chat id> <text> <true | false>
import { ai, print, State, transport } from "./sdk.mjs";

const [base, chatId, text, approved] = process.argv.slice(2);
let finished = 0;
let second;
const secondDone = new Promise((resolve) => (second = resolve));
const chat = new ai.AbstractChat({
  id: chatId,
  transport: transport(base),
  state: new State(),
  sendAutomaticallyWhen: ai.lastAssistantMessageIsCompleteWithApprovalResponses,
  onFinish: () => {
    finished += 1;
    if (finished === 2) second();
  },
  onError: (error) => {
    print({ error: error.message });
    process.exit(1);
  },
});
await chat.sendMessage({ text });
const asked = chat.lastMessage;
const waiting = asked.parts.find((part) => part.state === "approval-requested");
print({ stage: "asked", message: asked, status: chat.status });
await chat.addToolApprovalResponse({ id: waiting.approval.id, approved: approved === "true" });
await secondDone;
print({ stage: "done", messages: chat.messages, status: chat.status });
