"""Export conversations as JSON: the contract's shapes plus owners, for `chat_import` elsewhere."""

import json
import uuid
from collections.abc import Callable, Iterable

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chat import history
from chat.models import Conversation


class Command(BaseCommand):
    help = "Export conversations with their messages as JSON (all of them, or those chosen)."

    def add_arguments(self, parser):
        parser.add_argument("-o", "--output", help="File to write (default: standard output).")
        parser.add_argument("--id", action="append", default=[], help="A conversation id (repeatable).")
        parser.add_argument("--user", action="append", default=[], help="Only this user's (repeatable).")
        parser.add_argument("--older-than", help="Only conversations idle longer than this, as 90d.")

    def handle(self, *args, output=None, id=(), user=(), older_than=None, **options):
        conversations = Conversation.objects.all()
        if id:
            try:
                conversations = conversations.filter(pk__in=[uuid.UUID(i) for i in id])
            except ValueError as exc:
                raise CommandError(f"Not a conversation id among {', '.join(id)}.") from exc
        if older_than:
            try:
                conversations = conversations.filter(pk__in=history.prunable(history.parse_age(older_than)))
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        if user:
            field = get_user_model().USERNAME_FIELD
            conversations = conversations.filter(**{f"user__{field}__in": user})
        records = history.conversations_export_chunks(conversations)
        if not output:
            write(lambda text: self.stdout.write(text, ending=""), history.header(), records)
            return
        with open(output, "w", encoding="utf-8") as f:
            count = write(f.write, history.header(), records)
        self.stderr.write(f"Exported {count} conversation(s) to {output}.")


def write(emit: Callable[[str], object], header: dict, records: Iterable[dict]) -> int:
    """The same document as json.dumps(), written one conversation at a time."""
    emit(json.dumps(header, ensure_ascii=False)[:-1] + ', "conversations": [')
    count = 0
    for record in records:
        emit(("\n" if count == 0 else ",\n") + json.dumps(record, ensure_ascii=False))
        count += 1
    emit("\n]}\n")
    return count
