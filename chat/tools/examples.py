"""Example tools: the demo model's `current_time`, and one that reads only its owner's data.

Add them to CHAT_TOOLS to offer them to real models (`chat.tools.examples.current_time`).
"""

from datetime import UTC, datetime

from chat.tools import ToolContext


def current_time() -> dict:
    """The server's current date and time (UTC), for questions about today or now."""
    now = datetime.now(UTC).replace(microsecond=0)
    return {"utc": now.isoformat(), "weekday": now.strftime("%A")}


def search_my_conversations(query: str, limit: int = 5, *, context: ToolContext) -> list[dict]:
    """Find the person's own earlier conversations that mention some words.

    Args:
        query: words to look for in the messages
        limit: the most conversations to return
    """
    from chat.models import Conversation

    owned = Conversation.objects.filter(
        user_id=context.user_id, visitor="" if context.user_id else context.visitor
    )
    found = owned.filter(messages__content__icontains=query).exclude(pk=context.conversation_id).distinct()
    return [
        {"id": str(c.pk), "title": c.title} for c in found.order_by("-updated_at")[: max(1, min(limit, 20))]
    ]
