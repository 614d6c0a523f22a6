// Half-written Markdown, while a reply streams (issue 32). "Some **bold te" would show its
// raw asterisks until the closing "**" arrives, then jump to bold. Instead, the live block is
// drawn as if its open spans were closed: trailing marker characters (which may be the start
// of a closer, or of an opener) are held back, and each span still open at the end gets its
// closer. Only what is drawn changes; the text, and the final render, stay as written.

const FENCE = /^ {0,3}(`{3,}|~{3,})/;
const PARTIAL_FENCE = /^ {0,3}(`{1,2}|~{1,2})$/; // perhaps a fence still being written
const BLOCK_START = /^ {0,3}(?:[-+*] |\d{1,9}[.)] |#{1,6}(?: |$)|>|\|)/;
const TRAILING_MARKERS = /[*_~`]+$/;
const WORD = /[\p{L}\p{N}]/u;
const SPACE = /\s/;

// Where the last paragraph-like run of lines starts, and whether the text ends in an open
// code fence (whose content marked already draws as code, with no markers to hide).
function lastSegment(lines) {
  let fence = null;
  let start = 0;
  lines.forEach((line, i) => {
    const match = line.match(FENCE);
    if (fence) {
      if (match && match[1][0] === fence[0] && match[1].length >= fence.length && !line.trim().slice(match[1].length)) {
        fence = null;
        start = i + 1;
      }
    } else if (match) {
      fence = match[1];
    } else if (!line.trim()) {
      start = i + 1;
    } else if (BLOCK_START.test(line)) {
      start = i;
    }
  });
  return { start, inFence: fence !== null };
}

// The spans still open at the end of `text` (one paragraph): code spans by their backtick run,
// emphasis by its marker run, following CommonMark's flanking rules closely enough for a
// draft that lasts a frame.
function openSpans(text) {
  const stack = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\") {
      i += 2;
      continue;
    }
    let run = 1;
    while (text[i + run] === c) run++;
    const top = stack[stack.length - 1];
    if (c === "`") {
      if (top?.char === "`") {
        if (top.run === run) stack.pop();
      } else {
        stack.push({ char: c, run });
      }
    } else if (top?.char !== "`" && (c === "*" || c === "_" || (c === "~" && run === 2))) {
      const before = text[i - 1] ?? " ";
      const after = text[i + run] ?? " ";
      const closes = !SPACE.test(before) && (c !== "_" || !WORD.test(after));
      const opens = !SPACE.test(after) && (c !== "_" || !WORD.test(before));
      const index = stack.findLastIndex((span) => span.char === c);
      if (closes && index >= 0) stack.splice(index);
      else if (opens) stack.push({ char: c, run });
    }
    i += run;
  }
  return stack;
}

// The text to draw for the live block of a streaming reply.
export function settleOpenMarkdown(text) {
  const lines = text.split("\n");
  if (PARTIAL_FENCE.test(lines[lines.length - 1])) lines.pop();
  const { start, inFence } = lastSegment(lines);
  if (inFence) return lines.join("\n");
  const head = lines.slice(0, start).join("\n");
  let segment = lines.slice(start).join("\n").replace(TRAILING_MARKERS, "");
  const spans = openSpans(segment);
  if (spans.length) {
    // An emphasis closer must follow a non-space; a code span keeps its spaces (trimming
    // them could join a backtick of its content to the closer).
    if (spans[spans.length - 1].char !== "`") segment = segment.trimEnd();
    segment += spans.reverse().map((span) => span.char.repeat(span.run)).join("");
  }
  return start > 0 ? `${head}\n${segment}` : segment;
}
