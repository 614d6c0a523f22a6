"""Replies left `streaming` by a process that died: found by their silence, marked `interrupted`."""

import asyncio
import logging
from collections.abc import Callable, Container
from datetime import timedelta

from django.db.models.functions import Length
from django.utils import timezone

from chat import conf, db
from chat.models import Message

log = logging.getLogger("chat.generation")


def replies_recover_stale(*, running: Container[str] = ()) -> int:
    """Mark `interrupted` the replies whose process died: no checkpoint for several intervals.

    `running` holds this process's live replies; it is asked at the moment of writing (a
    reply may start while this waits for the database), and a live reply that was marked
    anyway puts itself back at its next checkpoint.
    """
    cutoff = timezone.now() - timedelta(seconds=conf.stale_after())
    stale = Message.objects.filter(status=Message.Status.STREAMING, updated_at__lt=cutoff)
    ids = [pk for pk in stale.values_list("pk", flat=True) if str(pk) not in running]
    if not ids:
        return 0
    return stale.filter(pk__in=ids).update(status=Message.Status.INTERRUPTED, updated_at=timezone.now())


async def sweep_forever(running_ids: Callable[[], Container[str]]) -> None:
    """Every half stale window: `running_ids()`, the replies this process generates, are alive."""
    while True:
        try:
            count = await db.run(replies_recover_stale, running=running_ids())
            if count:
                log.warning("Marked %d reply(ies) left streaming by a stopped process as interrupted", count)
        except Exception as exc:  # never let the sweeper die: a later pass may succeed
            log.debug("Stale reply sweep failed: %s", exc)
        await asyncio.sleep(max(conf.stale_after() / 2, 0.05))


def reply_rescue_text(*, reply_id: str, text: str) -> bool:
    """A reply whose process died: keep the text its streams showed (from Redis) when it is
    longer than its last checkpoint. It may be marked `interrupted` already (a sweeper came
    first). `updated_at` stays, so that it is still found stale; a process still alive
    overwrites it at its next checkpoint with its own, longer text."""
    rows = (
        Message.objects.filter(pk=reply_id, status__in=[Message.Status.STREAMING, Message.Status.INTERRUPTED])
        .annotate(length=Length("content"))
        .filter(length__lt=len(text))
        .update(content=text)
    )
    return bool(rows)
