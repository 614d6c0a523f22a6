"""Replies left `streaming` by a process that died: found by their silence, marked `interrupted`."""

from collections.abc import Container
from datetime import timedelta

from django.utils import timezone

from chat import conf
from chat.models import Message


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
