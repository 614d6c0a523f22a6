"""Import a `chat_export` (or the admin's export action) file: all of it, or nothing."""

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from chat import history


class Command(BaseCommand):
    help = "Import conversations from a JSON export. Nothing is written if any part of it is invalid."

    def add_arguments(self, parser):
        parser.add_argument("file", help="The export file, or - for standard input.")
        parser.add_argument(
            "--create-users", action="store_true", help="Create missing users (with no usable password)."
        )
        parser.add_argument(
            "--skip-existing", action="store_true", help="Leave conversations that already exist as they are."
        )

    def handle(self, *args, file, create_users=False, skip_existing=False, **options):
        try:
            if file == "-":
                data = json.load(sys.stdin)
            else:
                with open(file, encoding="utf-8") as f:
                    data = json.load(f)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CommandError(f"{file} is not JSON: {exc}. Nothing was imported.") from exc
        try:
            result = history.conversations_import(
                data, create_users=create_users, skip_existing=skip_existing
            )
        except history.ImportRejected as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Imported {result.conversations} conversation(s) and {result.messages} message(s)"
            + (f"; skipped {result.skipped} already here" if result.skipped else "")
            + (f"; created {result.users_created} user(s)" if result.users_created else "")
            + "."
        )
