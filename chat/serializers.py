"""The contract's JSON shapes (../shared/API.md) for conversations and messages."""

from typing import TYPE_CHECKING, Any

from chat.models import Conversation, Message
from chat.steps import steps_json

if TYPE_CHECKING:
    from chat.search import SearchHit


def message_json(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "conversation_id": str(message.conversation_id),
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "model": message.model,
        "created_at": message.created_at.isoformat(),
        "finish_reason": message.finish_reason,
        "usage": message.usage,
        "error": message.error,
        "cached": message.cached,
        # issue 12 (docs/API-extensions.md, "Reasoning and tools")
        "reasoning": message.reasoning,
        "reasoning_ms": message.reasoning_ms,
        "steps": steps_json(message.reasoning, message.steps),
    }


def conversation_json(conversation: Conversation, *, messages: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(conversation.id),
        "title": conversation.title,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
    }
    if messages:
        data["messages"] = [message_json(m) for m in conversation.messages.all()]
    return data


def search_hit_json(hit: "SearchHit") -> dict[str, Any]:
    """A conversation as the list gives it, and where it matched (contract v3, "Search")."""
    match = hit.match_message_id
    return {
        **conversation_json(hit.conversation),
        "snippet": hit.snippet,
        "match_message_id": None if match is None else str(match),
    }
