"""The `demo` model: offline and deterministic, the embedded default.

Its reply shows what a page must render (a paragraph, a list, a fenced code block) and says
how to connect a real model. CHAT_DEMO_RATE sets its pace, CHAT_DEMO_TOKENS its length;
CHAT_MAX_OUTPUT_TOKENS cuts it as it cuts a real model (finish_reason `length`).

Offered its example tool (`current_time`, unless CHAT_DEMO_STEPS is off), it shows what a
reasoning model with tools does: a short reasoning, one call, then the answer, which starts
with what the tool said (issue 12). Sent files, it starts by listing what it received: each
file's name, type and size, an image's dimensions, a PDF's pages and the first words of a PDF
or text file (issue 30), so attachments can be tried offline.
"""

import asyncio
import functools
import io
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Iterator

from chat import conf
from chat.providers.base import Attachment, Finish, Prompt, Provider, Reasoning, ToolCall, Usage

_TOKEN = re.compile(r"\s*\S+")

_MORE = [
    "Going further, part {n}: a long answer stays readable when it is split into short "
    "paragraphs, each making one point, with the key words in **bold**.",
    "Part {n} as a checklist:\n\n- read the error message twice;\n- reproduce it with the "
    "smallest input;\n- change one thing at a time;\n- write down what you learned.",
    'Part {n} in code:\n\n```python\ndef step_{n}(items):\n    """Keep what matters."""\n'
    "    return [item for item in items if item.ok]\n```",
]


def compose(question: str) -> str:
    topic = " ".join(question.split()) or "your question"
    if len(topic) > 80:
        topic = topic[:79].rstrip() + "…"
    return (
        f"Thanks for asking about “{topic}”. I am the built-in **demo** model: I run offline "
        "and answer every question the same way, so you can see how a streamed reply looks "
        "before you connect a real model.\n\n"
        "Here is how I would work through a question like yours:\n\n"
        f"1. **Pin down the goal.** What should be true once “{topic}” is settled?\n"
        "2. **Gather the facts.** List what you know and what you still need to find out.\n"
        "3. **Take the smallest step.** Make one change, check the result, then go on.\n\n"
        "A reply can carry code as well. This one streams a reply in a terminal:\n\n"
        "```bash\n"
        "curl -N -H 'Accept: text/event-stream' \\\n"
        '     -d \'{"content": "Hello"}\' http://127.0.0.1:8000/api/conversations\n'
        "```\n\n"
        "To talk to a real model, set `OPENAI_API_KEY` (or `OPENAI_BASE_URL` for Ollama, "
        "vLLM or LM Studio) or `ANTHROPIC_API_KEY` and restart the server; the README shows "
        "each in one line."
    )


@functools.lru_cache(maxsize=256)
def _answer_tokens(question: str) -> tuple[str, ...]:
    """The answer's tokens, shared by the replies to one question: a reply waiting for its next
    token holds a place in them, not a copy of its text (memory per open stream, issue 14)."""
    return tuple(match.group() for match in _TOKEN.finditer(compose(question)))


def iter_demo_tokens(question: str, length: int | None = None) -> Iterator[str]:
    """The reply as tokens (roughly words with their leading space), `length` of them if set.

    Lazy past the answer itself: the parts that make a long reply are made as they are reached.
    Within the answer, a place in its shared tokens, with no generator frame (issue 14).
    """
    answer = _answer_tokens(question)
    if length is None or length <= len(answer):
        return itertools.islice(answer, length)
    more = itertools.chain.from_iterable(map(_part_tokens, itertools.count(1)))
    return itertools.chain(answer, itertools.islice(more, length - len(answer)))


@functools.lru_cache(maxsize=512)
def _part_tokens(n: int) -> tuple[str, ...]:
    """Part `n` of what follows the answer in a long reply, as tokens, shared as the answer's are:
    a token of a long reply is then taken by C iterators alone, with no generator of this module
    resumed for it (issue 14: a generator here was 4 % of the server's CPU at 3,000 paced
    streams, whose replies run past the answer)."""
    return tuple(match.group() for match in _TOKEN.finditer("\n\n" + _MORE[(n - 1) % len(_MORE)].format(n=n)))


def demo_tokens(question: str, length: int | None = None) -> list[str]:
    return list(iter_demo_tokens(question, length))


DEMO_TOOL = "current_time"


def reasoning_for(question: str) -> str:
    topic = " ".join(question.split())[:60] or "something"
    return (
        f"The question is about “{topic}”. I am the demo model, so my answer is always the same; "
        f"still, I will ask the {DEMO_TOOL} tool for the server's clock first, to show how a "
        "model that reasons and calls tools streams."
    )


def tool_sentence(turn_content: str, failed: bool) -> str:
    """The answer's first sentence: what the tool said."""
    if failed:
        return f"The `{DEMO_TOOL}` tool failed ({turn_content}), so I answer without it.\n\n"
    try:
        said = json.loads(turn_content)
        when = f"{said['weekday']}, {said['utc'].replace('T', ' ').removesuffix('+00:00')} UTC"
    except (ValueError, KeyError, TypeError, AttributeError):
        when = turn_content
    return f"The server's clock says it is {when} (I asked the `{DEMO_TOOL}` tool).\n\n"


_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
FIRST_WORDS = 8


def _first_words(text: str | None) -> str:
    words = (text or "").split()[: FIRST_WORDS + 1]
    return " ".join(words[:FIRST_WORDS]) + (" …" if len(words) > FIRST_WORDS else "")


def _dimensions(attachment: Attachment) -> tuple[int, int] | None:
    if attachment.width and attachment.height:
        return attachment.width, attachment.height
    try:
        from PIL import Image

        with Image.open(io.BytesIO(attachment.data)) as image:
            return image.size
    except Exception:  # noqa: BLE001 - Pillow missing or the bytes unreadable: no dimensions to tell
        return None


def describe_file(attachment: Attachment) -> str:
    """One line of what the demo model received: name, type, size, and what it could see."""
    name = " ".join(attachment.name.split()).replace("`", "'")
    facts = [attachment.content_type, f"{attachment.size:,} bytes"]
    text = attachment.text
    if attachment.is_image:
        if size := _dimensions(attachment):
            facts.append(f"{size[0]}×{size[1]} px")
    elif attachment.content_type == "application/pdf":
        if pages := len(_PDF_PAGE.findall(attachment.data)):
            facts.append(f"{pages} page{'s' if pages != 1 else ''}")
    elif text is None:
        text = attachment.data[:4096].decode("utf-8", errors="replace")
    if words := _first_words(text):
        facts.append(f"begins “{words}”")
    return f"- `{name}`: " + ", ".join(facts)


def received(attachments: tuple[Attachment, ...]) -> str:
    """The answer's first lines when the question came with files."""
    count = len(attachments)
    lines = [f"I received {count} file{'s' if count != 1 else ''}:", ""]
    lines += [describe_file(attachment) for attachment in attachments]
    return "\n".join(lines) + "\n\n"


async def _paced(tokens: Iterator[str], rate: float) -> AsyncIterator[str]:
    start = time.monotonic()
    for i, token in enumerate(tokens):
        delay = start + (i + 1) / rate - time.monotonic() if rate > 0 else 0
        await asyncio.sleep(max(delay, 0))
        yield token


class DemoProvider(Provider):
    name = "demo"

    def stream(self, prompt: Prompt) -> AsyncIterator[str | Reasoning | Finish]:
        # Not a generator itself: it hands over the one that yields, so a token passes one
        # generator less on its way (issue 14: each is a frame resumed per token).
        users = [turn for turn in prompt.turns if turn.role == "user"]
        question = users[-1].content if users else ""
        last = prompt.turns[-1] if prompt.turns else None
        wants_tool = prompt.tool_choice != "none" and any(t.name == DEMO_TOOL for t in prompt.tools)
        if wants_tool and last is not None and last.role == "user":
            return self._reason_then_call(question, prompt)
        prefix = (
            tool_sentence(last.content, last.is_error) if last is not None and last.role == "tool" else ""
        )
        if users and users[-1].attachments:  # issue 30: what it received comes first
            prefix = received(users[-1].attachments) + prefix
        return self._answer(question, prompt, prefix)

    async def _reason_then_call(self, question: str, prompt: Prompt) -> AsyncIterator[Reasoning | Finish]:
        """The first round: a short reasoning, then one call of the example tool."""
        rate = float(conf.get("CHAT_DEMO_RATE") or 0)
        count = 0
        async for token in _paced((m.group() for m in _TOKEN.finditer(reasoning_for(question))), rate):
            count += 1
            yield Reasoning(token)
        words = sum(len(t.content.split()) for t in prompt.turns) + len(prompt.system.split())
        call = ToolCall(id="call_demo_1", name=DEMO_TOOL, arguments="{}")
        yield Finish(reason="tool_calls", usage=Usage(words, count), tool_calls=(call,))

    async def _answer(self, question: str, prompt: Prompt, prefix: str) -> AsyncIterator[str | Finish]:
        tokens = iter_demo_tokens(question, conf.get("CHAT_DEMO_TOKENS"))
        if prefix:
            tokens = itertools.chain(re.findall(r"\S+\s*", prefix), tokens)
        rate = float(conf.get("CHAT_DEMO_RATE") or 0)
        limit = conf.get_int("CHAT_MAX_OUTPUT_TOKENS")
        start = time.monotonic()
        count, cut = 0, False
        for token in tokens:
            if count == limit:  # a token past the limit: the reply reached it, as a model's would
                cut = True
                break
            count += 1
            # Pace from the start, not from the last token, so a busy loop does not slow it.
            delay = start + count / rate - time.monotonic() if rate > 0 else 0
            await asyncio.sleep(max(delay, 0))
            yield token
        words = sum(len(t.content.split()) for t in prompt.turns) + len(prompt.system.split())
        yield Finish(reason="length" if cut else "stop", usage=Usage(input_tokens=words, output_tokens=count))
