"""Conversation titles: the first message's words at once, then (with a real model) a short
title the model writes in the background once the first reply is complete."""

import asyncio
import logging
import re
from contextlib import aclosing

from chat import conf, db
from chat.admission import estimate_tokens
from chat.models import Attachment, Conversation, Message
from chat.providers import Finish, Prompt, Turn, Usage, registry
from chat.providers.registry import ModelInfo
from chat.ratelimit import get_limiter
from chat.runtime import runtime

log = logging.getLogger("chat.services")

TITLE_LENGTH = 60


def title_from(content: str) -> str:
    text = " ".join(content.split())
    if len(text) <= TITLE_LENGTH:
        return text
    cut = text[: TITLE_LENGTH - 1].rsplit(" ", 1)[0] or text[: TITLE_LENGTH - 1]
    return cut.rstrip(" ,.;:") + "…"


def title_of_files(files: list[Attachment] | None) -> str:
    """A conversation that starts with files and no words is named after its first file."""
    return title_from(files[0].name) if files else ""


TITLE_INSTRUCTIONS = (
    "You name conversations. Reply with a title of at most six words for a conversation that "
    "starts with the user's message below: the title only, without quotes or a final period."
)
TITLE_TASK = "chat-title-"  # the name of each title's background task starts so


def title_tasks() -> list[asyncio.Task]:
    """The model-written titles still being asked for (the runtime's tasks)."""
    return runtime.tasks(TITLE_TASK)


def title_clean(text: str) -> str:
    """A model's answer as a title: its first line, without quotes, markup or a 'Title:' label."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    line = re.sub(r"^\W*title\s*:\s*", "", line.strip(), flags=re.IGNORECASE)
    return title_from(line.strip(" #*_`\"'“”‘’«»").rstrip(".").strip())


def conversation_title_improve_later(
    *,
    conversation: Conversation,
    info: ModelInfo,
    content: str,
    reply_id: str,
    reply: asyncio.Task,
    owner: str | None = None,
    ip: str | None = None,
) -> asyncio.Task | None:
    """With a real model, ask it for a title in the background; the demo keeps the first message.

    It asks once the first reply has ended, and only if that reply is complete: never two
    requests at once for one person, and none to a model that just failed or was stopped.
    Its output tokens count against `owner`'s token quota (Owner.key) and its address's (`ip`),
    as a reply's do.
    """
    if info.provider == "demo" or not conf.get("CHAT_TITLE_BY_MODEL"):
        return None
    return runtime.spawn(  # the runtime's: it outlives the request, and ends with the server
        _title_after(
            reply_id, reply, conversation=conversation, info=info, content=content, owner=owner, ip=ip
        ),
        name=f"{TITLE_TASK}{conversation.pk}",
    )


async def _title_after(
    reply_id: str,
    reply: asyncio.Task,
    *,
    conversation: Conversation,
    info: ModelInfo,
    content: str,
    owner: str | None,
    ip: str | None,
) -> None:
    await asyncio.wait([reply])
    complete = await db.run(
        lambda: Message.objects.filter(pk=reply_id, status=Message.Status.COMPLETE).exists()
    )
    if complete:
        await conversation_title_improve(
            conversation_id=str(conversation.pk),
            first_title=conversation.title,
            info=info,
            content=content,
            owner=owner,
            ip=ip,
        )


async def conversation_title_improve(
    *,
    conversation_id: str,
    first_title: str,
    info: ModelInfo,
    content: str,
    owner: str | None = None,
    ip: str | None = None,
) -> str | None:
    """Ask the model for a short title; save it unless the title changed meanwhile (a rename).

    The tokens it answered with are charged to `owner`'s quota, as a reply's are (the
    server's count, else an estimate from the text), whether or not a title came of it.
    """
    prompt = Prompt(model=info.name, system=TITLE_INSTRUCTIONS, turns=(Turn(role="user", content=content),))
    parts: list[str] = []
    usage: Usage | None = None
    try:
        provider = registry.get_provider(info)
        async with asyncio.timeout(conf.get_float("CHAT_TITLE_TIMEOUT")):
            async with aclosing(provider.stream(prompt)) as stream:
                async for item in stream:
                    if isinstance(item, str):
                        parts.append(item)
                        if sum(map(len, parts)) > 4 * TITLE_LENGTH:  # enough: close the upstream
                            break
                    elif isinstance(item, Finish):
                        usage = item.usage
    except Exception as exc:  # noqa: BLE001 - a title is a nicety: the first message's stays
        log.info("No title from %s for conversation %s: %s", info.id, conversation_id, exc)
        return None
    finally:
        if owner is not None:
            tokens = usage.output_tokens if usage is not None else estimate_tokens("".join(parts))
            try:
                await get_limiter().charge(owner=owner, ip=ip, tokens=tokens)
            except Exception:
                log.exception("Title tokens of conversation %s not charged", conversation_id)
    title = title_clean("".join(parts))
    if not title:
        return None
    rows = await db.run(
        lambda: Conversation.objects.filter(pk=conversation_id, title=first_title).update(title=title)
    )
    return title if rows else None
