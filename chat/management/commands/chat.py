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
It speaks the language its environment names (LANGUAGE, LC_ALL, LC_MESSAGES, LANG), among the
site's LANGUAGES (issue 32).
"""

import asyncio
import json
import sys
from pathlib import Path

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import translation
from django.utils.translation import gettext

from chat import attachments, db, services
from chat.approvals import approval_asked, approval_decide
from chat.errors import ChatError
from chat.eventlog import End, Text, get_event_log
from chat.languages import language_from_environment
from chat.management.phases import PhaseReporter
from chat.models import Conversation
from chat.providers import registry
from chat.replies import generation
from chat.runtime import runtime
from chat.services import Owner
from chat.tools.mcp_servers import mcp_servers

CLI_VISITOR = "cli"


class Command(BaseCommand):
    @property
    def help(self) -> str:  # argparse takes only str: looked up as the parser is made
        return gettext(
            "Ask a model from the terminal; the reply streams to stdout and is stored like the page's."
        )

    def run_from_argv(self, argv: list[str]) -> None:
        """From a shell (manage.py chat ...): --help and errors too in the terminal's language
        (the parser is made after this, so its texts are looked up in that language)."""
        translation.activate(language_from_environment())
        super().run_from_argv(argv)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "question",
            nargs="?",
            help=gettext(
                "What to ask. Left out, the question is read from stdin to its end when stdin is a "
                "pipe or a file (echo hi | manage.py chat); in a terminal the command asks for "
                "one and exits, it does not prompt."
            ),
        )
        parser.add_argument("-c", "--conversation", metavar="ID", help=gettext("Continue this conversation."))
        parser.add_argument(
            "-m", "--model", metavar="ID", help=gettext("A model id, as --list-models shows.")
        )
        parser.add_argument(
            "--system", metavar="TEXT", help=gettext("The system prompt of a new conversation.")
        )
        parser.add_argument(
            "--list-models", action="store_true", help=gettext("List the models offered, and exit.")
        )
        parser.add_argument(
            "--branch",
            metavar="MESSAGE_ID",
            help=gettext(
                "With --conversation: continue the branch through this message (it becomes current)."
            ),
        )
        parser.add_argument(
            "--attach",
            metavar="PATH",
            action="append",
            default=[],
            help=gettext("Send this file with the question (an image, a PDF or a text file); repeatable."),
        )
        parser.add_argument(
            "--reasoning",
            action="store_true",
            help=gettext(
                "Show the reply's phases and its reasoning text on stderr even when stderr is not "
                "a terminal (on one they show anyway, the reasoning dimmed). Stdout gets the reply only."
            ),
        )
        parser.add_argument(
            "--regenerate",
            action="store_true",
            help=gettext("With --conversation: answer its last message again, beside the old reply."),
        )
        decide = parser.add_mutually_exclusive_group()
        decide.add_argument(
            "--approve-tools",
            action="store_true",
            help=gettext("Run every tool call that waits for approval (CHAT_TOOLS_APPROVAL) without asking."),
        )
        decide.add_argument(
            "--deny-tools",
            action="store_true",
            help=gettext(
                "Refuse every tool call that waits for approval without asking. Without either "
                "flag the command asks on the terminal, and refuses when stdin is not one."
            ),
        )

    def handle(self, *args, **options) -> None:
        with translation.override(language_from_environment()):
            self.run(options)

    def run(self, options: dict) -> None:
        if options["list_models"]:
            default = registry.default_model()
            for model in registry.available_models():
                self.stdout.write(model.id + ("  " + gettext("(default)") if model.id == default else ""))
            return
        if (options["branch"] or options["regenerate"]) and not options["conversation"]:
            raise CommandError(gettext("--branch and --regenerate need --conversation ID."))
        question = options["question"]
        if options["regenerate"]:
            if options["attach"]:
                raise CommandError(
                    gettext("--regenerate answers with the question's own files: leave --attach out.")
                )
            if question is not None:
                raise CommandError(
                    gettext("--regenerate answers the last message again: leave the question out.")
                )
        elif question is None and options["attach"]:
            question = ""  # files alone are a question too
        elif question is None:
            if sys.stdin.isatty():
                raise CommandError(gettext('Say what to ask: manage.py chat "your question"'))
            question = sys.stdin.read()
        try:
            failed = asyncio.run(self.chat_then_stop(question, options))
        except ChatError as exc:
            raise CommandError(exc.message) from None
        except KeyboardInterrupt:
            self.stderr.write("\n[" + gettext("stopped") + "]")
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
        self.owner, self.options = owner, options  # what an approval needs (self.decide)
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
        end = await self.follow(str(reply.pk), self.phases(options))
        self.stdout.write("")
        summary = {"status": end.status, "id": conversation.pk, "model": reply.model, **(end.usage or {})}
        if end.usage:
            text = gettext(
                "[%(status)s] conversation %(id)s · %(model)s · %(input_tokens)s+%(output_tokens)s tokens"
            )
        else:
            text = gettext("[%(status)s] conversation %(id)s · %(model)s")
        self.stderr.write(text % summary)
        if end.error:
            self.stderr.write(end.error)
        return end.error is not None

    def phases(self, options: dict) -> PhaseReporter:
        """The reply's phases on stderr: on a terminal, or with --reasoning (issue 32)."""
        tty = self.stderr.isatty()

        def write(text: str) -> None:
            self.stderr.write(text, style_func=str, ending="")
            self.stderr.flush()

        color = tty and not options.get("no_color")
        return PhaseReporter(write, show=tty or options["reasoning"], color=color)

    async def follow(self, reply_id: str, phases: PhaseReporter | None = None) -> End:
        phases = phases or PhaseReporter(lambda text: None, show=False, color=False)
        subscription = await get_event_log().subscribe(reply_id, 0)
        try:
            while True:
                item = await subscription.next(timeout=1.0)
                if (call := approval_asked(item)) is not None:  # a tool call waits (issue 31)
                    await self.decide(reply_id, call)
                if isinstance(item, Text):
                    phases.text_written(item.text)
                    self.stdout.write(item.text, ending="")
                    self.stdout.flush()
                elif isinstance(item, End):
                    return item
                elif item is not None:
                    phases.event(item)
        except asyncio.CancelledError:  # Ctrl-C: stop the reply, keeping its text
            await generation.reply_cancel(reply_id)
            raise
        finally:
            await subscription.close()

    async def decide(self, reply_id: str, call: dict) -> None:
        """A tool call waits for the person (issue 31, CHAT_TOOLS_APPROVAL): asked about on the
        terminal, `Run name(arguments)? [y/N]`, when stdin is one; otherwise, or with
        --approve-tools or --deny-tools, decided without asking, and stderr says so."""
        shown = f"{call.get('name')}({json.dumps(call.get('arguments'), ensure_ascii=False)})"
        if self.options.get("approve_tools") or self.options.get("deny_tools"):
            approved = bool(self.options.get("approve_tools"))
            if approved:
                said = gettext("approved %(call)s: as the command was told")
            else:
                said = gettext("refused %(call)s: as the command was told")
            self.stderr.write("\n[" + said % {"call": shown} + "]")
        elif sys.stdin.isatty():
            answer = await self.ask("\n" + gettext("Run %(call)s? [y/N] ") % {"call": shown})
            approved = answer.strip().lower() in ("y", "yes")
        else:
            approved = False
            said = gettext("refused %(call)s: stdin is not a terminal; --approve-tools runs it")
            self.stderr.write("\n[" + said % {"call": shown} + "]")
        try:
            await approval_decide(
                owner=self.owner,
                message_id=reply_id,
                tool_call_id=call.get("tool_call_id"),
                approved=approved,
            )
        except ChatError as exc:  # it no longer waits (timed out meanwhile)
            self.stderr.write(f"[{exc.message}]")

    async def ask(self, prompt: str) -> str:
        """A line from the terminal, read without holding up the event loop (the reply's
        checkpoints and the wait's timeout go on), and given up with the command on Ctrl-C."""
        self.stderr.write(prompt, ending="")
        self.stderr.flush()
        loop, fd = asyncio.get_running_loop(), sys.stdin.fileno()
        line: asyncio.Future[str] = loop.create_future()
        loop.add_reader(fd, lambda: line.done() or line.set_result(sys.stdin.readline()))
        try:
            return await line
        finally:
            loop.remove_reader(fd)

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
                raise CommandError(
                    gettext("Cannot read %(name)s: %(reason)s.")
                    % {"name": name, "reason": exc.strerror or exc}
                ) from None
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
                raise CommandError(
                    gettext("No conversation with id %(id)s.") % {"id": options["conversation"]}
                )
            return conversation
        data = {"model": options["model"], "system_prompt": options["system"]}
        return services.conversation_create(
            owner=Owner(visitor=CLI_VISITOR), data={k: v for k, v in data.items() if v is not None}
        )
