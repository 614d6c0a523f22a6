"""The contract's JSON shapes (../shared/API.md) for conversations and messages."""

from typing import Any

from django.urls import reverse

from chat.attachments import attachments_load
from chat.branches import conversation_branch_load, sibling_ids
from chat.models import Attachment, Conversation, Message
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
        # contract v3, "Branches" (one query when the caller has not computed the siblings)
        "parent_id": None if message.parent_id is None else str(message.parent_id),
        "sibling_ids": [str(pk) for pk in sibling_ids(message)],
        # contract v3, "Files and images": a user message's files (prefetched where many are read)
        "attachments": [attachment_json(a) for a in attachments_load(message)],
    }


def attachment_json(attachment: Attachment) -> dict[str, Any]:
    return {
        "id": str(attachment.id),
        "name": attachment.name,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "url": reverse("chat:attachment", args=[attachment.pk]),
        # extensions (docs/API-extensions.md, "Files and images"): an image's size in pixels
        "width": attachment.width,
        "height": attachment.height,
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
    if messages:  # the current branch (chat/branches.py), root to leaf
        if getattr(conversation, "branch", None) is None:  # not read by conversation_get: read it
            conversation_branch_load(conversation)
        data["messages"] = [message_json(m) for m in conversation.branch]
        data["current_leaf"] = (
            None if conversation.current_leaf_id is None else str(conversation.current_leaf_id)
        )
    return data
