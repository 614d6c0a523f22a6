"""The owner's verdict on a reply (contract v3, "Feedback"): thumbs up or down, and a comment.

The site owner reads them in the admin (chat/feedback_admin.py) to see which model and which
prompts disappoint; the person who rated sees their own verdict on the page again.
"""

from django.utils import timezone

from chat import db
from chat.errors import Invalid
from chat.hooks import feedback_given, send_in_request
from chat.models import Message
from chat.services import Owner, check_text, message_get

COMMENT_CHARS = 2000  # a few paragraphs: enough to say what was wrong, not a second transcript
RATINGS = (1, -1, 0)


def _rating(data: dict) -> int:
    rating = data.get("rating")
    # `type() is int`: JSON `true` is a bool, an int to Python, and 1.0 is a float; neither is a rating.
    if type(rating) is not int or rating not in RATINGS:
        raise Invalid(f"'rating' must be the integer 1 (good), -1 (bad) or 0 (clear), not {rating!r:.40}.")
    return rating


def _comment(data: dict) -> str | None:
    """The new comment, or None when the body leaves it as it is."""
    if "comment" not in data:
        return None
    comment = data["comment"]
    if comment is None:
        return ""
    if not isinstance(comment, str):
        raise Invalid("'comment' must be a string.")
    if len(comment) > COMMENT_CHARS:
        raise Invalid(f"'comment' is {len(comment):,} characters long; the limit is {COMMENT_CHARS:,}.")
    return check_text("comment", comment).strip()


def reply_feedback(*, owner: Owner, message_id: str, data: dict) -> Message:
    """Rate one of the owner's replies (1 or -1), or clear the rating (0) and its comment.

    A body without `comment` keeps the comment there is, so changing the thumb does not lose
    what was written. Everything is checked before the one UPDATE: a refusal changes nothing.
    """
    rating = _rating(data)
    comment = _comment(data)
    message = message_get(owner=owner, message_id=message_id)
    if message.role != Message.Role.ASSISTANT:
        raise Invalid("Only a reply can be rated: this message is one the user sent.")
    if rating == 0:
        changes = {"feedback_rating": None, "feedback_comment": "", "feedback_at": None}
    else:
        changes = {"feedback_rating": rating, "feedback_at": timezone.now()}
        if comment is not None:
            changes["feedback_comment"] = comment
    # Only these columns: a reply still streaming keeps writing its own (content, status).
    Message.objects.filter(pk=message.pk).update(**changes)
    for name, value in changes.items():
        setattr(message, name, value)
    return message


async def reply_feedback_give(*, owner: Owner, message_id: str, data: dict) -> Message:
    """`reply_feedback` on the writers' thread, then `feedback_given` to the host's receivers.

    The signal is sent here, once the UPDATE is committed (the writers run in autocommit), and
    not from the writers' thread: a slow receiver there would hold back every reply's save.
    """
    message = await db.run(reply_feedback, owner=owner, message_id=message_id, data=data)
    await send_in_request(
        feedback_given,
        message=message,
        rating=message.feedback_rating or 0,
        comment=message.feedback_comment,
        owner=owner,
    )
    return message
