"""What the app does, as plain functions: views, commands and the admin call these."""

import asyncio
import itertools
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.db import transaction
from django.db.models import Model, QuerySet
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

from chat import attachments, branches, conf, context, db
from chat import tools as tools_module
from chat.errors import Invalid, NotFound, TooLarge
from chat.models import Attachment, Conversation, Message
from chat.providers import Prompt, Turn, registry
from chat.providers.base import Attachment as ProviderAttachment
from chat.providers.registry import ModelInfo
from chat.replies import generation
from chat.text import unstorable
from chat.titles import conversation_title_improve_later, title_from, title_of_files

if TYPE_CHECKING:
    from chat.admission import Admission

log = logging.getLogger("chat.services")


@dataclass(frozen=True)
class Owner:
    """Who asks: a logged-in user, or an anonymous visitor known by a token in its session."""

    user_id: int | None = None
    visitor: str | None = None

    def conversations(self) -> QuerySet[Conversation]:
        if self.user_id is not None:
            return Conversation.objects.filter(user_id=self.user_id)
        if self.visitor:
            return Conversation.objects.filter(user__isnull=True, visitor=self.visitor)
        return Conversation.objects.none()

    def fields(self) -> dict:
        if self.user_id is not None:
            return {"user_id": self.user_id, "visitor": ""}
        return {"user": None, "visitor": self.visitor or ""}

    @property
    def key(self) -> str:
        """What the limits count this owner as (chat/ratelimit), and the admin looks up."""
        return f"user:{self.user_id}" if self.user_id is not None else f"visitor:{self.visitor or ''}"


def parse_id(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"No {what} with id {value!r}.") from None


def check_text(key: str, value: str) -> str:
    """Refuse text that no database can store, naming the field."""
    problem = unstorable(value)
    if problem:
        raise Invalid(f"'{key}' {problem}; remove it and send again.")
    return value


def validate_content(content: object) -> str:
    if content is None:
        raise Invalid("The message needs a 'content' field with the text to send.")
    if not isinstance(content, str):
        raise Invalid("'content' must be a string.")
    check_text("content", content)
    if not content.strip():
        raise Invalid("The message is empty: write something to send.")
    limit = conf.get_int("CHAT_MAX_CONTENT_CHARS")
    if len(content) > limit:
        raise TooLarge(f"The message is {len(content):,} characters long; the limit is {limit:,}.")
    return content


def validate_send(data: dict) -> tuple[str, list[uuid.UUID]]:
    """A send's `content` and `attachments` (file ids): the content may be empty only when
    files go with it (a picture with no words is a question too)."""
    ids = attachments.attachment_ids(data)
    content = data.get("content")
    if ids and (content is None or (isinstance(content, str) and not content.strip())):
        return check_text("content", content or ""), ids
    return validate_content(content), ids


def _optional_text(data: dict, key: str, limit: int | None = None) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Invalid(f"'{key}' must be a string.")
    if limit is not None and len(value) > limit:
        raise Invalid(f"'{key}' is longer than {limit} characters.")
    return check_text(key, value)


# --- conversations ------------------------------------------------------------------------


def _model_field(data: dict) -> str | None:
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise Invalid("'model' must be a string.")
    return model if model is None else check_text("model", model)


def _model_info(conversation: Conversation, model: str | None) -> ModelInfo:
    """The model a client asked for, else the conversation's while it is offered, else the default."""
    if model is None:
        offered = {m.id for m in registry.available_models()}
        model = conversation.model if conversation.model in offered else None
    return registry.resolve(model)


def _conversation_new(*, owner: Owner, data: dict) -> Conversation:
    """A valid conversation, not saved yet."""
    info = registry.resolve(_model_field(data))
    if data.get("system_prompt") is None:
        system_prompt = conf.get("CHAT_SYSTEM_PROMPT")
    else:
        system_prompt = _optional_text(data, "system_prompt", conf.get_int("CHAT_MAX_CONTENT_CHARS"))
    return Conversation(
        **owner.fields(),
        title=_optional_text(data, "title", 200).strip(),
        system_prompt=system_prompt,
        model=info.id,
    )


def conversation_new(*, owner: Owner, data: dict) -> Conversation:
    """A valid conversation, not saved yet: message_send stores it with its first message."""
    return _conversation_new(owner=owner, data=data)


def conversation_create(*, owner: Owner, data: dict) -> Conversation:
    conversation = _conversation_new(owner=owner, data=data)
    conversation.save(force_insert=True)
    return conversation


async def conversation_start(
    *, owner: Owner, data: dict, admission: "Admission | None" = None
) -> tuple[Conversation, Message, Message]:
    """Create a conversation and send its first message (`content`): both, or nothing."""
    validate_send(data)
    conversation = _conversation_new(owner=owner, data=data)
    send = {key: data[key] for key in ("content", "attachments") if key in data}
    user, assistant = await message_send(
        owner=owner, conversation=conversation, data=send, admission=admission
    )
    return conversation, user, assistant


def conversations_claim(*, user_id: int, visitor: str) -> int:
    """A visitor who signs in: the conversations it had as a visitor become the user's.

    One statement, so two tabs signing in at once both end with every conversation claimed.
    """
    if not visitor:
        return 0
    attachments.attachments_claim(user_id=user_id, visitor=visitor)
    return Conversation.objects.filter(user__isnull=True, visitor=visitor).update(user_id=user_id, visitor="")


def conversation_list(*, owner: Owner) -> list[Conversation]:
    return list(owner.conversations().order_by("-updated_at"))


def conversation_get(*, owner: Owner, conversation_id: str, messages: bool = False) -> Conversation:
    """One of the owner's conversations; with `messages`, its current branch too (`.branch`)."""
    pk = parse_id(conversation_id, "conversation")
    conversation = owner.conversations().filter(pk=pk).first()
    if conversation is None:
        raise NotFound(f"No conversation with id {conversation_id}.")
    if messages:
        branches.conversation_branch_load(conversation)
    return conversation


def conversation_branch(*, owner: Owner, conversation_id: str, data: dict) -> Conversation:
    """Make the branch through `message_id` current, down to its newest leaf; stored, so a
    reload shows it. Not activity: the conversation's place in the list stays. A reply still
    being generated on another branch goes on."""
    conversation = conversation_get(owner=owner, conversation_id=conversation_id)
    if "message_id" not in data:
        raise Invalid('Send {"message_id": "..."} to choose the branch through that message.')
    message = branches.message_of(conversation, data["message_id"], key="message_id")
    shape = branches.tree(conversation.pk)
    leaf = shape.newest_leaf(message.pk)
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf_id=leaf)
    conversation.current_leaf_id = leaf
    conversation.branch = branches.branch_messages(conversation, shape)
    return conversation


async def conversation_delete(*, owner: Owner, conversation_id: str) -> None:
    """Delete a conversation; a reply still running in it is stopped first."""
    conversation = await sync_to_async(conversation_get)(owner=owner, conversation_id=conversation_id)
    running = conversation.messages.filter(status=Message.Status.STREAMING)
    async for reply_id in running.values_list("id", flat=True):
        if not await generation.reply_cancel(str(reply_id)):
            await generation.reply_stop_elsewhere(str(reply_id))
    # The writes go to the writer thread(s), as every write of the app (see message_send).
    await db.run(running.update, stop_requested=True)  # replies generated by other processes
    await db.run(conversation.delete)


# --- messages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fork:
    """Where a new message goes: under `parent_id` (created at `parent_at`), beside `siblings`."""

    parent_id: uuid.UUID | None = None
    parent_at: datetime | None = None
    siblings: tuple[uuid.UUID, ...] = ()

    def created_at(self, now: datetime) -> datetime:
        """Never before the parent (chat/branches.py), whatever another machine's clock said."""
        if self.parent_at is None:
            return now
        return max(now, self.parent_at + timedelta(microseconds=1))


CURRENT = object()  # _prompt's leaf: the conversation's current one


def _prompt(
    conversation: Conversation,
    info: ModelInfo,
    new: str | None = None,
    leaf: object = CURRENT,
    files: tuple[Attachment, ...] = (),
) -> tuple[Prompt, Fork]:
    """The system prompt, then the newest turns of the branch ending at `leaf` (and `new`) that
    fit the budget, oldest dropped first; and the fork of a message sent after that branch.

    Read before the write, off the writer thread: the writer only inserts, and a long
    conversation costs its own send the budget's rows, nobody else anything.
    """
    stored = conversation.current_leaf_id if leaf is CURRENT else leaf
    # A conversation being created has no history to read (create-and-send, issue 14), nor
    # has a new version of its first message.
    read = not conversation._state.adding and leaf is not None
    sent = attachments.provider_attachments(files)  # the new message's files' bytes
    kept, seen = _branch_fit(conversation, new, stored if read else None, read=read, files=sent)
    if read and "leaf" not in seen and leaf is CURRENT and stored is not None:
        # A current leaf deleted by hand: the newest message's branch, as if none were stored.
        log.warning("Conversation %s: its current leaf %s is gone", conversation.pk, stored)
        kept, seen = _branch_fit(conversation, new, None, read=True, files=sent)
    kept = _with_files(kept, seen.get("turns", []), info, new=new is not None)
    fork = Fork(*seen["leaf"]) if "leaf" in seen else Fork()
    # The tools this model may call (issue 12): CHAT_TOOLS, and the demo's own example.
    tools = tools_module.specs_for(info.provider)
    return Prompt(model=info.name, system=conversation.system_prompt, turns=kept, tools=tools), fork


def _branch_fit(
    conversation: Conversation,
    new: str | None,
    leaf_id: uuid.UUID | None,
    *,
    read: bool,
    files: tuple[ProviderAttachment, ...] = (),
) -> tuple[tuple[Turn, ...], dict]:
    """The turns of the branch ending at `leaf_id` that fit (the new message with `files`), and
    what the reading saw (context.turns_newest_first's `seen`)."""
    seen: dict = {}
    history = context.turns_newest_first(conversation.pk, leaf_id, seen=seen) if read else iter(())
    turns = history if new is None else itertools.chain([Turn("user", new, attachments=files)], history)
    kept = context.fit_newest(conversation.system_prompt, turns, conf.get_int("CHAT_CONTEXT_CHARS"))
    if "leaf" not in seen:
        next(history, None)  # the new message alone filled the budget: read as far as the leaf
    return kept, seen


def _with_files(turns: tuple[Turn, ...], ids: list, info: ModelInfo, *, new: bool) -> tuple[Turn, ...]:
    """The kept turns of the history with their files (one query, bytes read from the storage;
    none for turns the budget left out). The question answered may not hold images for a model
    without vision (400); earlier turns' images are left out for it, their text stays."""
    history = len(turns) - (1 if new else 0)  # the turns read that were kept, oldest first
    read = list(zip(ids, reversed(turns[:history]), strict=False))  # `ids` are newest first
    found = attachments.attachments_of_messages(pk for pk, turn in read if turn.role == "user")
    result = list(turns)
    for index, (pk, turn) in enumerate(read):
        if pk in found:
            result[history - 1 - index] = replace(
                turn, attachments=attachments.provider_attachments(found[pk])
            )
    if not info.vision and result:
        question = result[-1]
        if any(a.is_image for a in question.attachments):
            raise Invalid(
                f"The model {info.id} cannot see images: choose a model that can to answer this message."
            )
        result = [
            replace(t, attachments=tuple(a for a in t.attachments if not a.is_image)) if t.attachments else t
            for t in result
        ]
    return tuple(result)


def _insert(rows: list[Model]) -> None:
    """New rows of one model: one INSERT for them all (`bulk_create`: a turn's two messages in
    2.1M instructions on SQLite, against 2.6M as two saves), unless a receiver (a host
    project's) listens to the model's saves, which `bulk_create` does not send: then `save()`
    each, so that it hears them as it always did."""
    model = type(rows[0])
    if pre_save.has_listeners(model) or post_save.has_listeners(model):
        for row in rows:
            row.save(force_insert=True)
    else:
        model.objects.bulk_create(rows)


def _add_reply(
    conversation: Conversation,
    info: ModelInfo,
    *,
    now,
    created_at=None,
    title: str | None = None,
    just_created: bool = False,
    with_question: Message | None = None,
    parent_id: uuid.UUID | None = None,
    reply_id: uuid.UUID | None = None,
) -> Message:
    """In the caller's transaction: a `streaming` reply under `parent_id` and the conversation's
    activity, the reply as its current leaf; and `with_question`, the user's message (the
    reply's parent then), inserted with it (one INSERT instead of two)."""
    assistant = Message(
        id=reply_id or uuid.uuid4(),
        conversation_id=conversation.pk,  # not kept on the reply: an open stream holds the reply
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=info.id,
        created_at=created_at or now,
        updated_at=now,
        parent_id=with_question.pk if with_question is not None else parent_id,
    )
    _insert([assistant] if with_question is None else [with_question, assistant])
    changes = {"updated_at": now, "model": info.id, "current_leaf_id": assistant.pk}
    if title:
        changes["title"] = title
    if not just_created:  # a conversation inserted in this transaction has these already
        Conversation.objects.filter(pk=conversation.pk).update(**changes)
    for key, value in changes.items():
        setattr(conversation, key, value)
    return assistant


def _store_turn(
    *,
    conversation: Conversation,
    content: str,
    info: ModelInfo,
    fork: Fork = Fork(),
    files: list[Attachment] | None = None,
) -> tuple[Message, Message]:
    now = timezone.now()
    at = fork.created_at(now)
    title = None if conversation.title else (title_from(content) or title_of_files(files))
    with transaction.atomic():
        new = conversation._state.adding
        user = Message(
            conversation=conversation,
            role=Message.Role.USER,
            content=content,
            model=info.id,
            created_at=at,
            parent_id=fork.parent_id,
        )
        reply_id = uuid.uuid4()
        if new:  # a new conversation is stored with its first message, its activity included
            conversation.updated_at, conversation.model = now, info.id
            conversation.current_leaf_id = reply_id
            conversation.title = title or conversation.title
            conversation.save(force_insert=True)
        # One microsecond later, so that ordering by time keeps question before answer.
        assistant = _add_reply(
            conversation,
            info,
            now=now,
            created_at=at + timedelta(microseconds=1),
            reply_id=reply_id,
            title=title,
            just_created=new,
            with_question=user,
        )
        # The files go with the question in the same transaction: a send that fails keeps them unsent.
        attachments.attachments_bind(attachments=files or [], message=user)
    user.sibling_ids = [*fork.siblings, user.pk]
    user.attachment_list = list(files or [])
    assistant.sibling_ids = [assistant.pk]
    return user, assistant


async def message_send(
    *,
    owner: Owner,
    conversation_id: str | None = None,
    conversation: Conversation | None = None,
    data: dict,
    admission: "Admission | None" = None,
    leaf: object = CURRENT,
    siblings: tuple[uuid.UUID, ...] = (),
) -> tuple[Message, Message]:
    """Store the user's message and a `streaming` reply, and start generating it.

    The message follows the current leaf, or `leaf` (an edit: the edited message's parent,
    beside its `siblings`). `admission` (the limits and the answer cache) is checked before
    anything is stored.
    """
    content, file_ids = validate_send(data)
    model = _model_field(data)
    if conversation is None:
        conversation = await sync_to_async(conversation_get)(owner=owner, conversation_id=conversation_id)
    info = _model_info(conversation, model)
    provider = registry.get_provider(info)
    files: list[Attachment] = []
    if file_ids:  # checked before anything is counted, stored or called
        files = await sync_to_async(attachments.attachments_to_send)(owner=owner, ids=file_ids)
        attachments.vision_check(attachments=files, info=info)
    untitled = not conversation.title
    if admission is not None:
        await admission.admit()
    if conversation._state.adding and not files:  # no history to read: no thread hop either (issue 14)
        prompt, fork = _prompt(conversation, info, new=content)
    else:  # the files' bytes are read from the storage on a thread too
        prompt, fork = await sync_to_async(_prompt)(
            conversation, info, new=content, leaf=leaf, files=tuple(files)
        )
    if siblings:
        fork = replace(fork, siblings=siblings)
    # On the replies' writer thread(s): on SQLite one writer means writes queue instead of
    # meeting in SQLite's lock, whose busy handler sleeps in steps of up to 100 ms.
    user, assistant = await db.run(
        _store_turn, conversation=conversation, content=content, info=info, fork=fork, files=files
    )
    reply = await generation.reply_start(
        reply_id=str(assistant.id),
        provider=provider,
        prompt=prompt,
        admission=admission,
        message=assistant,
        conversation=conversation,
        owner=owner,
    )
    assistant.cached = admission is not None and admission.cached
    if untitled:
        conversation_title_improve_later(
            conversation=conversation,
            info=info,
            content=content or title_of_files(files),
            reply_id=str(assistant.id),
            reply=reply,
            owner=owner.key,
            ip=admission.ip if admission is not None else None,
        )
    return user, assistant


def message_get(*, owner: Owner, message_id: str, replies_only: bool = False) -> Message:
    """One of the owner's messages, by its id alone (one row, not its conversation's)."""
    pk = parse_id(message_id, "message")
    messages = Message.objects.filter(pk=pk, conversation__in=owner.conversations())
    if replies_only:
        messages = messages.filter(role=Message.Role.ASSISTANT)
    message = messages.first()
    if message is None:
        raise NotFound(f"No {'reply' if replies_only else 'message'} with id {message_id}.")
    return message


def reply_get(*, owner: Owner, message_id: str) -> Message:
    return message_get(owner=owner, message_id=message_id, replies_only=True)


async def reply_stop(*, owner: Owner, message_id: str) -> Message:
    """Stop a reply, keeping its partial text; a finished reply is returned as it is."""
    message = await sync_to_async(reply_get)(owner=owner, message_id=message_id)
    if message.status != Message.Status.STREAMING:
        return message
    if not await generation.reply_cancel(str(message.pk)):
        # Generated by another process: told at once through Redis, and by the flag, which
        # it sees at its next checkpoint (without Redis, or if the message is lost).
        await db.run(
            Message.objects.filter(pk=message.pk, status=Message.Status.STREAMING).update, stop_requested=True
        )
        await generation.reply_stop_elsewhere(str(message.pk))
        interval = conf.get_float("CHAT_CHECKPOINT_INTERVAL")
        deadline = asyncio.get_running_loop().time() + conf.stale_after() + interval
        while asyncio.get_running_loop().time() < deadline:
            await message.arefresh_from_db()
            if message.status != Message.Status.STREAMING:
                return message
            await asyncio.sleep(min(interval / 4, 0.1))
    await message.arefresh_from_db()
    return message


# --- the page: rename, answer again, edit and resend, titles by the model -----------------


def conversation_rename(*, owner: Owner, conversation_id: str, data: dict) -> Conversation:
    """Set a conversation's title; renaming is not activity, so its place in the list stays."""
    if "title" not in data:
        raise Invalid('Send {"title": "..."} to rename the conversation.')
    title = " ".join(_optional_text(data, "title", 200).split())
    if not title:
        raise Invalid("The title is empty: write a few words.")
    conversation = conversation_get(owner=owner, conversation_id=conversation_id)
    Conversation.objects.filter(pk=conversation.pk).update(title=title)
    conversation.title = title
    return conversation


def _store_reply(*, conversation: Conversation, info: ModelInfo, fork: Fork) -> Message:
    now = timezone.now()
    with transaction.atomic():
        return _add_reply(
            conversation, info, now=now, created_at=fork.created_at(now), parent_id=fork.parent_id
        )


def _regenerated(conversation: Conversation, data: dict) -> Message:
    """The user message to answer again: the parent of the reply named, else of the current
    branch's last reply (or its last message, a question left without a reply)."""
    if data.get("message_id") is not None:
        reply = branches.message_of(conversation, data["message_id"], key="message_id", role="assistant")
    else:
        shape = branches.tree(conversation.pk)
        leaf = shape.leaf(conversation.current_leaf_id)
        if leaf is None:
            raise Invalid("This conversation has no message to answer again.")
        reply = Message.objects.get(pk=leaf)
        if reply.role == Message.Role.USER:
            return reply
    user = Message.objects.filter(
        pk=reply.parent_id, conversation_id=conversation.pk, role=Message.Role.USER
    ).first()
    if user is None:
        raise Invalid("This reply answers no message of yours: there is nothing to answer again.")
    return user


async def reply_regenerate(
    *, owner: Owner, conversation_id: str, data: dict, admission: "Admission | None" = None
) -> tuple[Message, Message]:
    """Answer a user message again: a new reply beside the old ones, which stay (a reply still
    running goes on). The model sees the branch up to that message only."""
    conversation = await sync_to_async(conversation_get)(owner=owner, conversation_id=conversation_id)
    info = _model_info(conversation, _model_field(data))
    user = await sync_to_async(_regenerated)(conversation, data)
    files = await sync_to_async(attachments.attachments_load)(user)
    attachments.vision_check(attachments=files, info=info)  # before anything is counted
    if admission is not None:
        await admission.admit()
    prompt, fork = await sync_to_async(_prompt)(conversation, info, leaf=user.pk)
    await sync_to_async(branches.sibling_ids)(user)
    assistant = await db.run(_store_reply, conversation=conversation, info=info, fork=fork)
    assistant.sibling_ids = await sync_to_async(branches.sibling_ids)(assistant)
    provider = registry.get_provider(info)
    await generation.reply_start(
        reply_id=str(assistant.id),
        provider=provider,
        prompt=prompt,
        admission=admission,
        message=assistant,
        conversation=conversation,
        owner=owner,
    )
    return user, assistant


async def message_edit(
    *, owner: Owner, conversation_id: str, data: dict, admission: "Admission | None" = None
) -> tuple[Message, Message]:
    """Send `content` as a new version of any user message (`edit`): a sibling of it, answered
    with the branch up to that message's parent; the old message and its replies stay."""
    validate_send(data)
    conversation = await sync_to_async(conversation_get)(owner=owner, conversation_id=conversation_id)
    _model_info(conversation, _model_field(data))  # an unknown model fails before anything is stored
    edited = await sync_to_async(branches.message_of)(
        conversation, data.get("edit"), key="edit", role=Message.Role.USER
    )
    siblings = await sync_to_async(branches.sibling_ids)(edited)
    send = {key: data[key] for key in ("content", "model", "attachments") if key in data}
    return await message_send(
        owner=owner,
        conversation=conversation,
        data=send,
        admission=admission,
        leaf=edited.parent_id,
        siblings=tuple(siblings),
    )
