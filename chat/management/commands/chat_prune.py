"""Delete conversations with no activity for a while (running replies in them are stopped), and
uploads never sent with a message (their files too)."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from chat import attachments, history
from chat.models import Message


class Command(BaseCommand):
    help = (
        "Delete conversations whose last activity is older than an age such as 90d, 12h or 2w, "
        "and files uploaded but never sent, older than --unsent-older-than (24h)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than", help="Age: a number and s, m, h, d or w (90d). Without it, no conversation goes."
        )
        parser.add_argument(
            "--unsent-older-than",
            default="24h",
            help="Uploads never sent with a message, older than this age, are deleted (default 24h).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Only say what would be deleted.")

    def handle(self, *args, older_than=None, unsent_older_than="24h", dry_run=False, **options):
        try:
            age = None if older_than is None else history.parse_age(older_than)
            unsent_age = history.parse_age(unsent_older_than)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if age is not None:
            self.conversations(age, dry_run)
        uploads = attachments.unsent(unsent_age)
        before = (timezone.now() - unsent_age).isoformat(timespec="seconds")
        if dry_run:
            self.stdout.write(f"Would delete {uploads.count()} upload(s) never sent, from before {before}.")
            return
        deleted = attachments.attachments_delete(uploads)
        self.stdout.write(f"Deleted {deleted} upload(s) never sent, from before {before}.")

    def conversations(self, age, dry_run: bool) -> None:
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
