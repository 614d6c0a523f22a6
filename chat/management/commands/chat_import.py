"""Import a `chat_export` (or the admin's export action) file: all of it, or nothing."""

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from chat import history_import

HELP = """Import conversations from a JSON export (chat_export, or the admin's export action).
Nothing is written if any part of it is invalid.

Import only files from a trusted source: a file says who owns each conversation and what was
said in it, and with --create-users it creates accounts. A conversation is attached to a user
that already exists here (staff and superusers included) only with --attach-users."""


class Command(BaseCommand):
    help = HELP

    def add_arguments(self, parser):
        parser.add_argument("file", help="The export file (UTF-8 JSON), or - for standard input.")
        parser.add_argument(
            "--attach-users",
            action="store_true",
            help="Attach conversations to users that already exist here, staff and superusers "
            "included (without it, a file naming an existing user is refused).",
        )
        parser.add_argument(
            "--create-users",
            action="store_true",
            help="Create missing users, with no usable password; their usernames must pass the "
            "user model's own checks.",
        )
        parser.add_argument(
            "--skip-existing", action="store_true", help="Leave conversations that already exist as they are."
        )

    def handle(self, *args, file, attach_users=False, create_users=False, skip_existing=False, **options):
        data = load(file)
        try:
            result = history_import.conversations_import(
                data, attach_users=attach_users, create_users=create_users, skip_existing=skip_existing
            )
        except history_import.ImportRejected as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Imported {result.conversations} conversation(s) and {result.messages} message(s)"
            + (f"; skipped {result.skipped} already here" if result.skipped else "")
            + (f"; created {result.users_created} user(s)" if result.users_created else "")
            + "."
        )


def load(file: str) -> Any:
    """The file's JSON, or a CommandError that says what is wrong with it."""
    name = "standard input" if file == "-" else file
    try:
        if file == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(file, "rb") as f:
                raw = f.read()
    except OSError as exc:
        raise CommandError(f"Cannot read {name}: {exc.strerror}. Nothing was imported.") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CommandError(
            f"{name} is not UTF-8 text (byte {exc.start} is not): an export is UTF-8 JSON. "
            "Nothing was imported."
        ) from None
    try:
        return json.loads(text)
    except RecursionError:
        raise CommandError(
            f"{name} nests lists or objects too deeply to be an export. Nothing was imported."
        ) from None
    except ValueError as exc:  # JSONDecodeError, and an integer of more than 4,300 digits
        raise CommandError(f"{name} is not JSON that can be read: {exc}. Nothing was imported.") from None
