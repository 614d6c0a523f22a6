"""The AI SDK's chat requests (`DefaultChatTransport`) as the app's own sends and replies.

The transport names a conversation by the chat's `id` and sends the whole history each time.
The server's history is the truth: only the last user message's text (and its files, when
they are this server's uploads) is taken; a regenerate names the reply to answer again. The
reply is then the same stored, limited, resumable reply as `POST .../messages` makes
(docs/API-extensions.md, "The AI SDK's protocol").
"""

import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.db import IntegrityError
from django.urls import Resolver404, resolve

from chat import branches, services
from chat.approvals import approval_decide
from chat.errors import Invalid, NotFound
from chat.models import Conversation, Message
from chat.services import Owner

if TYPE_CHECKING:
    from chat.admission import Admission

# uuid5 namespace of client ids: fixed forever, or every client id would name a new conversation.
CLIENT_ID_NAMESPACE = uuid.UUID("6f0c1b7e-5d1a-4c38-9b55-2f3e1c0a7d42")
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
TRIGGERS = ("submit-message", "regenerate-message")


@dataclass(frozen=True)
class UIRequest:
    """What a transport's POST asks: a conversation, and a new message or a regenerate."""

    chat_id: str
    trigger: str
    content: str = ""
    attachment_ids: tuple[str, ...] = ()
    message_id: str | None = None  # the reply to answer again (regenerate-message)
    model: str | None = None
    approvals: tuple[tuple[str, bool], ...] = ()  # (tool call id, approved) of the reply `message_id`


def conversation_pk(*, owner: Owner, chat_id: object) -> tuple[uuid.UUID, bool]:
    """The conversation a chat id names, and whether it is a client's own id.

    A UUID is one of ours (as the API gives them). Any other id (the package's generateId) is
    mapped to uuid5(namespace, owner's key + id): the same id names one conversation per owner,
    and two owners' same id never meet (their keys differ; the query checks the owner anyway).
    """
    ours = chat_id_check(chat_id)
    if ours is not None:
        return ours, False
    return uuid.uuid5(CLIENT_ID_NAMESPACE, f"{owner.key}\n{chat_id}"), True


def chat_id_check(chat_id: object) -> uuid.UUID | None:
    """A chat id's UUID if it is one (one of our conversations), None for a client's id; else 400."""
    if not isinstance(chat_id, str):
        raise Invalid("'id' must be the chat's id, a string.")
    try:
        return uuid.UUID(chat_id)
    except ValueError:
        pass
    if not CLIENT_ID.fullmatch(chat_id):
        raise Invalid("'id' must be a conversation id or 1 to 100 letters, digits, '-' or '_'.")
    return None


def ui_conversation_get(*, owner: Owner, chat_id: str) -> Conversation | None:
    """The owner's conversation of a chat id; None for a client id not used yet; 404 for a
    UUID that is not the owner's."""
    pk, client = conversation_pk(owner=owner, chat_id=chat_id)
    conversation = owner.conversations().filter(pk=pk).first()
    if conversation is None and not client:
        raise NotFound(f"No conversation with id {chat_id}.")
    return conversation


def _text_of(message: dict) -> tuple[str, list[str]]:
    """A UI message's text parts joined, and its file parts' urls."""
    parts = message.get("parts")
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise Invalid("The last message's 'parts' must be a list of objects.")
    texts, urls = [], []
    for part in parts:
        if part.get("type") == "text":
            if not isinstance(part.get("text"), str):
                raise Invalid("A text part's 'text' must be a string.")
            texts.append(part["text"])
        elif part.get("type") == "file":
            if not isinstance(part.get("url"), str):
                raise Invalid("A file part's 'url' must be a string.")
            urls.append(part["url"])
    return "\n\n".join(texts), urls


def attachment_id_of(url: str, host: str) -> str:
    """The id of an upload of this server named by its URL (`url` of POST /api/attachments),
    relative or on this host; anything else (a data: URL, another site) is refused."""
    refused = Invalid(
        "A file part's url must be the url of a file uploaded here first (POST "
        "/api/attachments gives it); data: URLs and other sites' files are not accepted."
    )
    parts = urlsplit(url)
    if parts.scheme not in ("", "http", "https") or (parts.netloc and parts.netloc != host):
        raise refused
    try:
        match = resolve(parts.path)
    except Resolver404:
        raise refused from None
    if match.url_name != "attachment" or match.app_names[-1:] != ["chat"]:  # this app's, not a host's
        raise refused
    return match.kwargs["attachment_id"]


def _server_id(message_id: str) -> None:
    """`messageId` (an edit's, a regenerate's) must be an id the server gave: a UUID."""
    try:
        uuid.UUID(message_id)
    except ValueError:
        raise Invalid(
            "'messageId' must name a message of this chat by the id the server gave it "
            "(GET /api/ui/chat/<id> lists them)."
        ) from None


def approvals_of(message: dict) -> tuple[tuple[str, bool], ...]:
    """A reply's tool parts the person answered (`approval-responded`): (call id, approved)."""
    parts = message.get("parts")
    found = []
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict) or part.get("state") != "approval-responded":
            continue
        approval, call_id = part.get("approval"), part.get("toolCallId")
        if (
            not isinstance(call_id, str)
            or not isinstance(approval, dict)
            or type(approval.get("approved")) is not bool
        ):
            raise Invalid(
                "An answered tool part needs its 'toolCallId' and 'approval': {'approved': true or false}."
            )
        found.append((call_id, approval["approved"]))
    if not found or not isinstance(message.get("id"), str):
        raise Invalid(
            "The last of 'messages' must be the user's message to send, or a reply with "
            "answered tool approvals."
        )
    return tuple(found)


def ui_request_parse(data: dict, *, host: str) -> UIRequest:
    """A transport's body, checked before anything is stored; a bad one is a 400."""
    chat_id, trigger = data.get("id"), data.get("trigger", "submit-message")
    if not isinstance(chat_id, str):
        raise Invalid("The body needs 'id', the chat's id (a string).")
    chat_id_check(chat_id)
    if trigger not in TRIGGERS:
        raise Invalid("'trigger' must be 'submit-message' or 'regenerate-message'.")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise Invalid("'model' must be a string.")
    message_id = data.get("messageId")
    if message_id is not None and not isinstance(message_id, str):
        raise Invalid("'messageId' must be a string.")
    if message_id is not None:
        _server_id(message_id)
    if trigger == "regenerate-message":
        return UIRequest(chat_id=chat_id, trigger=trigger, message_id=message_id, model=model)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        raise Invalid("'messages' must be a list of UI messages ending with the one to send.")
    if messages[-1].get("role") == "assistant":  # addToolApprovalResponse: the reply's decisions
        approvals = approvals_of(messages[-1])
        return UIRequest(
            chat_id=chat_id, trigger=trigger, message_id=messages[-1].get("id"), approvals=approvals
        )
    if messages[-1].get("role") != "user":
        raise Invalid("The last of 'messages' must be the user's message to send.")
    content, urls = _text_of(messages[-1])
    ids = tuple(attachment_id_of(url, host) for url in urls)
    return UIRequest(
        chat_id=chat_id,
        trigger=trigger,
        content=content,
        attachment_ids=ids,
        message_id=message_id,
        model=model,
    )


async def ui_send(*, owner: Owner, request: UIRequest, admission: "Admission") -> Message:
    """Send the request's message, edit one (`messageId`) or answer again; the reply,
    `streaming`, as POST .../messages (or `edit`, or .../regenerate) starts it."""
    conversation = await sync_to_async(ui_conversation_get)(owner=owner, chat_id=request.chat_id)
    data: dict[str, Any] = {} if request.model is None else {"model": request.model}
    if request.trigger != "regenerate-message":
        data["content"] = request.content
        if request.attachment_ids:
            data["attachments"] = list(request.attachment_ids)
    if request.trigger == "regenerate-message" or request.message_id is not None:
        if conversation is None:
            raise Invalid("This chat has no message yet to answer again or to edit.")
        if request.trigger == "regenerate-message":
            action, data["message_id"] = services.reply_regenerate, request.message_id
        else:  # an edit: a sibling of that message (contract v3, "Branches")
            action, data["edit"] = services.message_edit, request.message_id
        pk = str(conversation.pk)
        return (await action(owner=owner, conversation_id=pk, data=data, admission=admission))[1]
    if conversation is None:
        return await _first_send(owner=owner, request=request, data=data, admission=admission)
    return (
        await services.message_send(owner=owner, conversation=conversation, data=data, admission=admission)
    )[1]


async def _first_send(*, owner: Owner, request: UIRequest, data: dict, admission: "Admission") -> Message:
    """A client id's first message: its conversation is stored with it (both, or nothing)."""
    conversation = services.conversation_new(owner=owner, data=data)
    conversation.pk = conversation_pk(owner=owner, chat_id=request.chat_id)[0]
    try:
        return (
            await services.message_send(
                owner=owner, conversation=conversation, data=data, admission=admission
            )
        )[1]
    except IntegrityError:  # two first messages at once: the other made it; this one joins it
        conversation = await sync_to_async(ui_conversation_get)(owner=owner, chat_id=request.chat_id)
        if conversation is None:
            raise
    return (
        await services.message_send(owner=owner, conversation=conversation, data=data, admission=admission)
    )[1]


async def ui_approve(*, owner: Owner, request: UIRequest) -> Message:
    """The person's answers to the reply's waiting tool calls (chat/approvals.py): the reply,
    which goes on, to stream the rest of."""
    conversation = await sync_to_async(ui_conversation_get)(owner=owner, chat_id=request.chat_id)
    reply = await sync_to_async(services.message_get)(
        owner=owner, message_id=str(request.message_id), replies_only=True
    )
    if conversation is None or reply.conversation_id != conversation.pk:
        raise NotFound(f"No reply with id {request.message_id} in this chat.")
    for call_id, approved in request.approvals:
        await approval_decide(owner=owner, message_id=str(reply.pk), tool_call_id=call_id, approved=approved)
    return reply


def ui_streaming_reply(*, owner: Owner, chat_id: str) -> Message | None:
    """The reply being generated at the end of the chat's current branch, if any."""
    conversation = ui_conversation_get(owner=owner, chat_id=chat_id)
    if conversation is None or conversation.current_leaf_id is None:
        return None
    return Message.objects.filter(
        pk=conversation.current_leaf_id,
        conversation_id=conversation.pk,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
    ).first()


def ui_history(*, owner: Owner, chat_id: str) -> list[Message]:
    """The chat's current branch, root to leaf, files loaded (none for a client id not used yet)."""
    conversation = ui_conversation_get(owner=owner, chat_id=chat_id)
    if conversation is None:
        return []
    return branches.conversation_branch_load(conversation).branch
