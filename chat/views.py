"""HTTP views: parse, call a service, answer (../shared/API.md)."""

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from functools import wraps

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie
from django.views.decorators.http import require_safe
from django.views.defaults import server_error as server_error_page

from chat import approvals, attachments, conf, db, feedback, services, sharing
from chat.admission import Admission
from chat.branches import sibling_ids
from chat.errors import ChatError, CrossSite, Invalid, LoginRequired, MethodNotAllowed, NotFound, TooLarge
from chat.providers import registry
from chat.proxies import client_ip
from chat.ratelimit import get_limiter
from chat.search import conversation_search
from chat.serializers import attachment_json, conversation_json, message_json, search_hit_json
from chat.services import Owner
from chat.signals import VISITOR_KEY
from chat.sse import sse_response
from chat.streams import reply_stream

_OFFSET = re.compile(r"([0-9]{1,15})(?:\.([0-9]{1,15}))?")  # `T`, or `T.S` after a step (issue 12)
_csrf = CsrfViewMiddleware(lambda request: HttpResponse())

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

View = Callable[..., Awaitable[HttpResponse]]


def error_response(exc: ChatError) -> JsonResponse:
    response = JsonResponse({"error": exc.message, "code": exc.code, **exc.extra}, status=exc.status)
    for name, value in exc.headers.items():
        response[name] = value
    return response


def _csrf_protected(request: HttpRequest) -> HttpResponse:  # what CSRF checks are run against
    return HttpResponse()


_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _origin_allowed(origin: str) -> bool:
    """An origin the site accepts writes from: CORS's allowed origins, or Django's trusted ones."""
    if origin in getattr(settings, "CORS_ALLOWED_ORIGINS", ()):
        return True
    for trusted in settings.CSRF_TRUSTED_ORIGINS:  # Django's syntax: `https://*.example.com`
        scheme, _, host = trusted.partition("://")
        if origin == trusted:
            return True
        if host.startswith("*.") and origin.startswith(f"{scheme}://") and origin.endswith(host[1:]):
            return True
    return False


def cross_site(request: HttpRequest) -> str | None:
    """What shows that an unsafe request was sent by a page of another site, or None.

    Browsers say where a request comes from (`Origin`, `Sec-Fetch-Site`); a form on another
    site that posts here carries no cookies under SameSite=Lax, so the CSRF token check alone
    would let it act as a new visitor and replace the real one's session cookie.
    """
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.get_host()}":
        return None if _origin_allowed(origin) else f"its origin is {origin}"
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return f"the browser marks it {site}"
    return None


def api(*methods: str) -> Callable[[View], View]:
    """JSON errors for every failure; cross-site writes refused; CSRF as Django does it.

    A request with neither the session nor the CSRF cookie carries no authority to forge (it
    acts as a new anonymous visitor), so `curl` needs no token for its first request; a
    browser that has loaded a page always sends the token. A new visitor made by a request
    is kept in the session only if the request succeeds: a failed one leaves nothing.
    """

    def decorate(view: View) -> View:
        @wraps(view)
        async def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise MethodNotAllowed(
                        f"{request.method} is not allowed here; use {' or '.join(methods)}.",
                        headers={"Allow": ", ".join(methods)},
                    )
                if conf.get("CHAT_LOGIN_REQUIRED") and not (await request.auser()).is_authenticated:
                    raise LoginRequired("Sign in to use the chat: this server is for its users only.")
                if request.method not in _SAFE_METHODS:
                    # A form's token may be in its body, which Django's parser reads: on a thread.
                    if is_form(request):
                        refused = await sync_to_async(_refuse_forgery)(request)
                    else:
                        refused = _refuse_forgery(request)
                    if refused is not None:
                        return refused
                response = await view(request, *args, **kwargs)
            except ChatError as exc:
                return error_response(exc)
            visitor = getattr(request, "chat_new_visitor", None)
            if visitor is not None:
                await request.session.aset(VISITOR_KEY, visitor)
            return response

        return csrf_exempt(wrapper)

    return decorate


def _refuse_forgery(request: HttpRequest) -> HttpResponse | None:
    reason = cross_site(request)
    if reason is not None:
        raise CrossSite(
            f"This server does not accept this request from another site ({reason}); "
            "only its own pages and the origins it allows may send it."
        )
    cookies = settings.SESSION_COOKIE_NAME in request.COOKIES or settings.CSRF_COOKIE_NAME in request.COOKIES
    if cookies and is_form(request):
        form_files(request)  # what the CSRF check reads, with the parser's errors as 400s
    if cookies and _csrf.process_view(request, _csrf_protected, (), {}) is not None:
        return _csrf_refused()  # the contract's JSON error, whatever CSRF_FAILURE_VIEW answers
    return None


async def get_owner(request: HttpRequest, *, create: bool = False, finding: str | None = None) -> Owner:
    """Who asks. With `create`, a client without a visitor gets one (kept if the request succeeds).
    With `finding` (what the request looks up by id: "reply", "conversation"...), a client that
    can own nothing, neither signed in nor a visitor, gets a 404 that says why (`no_session`)."""
    user = await request.auser()
    if user.is_authenticated:
        return Owner(user_id=user.pk)
    visitor = await request.session.aget(VISITOR_KEY)
    if not visitor and create:
        visitor = request.chat_new_visitor = uuid.uuid4().hex
    if not visitor and finding is not None:
        raise no_session(request, finding)
    return Owner(visitor=visitor)


def no_session(request: HttpRequest, what: str) -> NotFound:
    """The 404 of a lookup by a client without a session: the same status, code and sentence
    whether the id exists or not (the sentence depends on the request alone), but one that
    says what is missing; a script that forgot its cookie jar read only "No reply" before."""
    # English, as every API error sentence is (the contract's; docs/API-extensions.md, "Languages").
    if settings.SESSION_COOKIE_NAME not in request.COOKIES:
        sentence = (
            "No %(what)s with this id in this session: the request carried no session cookie "
            "(send the cookie the page set, or sign in)."
        )
    else:
        sentence = (
            "No %(what)s with this id in this session: the session cookie it carried is new or "
            "has expired (send the cookie the page set, or sign in)."
        )
    return NotFound(sentence % {"what": what})


def admission_for(
    request: HttpRequest, owner: Owner, *, cache: bool = True, stream: bool | None = None
) -> Admission:
    """The limits (and the answer cache) of a request that would start a reply; a visitor made
    by this very request is a client without a session (held to one visitor's share of its address).
    `stream`: whether it answers with the stream, if not by its Accept header (chat/ui_views.py)."""
    newcomer = hasattr(request, "chat_new_visitor")
    stream = wants_stream(request) if stream is None else stream
    return Admission(owner=owner.key, ip=client_ip(request), newcomer=newcomer, stream=stream, cache=cache)


def body_limit() -> int:
    """The most bytes an API request's body may carry: CHAT_MAX_BODY_BYTES, or Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE where the host set that lower (`request.body` refuses more)."""
    limit = conf.get_int("CHAT_MAX_BODY_BYTES")
    django_limit = conf.get("DATA_UPLOAD_MAX_MEMORY_SIZE")
    return limit if django_limit is None else min(limit, django_limit)


def body_too_large(limit: int) -> TooLarge:
    """The 413 of a body over `limit`, the view's and chat.asgi.BodyLimit's alike."""
    return TooLarge(f"The request body is over the limit of {limit:,} bytes.")


def read_json(request: HttpRequest, *, required: bool) -> dict:
    limit = body_limit()
    too_large = body_too_large(limit)
    try:
        if int(request.META.get("CONTENT_LENGTH") or 0) > limit:
            raise too_large
        body = request.body
    except (ValueError, RequestDataTooBig):
        raise too_large from None
    if len(body) > limit:
        raise too_large
    if not body.strip():
        if required:
            raise Invalid('The request body is empty; send JSON such as {"content": "Hello"}.')
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"The request body is not valid JSON ({exc}).") from None
    except RecursionError:
        raise Invalid("The request body is JSON nested too deeply.") from None
    if not isinstance(data, dict):
        raise Invalid("The request body must be a JSON object.")
    return data


def wants_stream(request: HttpRequest) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


def parse_offset(request: HttpRequest) -> tuple[int, int | None]:
    """The place to resume from: a text offset `T`, or `T.S` after a reasoning or tool step
    (issue 12); S is None for a plain offset."""
    raw = request.headers.get("Last-Event-ID")
    if raw is None:
        raw = request.GET.get("last_event_id")
    if raw is None or not raw.strip():
        return 0, None
    match = _OFFSET.fullmatch(raw.strip())
    if match is None:
        raise Invalid(
            f"Last-Event-ID must be a non-negative integer (the offset of the text received), "
            f"or the id of a reasoning or tool event, not {raw!r}."
        )
    offset, side = match.groups()
    return int(offset), None if side is None else int(side)


async def _sent(
    request: HttpRequest, user_message, assistant_message, admission: Admission, extra: dict | None = None
) -> HttpResponse:
    if wants_stream(request):
        return sse_response(admission.hold_stream(reply_stream(assistant_message, 0)))
    body = {
        **(extra or {}),
        "user_message": message_json(user_message),
        "assistant_message": message_json(assistant_message),
        "stream_url": reverse("chat:stream", args=[assistant_message.pk]),
    }
    return JsonResponse(body, status=201)


# --- JSON API -----------------------------------------------------------------------------


@api("GET")
async def models_view(request: HttpRequest) -> HttpResponse:
    models = [m.as_dict() for m in registry.available_models()]
    return JsonResponse({"models": models, "default": registry.default_model()})


@api("GET", "POST")
async def conversations_view(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        owner = await get_owner(request)
        q = request.GET.get("q")
        if q is not None and q.strip():  # an extension: search (docs/API-extensions.md)
            hits = await sync_to_async(conversation_search)(owner=owner, q=q)
            return JsonResponse({"conversations": [search_hit_json(hit) for hit in hits]})
        conversations = await sync_to_async(services.conversation_list)(owner=owner)
        return JsonResponse({"conversations": [conversation_json(c) for c in conversations]})
    data = read_json(request, required=False)
    owner = await get_owner(request, create=True)
    if "content" not in data:
        conversation = await db.run(services.conversation_create, owner=owner, data=data)
        return JsonResponse(conversation_json(conversation), status=201)
    # An extension: create and send the first message in one request (all or nothing).
    async with admission_for(request, owner) as admission:
        conversation, user_message, assistant_message = await services.conversation_start(
            owner=owner, data=data, admission=admission
        )
    return await _sent(
        request, user_message, assistant_message, admission, extra=conversation_json(conversation)
    )


@api("GET", "PATCH", "DELETE")
async def conversation_view(request: HttpRequest, conversation_id: str) -> HttpResponse:
    owner = await get_owner(request, finding="conversation")
    if request.method == "DELETE":
        await services.conversation_delete(owner=owner, conversation_id=conversation_id)
        return HttpResponse(status=204)
    if request.method == "PATCH":  # an extension: rename (docs/API-extensions.md)
        data = read_json(request, required=True)
        conversation = await db.run(
            services.conversation_rename, owner=owner, conversation_id=conversation_id, data=data
        )
        return JsonResponse(conversation_json(conversation))
    conversation = await sync_to_async(services.conversation_get)(
        owner=owner, conversation_id=conversation_id, messages=True
    )
    data = conversation_json(conversation, messages=True)
    # An extension (docs/API-extensions.md, "Feedback and sharing"): the page's share dialog.
    token = await sync_to_async(sharing.share_token_of)(conversation)
    data["share_url"] = None if token is None else share_url(request, token)
    return JsonResponse(data)


@api("POST")
async def messages_view(request: HttpRequest, conversation_id: str) -> HttpResponse:
    data = read_json(request, required=True)
    owner = await get_owner(request, finding="conversation")
    # `edit`: a new version of one of your messages (contract v3, "Branches").
    send = services.message_edit if data.get("edit") is not None else services.message_send
    async with admission_for(request, owner) as admission:
        user_message, assistant_message = await send(
            owner=owner, conversation_id=conversation_id, data=data, admission=admission
        )
    return await _sent(request, user_message, assistant_message, admission)


@api("POST")
async def regenerate_view(request: HttpRequest, conversation_id: str) -> HttpResponse:
    """Answer again: a new reply beside the old one (contract v3, "Branches")."""
    data = read_json(request, required=False)
    owner = await get_owner(request, finding="conversation")
    async with admission_for(request, owner, cache=False) as admission:  # regenerate never reuses
        user_message, assistant_message = await services.reply_regenerate(
            owner=owner, conversation_id=conversation_id, data=data, admission=admission
        )
    return await _sent(request, user_message, assistant_message, admission)


@api("GET")
async def stream_view(request: HttpRequest, message_id: str) -> HttpResponse:
    offset, side = parse_offset(request)
    owner = await get_owner(request, finding="reply")
    message = await sync_to_async(services.reply_get)(owner=owner, message_id=message_id)
    if message.is_finished and offset > len(message.content):
        raise Invalid(
            f"Last-Event-ID {offset} is past the end of this reply ({len(message.content)} characters)."
        )
    limiter = get_limiter()
    lease = await limiter.open_stream(ip=client_ip(request))
    stream = reply_stream(message, offset, side)
    return sse_response(stream if lease is None else limiter.holding(lease, stream))


@api("GET")
async def message_view(request: HttpRequest, message_id: str) -> HttpResponse:
    """One message (docs/API-extensions.md: the page asks before it reconnects a stream)."""
    owner = await get_owner(request, finding="message")
    message = await sync_to_async(services.message_get)(owner=owner, message_id=message_id)
    await sync_to_async(sibling_ids)(message)
    await sync_to_async(attachments.attachments_load)(message)
    return JsonResponse(message_json(message))


@api("POST")
async def stop_view(request: HttpRequest, message_id: str) -> HttpResponse:
    owner = await get_owner(request, finding="reply")
    message = await services.reply_stop(owner=owner, message_id=message_id)
    await sync_to_async(sibling_ids)(message)
    return JsonResponse(message_json(message))


# --- pages and error handlers -------------------------------------------------------------


@ensure_csrf_cookie
def page_view(request: HttpRequest, conversation_id: str | None = None) -> HttpResponse:
    if not request.user.is_authenticated:
        if conf.get("CHAT_LOGIN_REQUIRED"):
            return redirect_to_login(request.get_full_path())
        # The visitor's identity now, not at its first send: the page's first requests, even
        # several at once from two tabs, then all act as this one visitor.
        if not request.session.get(VISITOR_KEY):
            request.session[VISITOR_KEY] = uuid.uuid4().hex
    context = {
        "page_title": conf.get("CHAT_PAGE_TITLE"),
        "conversation_id": conversation_id or "",
        "models": [m.as_dict() for m in registry.available_models()],
        "default_model": registry.default_model(),
        "max_attachment_bytes": conf.get_int("CHAT_MAX_ATTACHMENT_BYTES"),  # attachments.js
    }
    response = render(request, "chat/index.html", context)
    # Defence in depth: the page renders model output only through a sanitizer, and even so
    # no inline script, no other origin and no plugin may run on it.
    response["Content-Security-Policy"] = PAGE_CSP
    return response


@api("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
async def api_not_found(request: HttpRequest) -> HttpResponse:
    raise NotFound(f"Nothing here: {request.path}")


def server_error(request: HttpRequest) -> HttpResponse:
    """A 500 with DEBUG off (django.request logs the traceback; the answer never shows it)."""
    if request.path.startswith(reverse("chat:api")):
        body = {
            "error": "Something went wrong on the server; its log has the details.",
            "code": "internal_error",
        }
        return JsonResponse(body, status=500)
    return server_error_page(request)


def csrf_header_name() -> str:
    """CSRF_HEADER_NAME as a client writes it: `X-CSRFToken` for Django's `HTTP_X_CSRFTOKEN`."""
    meta = settings.CSRF_HEADER_NAME
    if meta == "HTTP_X_CSRFTOKEN":
        return "X-CSRFToken"
    return "-".join(part.capitalize() for part in meta.removeprefix("HTTP_").split("_"))


def _csrf_refused() -> HttpResponse:
    """The 403 `csrf`, saying how a script gets the token (it read only "needs the token")."""
    sentence = (
        "This request needs the CSRF token: GET the chat's page (%(page)s) to receive the "
        "%(cookie)s cookie, then send its value back in an %(header)s header, with the cookies "
        "(over HTTPS, also a Referer or Origin header of this site)."
    )
    names = {"page": reverse("chat:page"), "cookie": settings.CSRF_COOKIE_NAME, "header": csrf_header_name()}
    return JsonResponse({"error": sentence % names, "code": "csrf"}, status=403)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A CSRF_FAILURE_VIEW: the API's JSON error under the API, Django's own page elsewhere (a
    form of the admin or of a login page gets a page, not JSON)."""
    if request.path.startswith(reverse("chat:api")):
        return _csrf_refused()
    return django_csrf_failure(request, reason=reason)


# --- feedback and sharing (contract v3; chat/feedback.py, chat/sharing.py) ----------------

SHARE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


@api("POST")
async def feedback_view(request: HttpRequest, message_id: str) -> HttpResponse:
    data = read_json(request, required=True)
    owner = await get_owner(request, finding="message")
    message = await feedback.reply_feedback_give(owner=owner, message_id=message_id, data=data)
    await sync_to_async(sibling_ids)(message)
    return JsonResponse(message_json(message))


def share_url(request: HttpRequest, token: str) -> str:
    return request.build_absolute_uri(reverse("chat:share-page", args=[token]))


@api("POST", "DELETE")
async def share_view(request: HttpRequest, conversation_id: str) -> HttpResponse:
    read_json(request, required=False)  # no fields yet; a body, if any, must still be JSON
    owner = await get_owner(request, finding="conversation")
    if request.method == "DELETE":
        await db.run(sharing.conversation_unshare, owner=owner, conversation_id=conversation_id)
        return HttpResponse(status=204)
    share = await db.run(sharing.conversation_share, owner=owner, conversation_id=conversation_id)
    return JsonResponse({"url": share_url(request, share.pk)}, status=201)


@require_safe
def share_page_view(request: HttpRequest, token: str) -> HttpResponse:
    """A shared conversation, read-only, for anyone with its URL: no session, no cookie, no script.

    Rendered on the server so it reads with JavaScript off; it names nothing of the owner, and
    asks search engines, other sites and caches to keep it to the person who has the link.
    """
    if conf.get("CHAT_LOGIN_REQUIRED") and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())  # a site for its users only stays so
    try:
        share = sharing.share_get(token=token)
    except NotFound:
        response = render(request, "chat/shared.html", {"share": None}, status=404)
    else:
        messages = sharing.page_messages(share)
        context = {"share": share, "title": share.title or "Shared conversation", "messages": messages}
        response = render(request, "chat/shared.html", context)
    response["X-Robots-Tag"] = "noindex"
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, no-store"
    response["Content-Security-Policy"] = SHARE_CSP
    return response


@api("POST")
async def branch_view(request: HttpRequest, conversation_id: str) -> HttpResponse:
    """Make the branch through a message current (contract v3, "Branches")."""
    data = read_json(request, required=True)
    owner = await get_owner(request, finding="conversation")
    conversation = await db.run(
        services.conversation_branch, owner=owner, conversation_id=conversation_id, data=data
    )
    return JsonResponse(conversation_json(conversation, messages=True))


# --- files and images (contract v3; chat/attachments.py) ----------------------------------

UPLOAD_PATH = "attachments"  # under the API's prefix: where chat.asgi.BodyLimit lets a file through
MULTIPART_OVERHEAD = 64 * 1024  # the form's boundaries and headers around the file
ATTACHMENT_CSP = "default-src 'none'; sandbox"


def upload_body_limit() -> int:
    """An upload's body: CHAT_MAX_ATTACHMENT_BYTES and room for its multipart framing."""
    return attachments.max_bytes() + MULTIPART_OVERHEAD


def is_form(request: HttpRequest) -> bool:
    return request.content_type == "multipart/form-data"


def form_files(request: HttpRequest):
    """The form's files, parsed by Django (sync: call it on a thread); a broken form is a 400."""
    try:
        return request.FILES
    except (MultiPartParserError, SuspiciousOperation, UnicodeDecodeError, ValueError) as exc:
        raise Invalid(f"The upload is not a form that can be read ({exc}).") from None


def uploaded_file(request: HttpRequest):
    """The form's `file`, within the limit: else 400 or 413."""
    upload = form_files(request).get("file") if is_form(request) else None
    if upload is None:
        raise Invalid("Send the file as multipart/form-data, in a field named 'file'.")
    if upload.size > attachments.max_bytes():
        raise attachments.too_large(upload.size)
    return upload


def _upload_read(upload) -> bytes:
    with upload:
        return upload.read()


@api("POST")
async def attachments_view(request: HttpRequest) -> HttpResponse:
    """Upload a file (multipart, field `file`): 201 with what it was judged to be."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > upload_body_limit():  # without chat.asgi.BodyLimit, at least nothing is parsed
        raise attachments.too_large(declared)
    owner = await get_owner(request, create=True)
    upload = await sync_to_async(uploaded_file)(request)
    await get_limiter().admit_upload(owner=owner.key, ip=client_ip(request))
    data = await sync_to_async(_upload_read)(upload)
    # Judged (decoding may take a while) and stored on the request's thread; the row on the writers'.
    attachment = await sync_to_async(attachments.attachment_prepare)(owner=owner, data=data, name=upload.name)
    await db.run(attachments.attachment_insert, attachment)
    body = attachment_json(attachment)
    body.update(width=attachment.width, height=attachment.height)
    return JsonResponse(body, status=201)


def stored_bytes(attachment) -> bytes:
    with attachment.file.open("rb") as stored:
        return stored.read()


@api("GET")
async def attachment_view(request: HttpRequest, attachment_id: str) -> HttpResponse:
    """A file, to its owner only, as what it is: never rendered as a page, never sniffed.

    Read whole, not a FileResponse: under ASGI Django reads a FileResponse's file into a list
    anyway (a sync iterator), with a warning; a file is at most CHAT_MAX_ATTACHMENT_BYTES.
    """
    owner = await get_owner(request, finding="file")
    attachment = await sync_to_async(attachments.attachment_get)(owner=owner, attachment_id=attachment_id)
    try:
        data = await sync_to_async(stored_bytes)(attachment)
    except FileNotFoundError:
        raise NotFound(f"The file {attachment_id} is no longer stored.") from None
    return attachment_response(attachment, data)


def attachment_response(attachment, data: bytes) -> HttpResponse:
    """A stored file as what it is (the owner's GET, the admin's preview): its judged type,
    inline only for images, never sniffed, never run as a page."""
    kind = attachment.content_type
    if kind.startswith("text/"):
        kind += "; charset=utf-8"
    response = HttpResponse(data, content_type=kind)
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=not attachment.is_image, filename=attachment.name
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = ATTACHMENT_CSP
    response["Cache-Control"] = "private, max-age=3600"
    return response


# --- tool approval (issue 31; chat/approvals.py) -------------------------------------------


@api("POST")
async def approve_view(request: HttpRequest, message_id: str) -> HttpResponse:
    """`{"tool_call_id", "approved": true | false}` for a call the reply waits on."""
    data = read_json(request, required=True)
    owner = await get_owner(request)
    approval = await approvals.approval_decide(
        owner=owner,
        message_id=message_id,
        tool_call_id=data.get("tool_call_id"),
        approved=data.get("approved"),
    )
    return JsonResponse(approvals.approval_json(approval))
