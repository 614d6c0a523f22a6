"""`manage.py chat "question"`: a terminal client; the reply streams to stdout as it comes.

It goes through the same services as the page, so everything is stored and the admin shows
it. A conversation it starts belongs to no user: its owner is the anonymous visitor `cli`,
so it shows in the admin and on no one's page. `--conversation ID` continues any
conversation, whoever owns it (whoever runs manage.py has the database anyway), from its
current branch (contract v3, "Branches"): the one its page shows. `--branch MESSAGE_ID` first
makes the branch through that message current; `--regenerate` answers the last message of
the current branch again, a new version beside the old reply (no question then).
`--attach PATH` (repeatable) sends a file with the question, judged and stored as the page's
uploads are (owner: the conversation's owner, `cli` for a new one).
Ctrl-C stops the reply, which is kept as `stopped`, as the page's Stop button does.
"""

import asyncio
import sys
from pathlib import Path

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat import attachments, db, services
from chat.errors import ChatError
from chat.eventlog import End, Text, get_event_log
from chat.models import Conversation
from chat.providers import registry
from chat.replies import generation
from chat.runtime import runtime
from chat.services import Owner
from chat.tools.mcp_servers import mcp_servers

CLI_VISITOR = "cli"


class Command(BaseCommand):
    help = "Ask a model from the terminal; the reply streams to stdout and is stored like the page's."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("question", nargs="?", help="What to ask; read from stdin when left out.")
        parser.add_argument("-c", "--conversation", metavar="ID", help="Continue this conversation.")
        parser.add_argument("-m", "--model", metavar="ID", help="A model id, as --list-models shows.")
        parser.add_argument("--system", metavar="TEXT", help="The system prompt of a new conversation.")
        parser.add_argument("--list-models", action="store_true", help="List the models offered, and exit.")
        parser.add_argument(
            "--branch",
            metavar="MESSAGE_ID",
            help="With --conversation: continue the branch through this message (it becomes current).",
        )
        parser.add_argument(
            "--attach",
            metavar="PATH",
            action="append",
            default=[],
            help="Send this file with the question (an image, a PDF or a text file); repeatable.",
        )
        parser.add_argument(
            "--regenerate",
            action="store_true",
            help="With --conversation: answer its last message again, beside the old reply.",
        )

    def handle(self, *args, **options) -> None:
        if options["list_models"]:
            default = registry.default_model()
            for model in registry.available_models():
                self.stdout.write(model.id + ("  (default)" if model.id == default else ""))
            return
        if (options["branch"] or options["regenerate"]) and not options["conversation"]:
            raise CommandError("--branch and --regenerate need --conversation ID.")
        question = options["question"]
        if options["regenerate"]:
            if options["attach"]:
                raise CommandError("--regenerate answers with the question's own files: leave --attach out.")
            if question is not None:
                raise CommandError("--regenerate answers the last message again: leave the question out.")
        elif question is None and options["attach"]:
            question = ""  # files alone are a question too
        elif question is None:
            if sys.stdin.isatty():
                raise CommandError('Say what to ask: manage.py chat "your question"')
            question = sys.stdin.read()
        try:
            failed = asyncio.run(self.chat_then_stop(question, options))
        except ChatError as exc:
            raise CommandError(exc.message) from None
        except KeyboardInterrupt:
            self.stderr.write("\n[stopped]")
            sys.exit(130)
        if failed:
            sys.exit(1)

    async def chat_then_stop(self, question: str, options: dict) -> bool:
        """What runs (the reply engine, its threads) stops with the command, as with a server."""
        try:
            await mcp_servers.refresh()  # the MCP servers' tools, as a server lists them at its start
            return await self.chat(question, options)
        finally:
            await runtime.stop()

    async def chat(self, question: str, options: dict) -> bool:
        """Send, print the reply as it streams, then a summary on stderr; True if the model failed."""
        files = []
        if options["attach"] and not options["conversation"]:  # a file refused leaves no conversation
            files = await sync_to_async(self.upload)(Owner(visitor=CLI_VISITOR), options["attach"])
        conversation = await sync_to_async(self.conversation)(options)
        model = {"model": options["model"]} if options["model"] else {}
        owner = Owner(user_id=conversation.user_id, visitor=conversation.visitor)
        if options["branch"]:
            conversation = await db.run(
                services.conversation_branch,
                owner=owner,
                conversation_id=str(conversation.pk),
                data={"message_id": options["branch"]},
            )
        if options["regenerate"]:
            _, reply = await services.reply_regenerate(
                owner=owner, conversation_id=str(conversation.pk), data=model
            )
        else:
            data = {"content": question, **model}
            if options["attach"]:
                files = files or await sync_to_async(self.upload)(owner, options["attach"])
                data["attachments"] = [str(f.pk) for f in files]
            _, reply = await services.message_send(owner=owner, conversation=conversation, data=data)
        end = await self.follow(str(reply.pk))
        self.stdout.write("")
        usage = f" · {end.usage['input_tokens']}+{end.usage['output_tokens']} tokens" if end.usage else ""
        self.stderr.write(f"[{end.status}] conversation {conversation.pk} · {reply.model}{usage}")
        if end.error:
            self.stderr.write(end.error)
        return end.error is not None

    async def follow(self, reply_id: str) -> End:
        subscription = await get_event_log().subscribe(reply_id, 0)
        try:
            while True:
                item = await subscription.next(timeout=1.0)
                if isinstance(item, Text):
                    self.stdout.write(item.text, ending="")
                    self.stdout.flush()
                elif isinstance(item, End):
                    return item
        except asyncio.CancelledError:  # Ctrl-C: stop the reply, keeping its text
            await generation.reply_cancel(reply_id)
            raise
        finally:
            await subscription.close()

    def upload(self, owner: Owner, paths: list[str]) -> list:
        """Each file through the same service as the page's uploads (the same judgement, limits
        of size and kind); one refused stops the command before anything is sent."""
        files = []
        for name in paths:
            path = Path(name)
            try:
                if path.stat().st_size > attachments.max_bytes():
                    raise attachments.too_large(path.stat().st_size)
                data = path.read_bytes()
            except OSError as exc:
                raise CommandError(f"Cannot read {name}: {exc.strerror or exc}.") from None
            try:
                files.append(attachments.attachment_create(owner=owner, data=data, name=path.name))
            except ChatError as exc:
                raise CommandError(f"{name}: {exc.message}") from None
        return files

    def conversation(self, options: dict) -> Conversation:
        if options["conversation"]:
            pk = services.parse_id(options["conversation"], "conversation")
            conversation = Conversation.objects.filter(pk=pk).first()
            if conversation is None:
                raise CommandError(f"No conversation with id {options['conversation']}.")
            return conversation
        data = {"model": options["model"], "system_prompt": options["system"]}
        return services.conversation_create(
            owner=Owner(visitor=CLI_VISITOR), data={k: v for k, v in data.items() if v is not None}
        )
