// A reload mid-reply as a page with useChat lives it: the package's own Chat (AbstractChat,
// which useChat wraps), made from the history the page loads (GET /api/ui/chat/<id>, the
// reply's partial text included), resumes the stream (resume: true calls resumeStream).
// usage: node reload.mjs <base url> <chat id> <text>   (prints a line at each stage)
import { ai, print, sendAndHangUp, State, tabHeaders, transport } from "./sdk.mjs";

const [base, chatId, text] = process.argv.slice(2);
print({ stage: "aborted", messageId: await sendAndHangUp(base, chatId, text) });
const history = await (await fetch(`${base}/api/ui/chat/${chatId}`, { headers: tabHeaders() })).json();
const onResponse = (method) => method === "GET" && print({ stage: "resumed", loaded: history.messages });
const chat = new ai.AbstractChat({
  id: chatId,
  transport: transport(base, { onResponse }),
  state: new State(history.messages),
  onError: (error) => {
    print({ error: error.message });
    process.exit(1);
  },
});
await chat.resumeStream();
print({ stage: "done", messages: chat.messages, status: chat.status });
