"""A visitor who signs in keeps its conversations (connected in ChatConfig.ready); and the
signals a host site connects to (defined in chat/hooks.py, below the reply engine that sends
them; imported from here): `reply_started`, `reply_finished`, `reply_failed`, `feedback_given`."""

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from chat.hooks import feedback_given, reply_failed, reply_finished, reply_started
from chat.services import conversations_claim

__all__ = ["VISITOR_KEY", "feedback_given", "reply_failed", "reply_finished", "reply_started"]

VISITOR_KEY = "chat_visitor"  # the visitor's token in its session


@receiver(user_logged_in, dispatch_uid="chat-claim-visitor-conversations")
def claim_visitor_conversations(sender, request, user, **kwargs) -> None:
    # login() keeps the session's data across the new session key, so the token is still here.
    session = getattr(request, "session", None)
    if session is None:
        return
    visitor = session.pop(VISITOR_KEY, None)
    if visitor:
        conversations_claim(user_id=user.pk, visitor=visitor)
