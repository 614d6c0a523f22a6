// A reload mid-reply: send, hang up after the first text delta (the page went away), then a
// new transport resumes with reconnectToStream and reads the whole reply from its start.
// usage: node resume.mjs <base url> <chat id> <text>   (prints a line at each stage)
//        node resume.mjs <base url> <chat id>          (resume only: prints {"stream": null} on 204)
import { lastMessage, print, sendAndHangUp, transport } from "./sdk.mjs";

const [base, chatId, text] = process.argv.slice(2);
if (text !== undefined) print({ stage: "aborted", messageId: await sendAndHangUp(base, chatId, text) });
const resumed = await transport(base).reconnectToStream({ chatId });
if (resumed === null) {
  print({ stream: null });
} else {
  const reader = resumed.getReader();
  const first = await reader.read(); // the start chunk: the test may now let the reply go on
  print({ stage: "resumed", first: first.value });
  const rest = new ReadableStream({
    start(controller) {
      controller.enqueue(first.value);
    },
    async pull(controller) {
      const { value, done } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
  });
  print({ stage: "done", message: await lastMessage(rest) });
}
