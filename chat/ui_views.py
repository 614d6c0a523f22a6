"""The AI SDK's chat protocol over HTTP (`useChat`, `DefaultChatTransport`): parse, call
chat.uichat, answer in the UI message stream of chat.uistream. The same CSRF, cross-site,
ownership and limit rules as the rest of the API (chat.views.api, admission_for)."""

from collections.abc import AsyncIterator
from contextlib import aclosing

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from chat import uichat
from chat.eventlog import End, ToolCallStep
from chat.models import Message
from chat.proxies import client_ip
from chat.ratelimit import get_limiter
from chat.sse import sse_response
from chat.streams import reply_events
from chat.uistream import DONE, HEADERS, HEARTBEAT, UIEncoder, chunk_bytes, ui_message_json
from chat.views import admission_for, api, get_owner, read_json


async def ui_reply_stream(message: Message, decided: frozenset[str] = frozenset()) -> AsyncIterator[bytes]:
    """The reply from its start as UI chunks (the transport replays a whole message), then
    `[DONE]`; up to an approval request, where the reply waits. After approvals (`decided`), the
    rest only: the package adds it to the message it has, up to those tool calls."""
    encoder, before = UIEncoder(decided), set(decided)  # calls not reached yet: nothing sent
    metadata = {"conversationId": str(message.conversation_id), "model": message.model}
    yield b"".join(map(chunk_bytes, encoder.start(str(message.pk), metadata)))
    async with aclosing(reply_events(message)) as events:
        async for item in events:
            if item is None:
                yield HEARTBEAT
                continue
            chunks = encoder.chunks(item)  # the encoder's state follows what the client holds
            if before and not isinstance(item, End):  # the client has this already
                if isinstance(item, ToolCallStep):
                    before.discard(item.call_id)
                continue
            if chunks:
                yield b"".join(map(chunk_bytes, chunks))
            if encoder.paused:
                break
    yield DONE


def ui_response(stream: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = sse_response(stream)
    for name, value in HEADERS.items():
        response[name] = value
    return response


@api("POST")
async def ui_chat_view(request: HttpRequest) -> HttpResponse:
    """Send the last user message (or answer again) and stream the reply."""
    ui_request = uichat.ui_request_parse(read_json(request, required=True), host=request.get_host())
    owner = await get_owner(request, create=True)
    if ui_request.approvals:  # addToolApprovalResponse: decide, then the rest of that reply
        reply = await uichat.ui_approve(owner=owner, request=ui_request)
        return await _leased(request, ui_reply_stream(reply, frozenset(c for c, _ in ui_request.approvals)))
    cache = ui_request.trigger != "regenerate-message"  # answering again never reuses an answer
    async with admission_for(request, owner, cache=cache, stream=True) as admission:
        reply = await uichat.ui_send(owner=owner, request=ui_request, admission=admission)
    return ui_response(admission.hold_stream(ui_reply_stream(reply)))


@api("GET")
async def ui_chat_stream_view(request: HttpRequest, chat_id: str) -> HttpResponse:
    """The reply still being generated in the chat, from its start; 204 when there is none."""
    owner = await get_owner(request)
    reply = await sync_to_async(uichat.ui_streaming_reply)(owner=owner, chat_id=chat_id)
    if reply is None:
        return HttpResponse(status=204)
    return await _leased(request, ui_reply_stream(reply))


async def _leased(request: HttpRequest, stream: AsyncIterator[bytes]) -> HttpResponse:
    """A stream of a reply already running, counted as GET .../stream counts one."""
    limiter = get_limiter()
    lease = await limiter.open_stream(ip=client_ip(request))
    return ui_response(stream if lease is None else limiter.holding(lease, stream))


@api("GET")
async def ui_chat_history_view(request: HttpRequest, chat_id: str) -> HttpResponse:
    """The chat's current branch as UIMessages, for a page to load after a reload."""
    owner = await get_owner(request)
    messages = await sync_to_async(uichat.ui_history)(owner=owner, chat_id=chat_id)
    return JsonResponse({"messages": [ui_message_json(m) for m in messages]})
