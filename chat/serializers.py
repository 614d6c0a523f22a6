"""The contract's JSON shapes (../shared/API.md) for conversations and messages."""

from typing import Any

from chat.models import Conversation, Message
from chat.steps import steps_json


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
        "feedback": feedback_json(message),  # contract v3, "Feedback" (chat/feedback.py)
    }


def feedback_json(message: Message) -> dict[str, Any] | None:
    if message.feedback_rating is None:
        return None
    return {"rating": message.feedback_rating, "comment": message.feedback_comment}


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
