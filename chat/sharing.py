"""A conversation shown read-only at a URL nobody can guess (contract v3, "Sharing").

What is shared is a snapshot (chat.models.Share): the branch as it was when the owner shared
it, so what they write afterwards stays private until they share again. Sharing again
refreshes the snapshot under the same URL, so a link already sent keeps working.
"""

import re
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from chat.branches import conversation_branch_load
from chat.errors import NotFound
from chat.models import Conversation, Message, Share
from chat.services import Owner, conversation_get

# What share_token() makes (token_urlsafe); anything else is not looked up at all.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
_FENCE = re.compile(
    r"^ {0,3}(`{3,}|~{3,})[^\n]*\n(.*?)(?:^ {0,3}\1[`~]*[ \t]*$|\Z)", re.MULTILINE | re.DOTALL
)


def snapshot(messages: list[Message]) -> list[dict[str, Any]]:
    """What a shared page shows of each message: nothing that names or identifies the owner.

    A reply still being written is taken as far as it was stored (its last checkpoint).
    """
    return [
        {
            "role": m.role,
            "content": m.content,
            "model": m.model if m.role == Message.Role.ASSISTANT else "",
            "status": m.status,
            "created_at": m.created_at.isoformat(),
        }
        for m in messages
    ]


def conversation_share(*, owner: Owner, conversation_id: str) -> Share:
    """Share the conversation as it is now; sharing again refreshes it and keeps its URL."""
    conversation = conversation_get(owner=owner, conversation_id=conversation_id)
    share, _ = Share.objects.update_or_create(
        conversation=conversation,
        defaults={
            "title": conversation.title,
            "messages": snapshot(conversation_branch_load(conversation).branch),
            "created_at": timezone.now(),
        },
    )
    return share


def conversation_unshare(*, owner: Owner, conversation_id: str) -> None:
    """Revoke the URL: it answers 404 from now on. A conversation not shared stays so."""
    conversation = conversation_get(owner=owner, conversation_id=conversation_id)
    Share.objects.filter(conversation=conversation).delete()


def share_token_of(conversation: Conversation) -> str | None:
    return Share.objects.filter(conversation=conversation).values_list("pk", flat=True).first()


def share_get(*, token: str) -> Share:
    if not _TOKEN.fullmatch(token):
        raise NotFound("No shared conversation here.")
    share = Share.objects.filter(pk=token).first()
    if share is None:
        raise NotFound("No shared conversation here.")
    return share


def page_messages(share: Share) -> list[dict[str, Any]]:
    """The snapshot's messages as the shared page shows them, each with its `blocks`."""
    return [{**m, "blocks": blocks(m["content"])} for m in share.messages if m.get("role") != "system"]


@dataclass(frozen=True)
class Block:
    """A piece of a message as the shared page shows it: text, or code kept as it is."""

    kind: str  # "text" or "code"
    text: str


def blocks(content: str) -> list[Block]:
    """Markdown as plain text: fenced code blocks become <pre>, the rest paragraphs.

    No HTML is made here: the template escapes every piece, so nothing a model writes can run
    or load anything on the shared page (which has no sanitizer, and needs none).
    """
    found: list[Block] = []
    at = 0
    for match in _FENCE.finditer(content):
        found += _paragraphs(content[at : match.start()])
        found.append(Block("code", match.group(2).rstrip("\n")))
        at = match.end()
    found += _paragraphs(content[at:])
    return found


def _paragraphs(text: str) -> list[Block]:
    return [Block("text", part.strip("\n")) for part in re.split(r"\n[ \t]*\n", text) if part.strip()]
