"""Django signals a host site connects to: billing, moderation, analytics (issue 32).

Import them from `chat.signals` (this module is where they live, below the reply engine that
sends them, so that the engine imports nothing above it). The sender is always
`chat.models.Message`; every signal has the keyword arguments listed:

- `reply_started`: message, conversation, model, owner. The reply's task sends it, beside the
  reply (it never delays the first token).
- `reply_finished`: message, conversation, model, owner, status (`complete`, `stopped`,
  `interrupted`), usage (`{"input_tokens": n, "output_tokens": n}` or None), finish_reason,
  text_length, cached. Sent once the reply is saved and its stream has ended.
- `reply_failed`: message, conversation, model, owner, error (the sentence the client got),
  code, usage, text_length. Sent instead of `reply_finished` for a reply that ended in error.
- `feedback_given`: message, rating (1, -1, or 0 when cleared), comment, owner. Sent once the
  change is committed.

Each reply sends `reply_started` once and then exactly one of the other two, a cached answer,
a stop and a server's shutdown (status `interrupted`) included. `message` is the reply's own
copy, with its final fields (content, status, tokens) set when it ends; `owner` is the
`chat.services.Owner` who asked (`user_id`, your AUTH_USER_MODEL's pk, or None for an
anonymous `visitor`).

Receivers, sync or async, are run by Django's `asend_robust`: one that raises is logged by
Django (logger `django.dispatch`) and changes nothing for the reply or the other receivers.
Sync receivers run on a thread lent by the app's request threads, whose database connections
are seen to afterwards as at a request's end.
"""

from typing import Any

from django.dispatch import Signal

from chat.models import Message
from chat.threads import release_request_thread, request_context, request_threads

reply_started = Signal()
reply_finished = Signal()
reply_failed = Signal()
feedback_given = Signal()


async def send_in_background(signal: Signal, **kwargs: Any) -> None:
    """Send `signal` from a background task (a reply's): sync receivers on a thread of the
    request threads' pool, as a request's would run, its connections closed after."""
    if not signal.has_listeners(Message):
        return
    async with request_context(request_threads()):
        await signal.asend_robust(sender=Message, **kwargs)
        await release_request_thread()


async def send_in_request(signal: Signal, **kwargs: Any) -> None:
    """Send `signal` from a request's own code: sync receivers on the request's thread, as
    Django's own signals run."""
    if signal.has_listeners(Message):
        await signal.asend_robust(sender=Message, **kwargs)
