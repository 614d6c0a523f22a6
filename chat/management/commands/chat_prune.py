"""Delete conversations with no activity for a while (running replies in them are stopped)."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from chat import history
from chat.models import Message


class Command(BaseCommand):
    help = "Delete conversations whose last activity is older than an age such as 90d, 12h or 2w."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True, help="Age: a number and s, m, h, d or w (90d).")
        parser.add_argument("--dry-run", action="store_true", help="Only say what would be deleted.")

    def handle(self, *args, older_than, dry_run=False, **options):
        try:
            age = history.parse_age(older_than)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        cutoff = (timezone.now() - age).isoformat(timespec="seconds")
        conversations = history.prunable(age)
        if dry_run:
            count = conversations.count()
            messages = Message.objects.filter(conversation__in=conversations).count()
            self.stdout.write(
                f"Would delete {count} conversation(s) and {messages} message(s) last active before {cutoff}."
            )
            return
        deleted = history.conversations_delete(conversations)
        self.stdout.write(
            f"Deleted {deleted.conversations} conversation(s) and {deleted.messages} message(s)"
            f" last active before {cutoff}."
        )
