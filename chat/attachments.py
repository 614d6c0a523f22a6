"""Files and images (contract v3): uploads judged by their content, stored, sent, deleted.

An upload is accepted for what its bytes are, never for its name or its declared type: an
image only if Pillow decodes it whole (PNG, JPEG, GIF, WebP), a PDF only if pypdf opens it,
text only if it is UTF-8 that is not markup. Anything else, and anything a browser could run
(HTML, SVG, executables), is refused 415. The bytes go to Django's storage
(`STORAGES["default"]`), the judgement to the `Attachment` row; deleting the row deletes the
bytes once the deletion commits (`attachment_deleted`, whatever deleted it: a conversation,
the admin, a user, `chat_prune`).
"""

import hashlib
import io
import logging
import os
import re
import unicodedata
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from chat import conf
from chat.errors import ChatError, Invalid, NotFound, TooLarge
from chat.models import Attachment, Message
from chat.providers import base as providers
from chat.text import clean_model_text

log = logging.getLogger("chat.attachments")

IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
# How an executable starts: Windows (MZ), Linux (ELF), macOS (Mach-O, both byte orders and
# the universal binary's), Java classes share the universal binary's, WebAssembly.
EXECUTABLE_MAGIC = (
    b"MZ",
    b"\x7fELF",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
    b"\x00asm",
)
TEXT_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".csv": "text/csv"}
NAME_LENGTH = 200
PDF_PAGES_READ = 500  # text is taken from this many pages at most (a 10 MiB PDF may have thousands)


class Unsupported(ChatError):
    status, code = 415, "unsupported"


def owned(owner: Any) -> QuerySet[Attachment]:
    """The owner's uploads (`chat.services.Owner`), sent or not."""
    if owner.user_id is not None:
        return Attachment.objects.filter(user_id=owner.user_id)
    if owner.visitor:
        return Attachment.objects.filter(user__isnull=True, visitor=owner.visitor)
    return Attachment.objects.none()


def max_bytes() -> int:
    return conf.get_int("CHAT_MAX_ATTACHMENT_BYTES")


def too_large(size: int | None = None) -> TooLarge:
    limit = max_bytes()
    told = "" if size is None else f" ({size:,} bytes)"
    return TooLarge(f"The file is too large{told}: the limit is {limit:,} bytes.")


# --- judging the bytes ----------------------------------------------------------------------


def clean_name(name: object) -> str:
    """The uploaded name as shown and sent back: its last path part, printable, NFC, short."""
    text = unicodedata.normalize("NFC", name if isinstance(name, str) else "")
    text = re.split(r"[/\\]", text)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C").strip().strip(".")
    if len(text) > NAME_LENGTH:
        stem, ext = os.path.splitext(text)
        ext = ext if len(ext) <= 16 else ""
        text = stem[: NAME_LENGTH - len(ext)] + ext
    return text or "file"


def _png_ends_at_iend(data: bytes) -> bool:
    """Whether a PNG's chunks end with IEND at the file's end: a PNG with a page appended
    (a PNG/HTML polyglot) decodes as the image, so Pillow alone would take it."""
    at = 8
    while at + 12 <= len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        kind = data[at + 4 : at + 8]
        at += 12 + length
        if kind == b"IEND":
            return at == len(data)
    return False


def judge_image(data: bytes) -> dict | None:
    """An image's type and size if Pillow decodes all of it; None if it is no image Pillow knows."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS)) as image:
            kind = image.format
            width, height = image.size
            if width * height > Image.MAX_IMAGE_PIXELS:  # a decompression bomb: never decoded
                raise TooLarge(
                    f"The image is {width:,}×{height:,} pixels; the most is {Image.MAX_IMAGE_PIXELS:,}."
                )
            image.verify()
        with Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS)) as image:
            image.load()  # verify() reads no pixels: a truncated image fails only here
    except UnidentifiedImageError:
        return None
    except Image.DecompressionBombError as exc:
        raise TooLarge(f"The image has too many pixels ({exc}).") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise Unsupported(f"The image cannot be read whole ({exc}); send it again or another one.") from None
    if kind not in IMAGE_FORMATS:
        return None
    if kind == "PNG" and not _png_ends_at_iend(data):
        raise Unsupported("The PNG image has data after its end; only a plain image is accepted.")
    return {"content_type": IMAGE_FORMATS[kind], "width": width, "height": height}


def judge_pdf(data: bytes) -> dict:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    limit = conf.get_int("CHAT_ATTACHMENT_TEXT_CHARS")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise Unsupported("The PDF is encrypted with a password; send one that is not.")
        parts: list[str] = []
        length = 0
        for page in reader.pages[:PDF_PAGES_READ]:
            if length >= limit:
                break
            try:
                text = page.extract_text() or ""
            except Exception as exc:  # noqa: BLE001 - a page whose text pypdf cannot get: the rest still count
                log.info("A PDF page's text was not read: %r", exc)
                continue
            parts.append(text)
            length += len(text) + 2
    except ChatError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
        raise Unsupported(f"The PDF cannot be read ({exc}); send it again or another one.") from None
    text = clean_model_text("\n\n".join(parts))[:limit]
    return {"content_type": "application/pdf", "text": text}


def judge_text(data: bytes, name: str) -> dict | None:
    """Text: UTF-8 (a BOM allowed), no NUL, and not markup a browser would render or run."""
    if b"\x00" in data:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    start = text.lstrip()[:1]
    if start == "<":
        raise Unsupported(
            "Markup files (HTML, SVG, XML) are not accepted; send the text as a .txt file or paste it."
        )
    kind = TEXT_TYPES.get(os.path.splitext(name)[1].lower(), "text/plain")  # a finer label, never a verdict
    return {"content_type": kind, "text": text[: conf.get_int("CHAT_ATTACHMENT_TEXT_CHARS")]}


def judge(data: bytes, name: str) -> dict:
    """What the bytes are, by their content alone (the name only labels text's kind); else 415."""
    if not data:
        raise Invalid("The file is empty.")
    if len(data) > max_bytes():
        raise too_large(len(data))
    if data.startswith(EXECUTABLE_MAGIC):
        raise Unsupported("Programs are not accepted: send an image, a PDF or a text file.")
    image = judge_image(data)
    if image is not None:
        return image
    if data.startswith(b"%PDF-"):
        return judge_pdf(data)
    text = judge_text(data, name)
    if text is not None:
        return text
    raise Unsupported(
        "This kind of file is not accepted: send a PNG, JPEG, GIF or WebP image, a PDF or a text file."
    )


# --- create, find, bind ---------------------------------------------------------------------


def attachment_create(*, owner: Any, data: bytes, name: object) -> Attachment:
    """Judge an upload, store its bytes, then its row (the bytes go again if the row fails)."""
    attachment = attachment_prepare(owner=owner, data=data, name=name)
    attachment_insert(attachment)
    return attachment


def attachment_prepare(*, owner: Any, data: bytes, name: object) -> Attachment:
    """An upload judged and its bytes stored; its row not saved yet (attachment_insert)."""
    shown = clean_name(name)
    verdict = judge(data, shown)
    attachment = Attachment(
        id=uuid.uuid4(),
        **owner.fields(),
        name=shown,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        **verdict,
    )
    attachment.file.save(str(attachment.pk), ContentFile(data), save=False)
    return attachment


def attachment_insert(attachment: Attachment) -> None:
    """The prepared upload's row; if it cannot be stored, its bytes go too."""
    try:
        attachment.save(force_insert=True)
    except BaseException:
        _delete_stored(attachment.file.storage, attachment.file.name)
        raise


def attachment_get(*, owner: Any, attachment_id: str) -> Attachment:
    """One of the owner's uploads: unsent and theirs, or sent in one of their conversations."""
    try:
        pk = uuid.UUID(str(attachment_id))
    except ValueError:
        raise NotFound(f"No file with id {attachment_id!r}.") from None
    found = owned(owner).filter(pk=pk).first()
    if found is None:
        found = Attachment.objects.filter(pk=pk, message__conversation__in=owner.conversations()).first()
    if found is None:
        raise NotFound(f"No file with id {attachment_id}.")
    return found


def attachment_ids(data: dict) -> list[uuid.UUID]:
    """The `attachments` of a send: a list of distinct id strings, not too many; else 400."""
    value = data.get("attachments")
    if value is None:
        return []
    most = conf.get_int("CHAT_MAX_ATTACHMENTS")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Invalid("'attachments' must be a list of file ids (strings), as POST /api/attachments gave.")
    if len(value) > most:
        raise Invalid(f"A message may carry {most} files at most; this one has {len(value)}.")
    try:
        ids = [uuid.UUID(item) for item in value]
    except ValueError:
        raise Invalid("'attachments' holds something that is not a file id.") from None
    if len(set(ids)) != len(ids):
        raise Invalid("'attachments' names the same file twice.")
    return ids


def attachments_to_send(*, owner: Any, ids: list[uuid.UUID]) -> list[Attachment]:
    """The owner's uploads named by a send, none sent yet, in the order named; else 400."""
    if not ids:
        return []
    found = {a.pk: a for a in owned(owner).filter(pk__in=ids, message__isnull=True)}
    missing = [str(pk) for pk in ids if pk not in found]
    if missing:
        raise Invalid(
            f"No file of yours waiting to be sent has the id {missing[0]}: upload it "
            "(POST /api/attachments) and send the id it gets, once."
        )
    return [found[pk] for pk in ids]


def attachments_bind(*, attachments: list[Attachment], message: Message) -> None:
    """In the caller's transaction: the files go with `message`, unless another send took one
    meanwhile (then 400, and the caller's transaction stores nothing)."""
    if not attachments:
        return
    pks = [a.pk for a in attachments]
    bound = Attachment.objects.filter(pk__in=pks, message__isnull=True).update(message=message)
    if bound != len(pks):
        raise Invalid("A file of this message was sent with another message meanwhile; upload it again.")
    for attachment in attachments:
        attachment.message = message


def attachments_load(message: Message) -> list[Attachment]:
    """A message's files as `attachment_list` (what chat.serializers shows): known already (a
    send, chat.branches' read), else one query (sync: from async code, on a thread first).
    Only user messages have any, so a reply costs none."""
    known = getattr(message, "attachment_list", None)
    if known is not None:
        return known
    if message.role != Message.Role.USER or message._state.adding:
        message.attachment_list = []
    else:
        message.attachment_list = list(message.attachments.order_by("created_at", "id"))
    return message.attachment_list


def attachments_claim(*, user_id: int, visitor: str) -> int:
    """A visitor who signs in: its uploads not sent yet become the user's (its sent ones go with
    their conversations, which chat.services.conversations_claim moves)."""
    if not visitor:
        return 0
    return Attachment.objects.filter(user__isnull=True, visitor=visitor).update(user_id=user_id, visitor="")


# --- to the model ---------------------------------------------------------------------------


def provider_attachment(attachment: Attachment) -> providers.Attachment:
    """The file as a provider gets it: its bytes read from the storage."""
    with attachment.file.open("rb") as stored:
        data = stored.read()
    text = attachment.text if attachment.text or not attachment.is_image else None
    return providers.Attachment(
        name=attachment.name,
        content_type=attachment.content_type,
        data=data,
        width=attachment.width,
        height=attachment.height,
        text=text or None,
    )


def provider_attachments(attachments: Iterable[Attachment]) -> tuple[providers.Attachment, ...]:
    """The files as a provider gets them; one gone from the storage (removed by hand, a
    bucket's lifecycle rule) is left out and logged, and the message goes without it."""
    found = []
    for attachment in attachments:
        try:
            found.append(provider_attachment(attachment))
        except FileNotFoundError:
            log.warning("The file %s (%s) is gone from the storage", attachment.pk, attachment.file.name)
    return tuple(found)


def attachments_of_messages(message_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[Attachment]]:
    """The files of these messages, one query, in the order they were uploaded."""
    ids = list(message_ids)
    found: dict[uuid.UUID, list[Attachment]] = {}
    if not ids:
        return found
    for attachment in Attachment.objects.filter(message_id__in=ids).order_by("created_at", "id"):
        found.setdefault(attachment.message_id, []).append(attachment)
    return found


def vision_check(*, attachments: Iterable[Attachment], info: Any) -> None:
    """Images to a model configured without vision: 400 before anything is stored or called."""
    if not info.vision and any(a.is_image for a in attachments):
        raise Invalid(
            f"The model {info.id} cannot see images: choose a model that can, or send the message "
            "without them."
        )


# --- deleting -------------------------------------------------------------------------------


@receiver(post_delete, sender=Attachment, dispatch_uid="chat-attachment-file-deleted")
def attachment_deleted(sender: Any, instance: Attachment, **kwargs: Any) -> None:
    """The bytes go once the row's deletion commits (a rollback keeps both), however it was
    deleted: with its conversation, its message, its user, by the admin or by chat_prune."""
    name, storage = instance.file.name, instance.file.storage
    if name:
        transaction.on_commit(lambda: _delete_stored(storage, name), using=kwargs.get("using"))


def _delete_stored(storage: Any, name: str) -> None:
    try:
        storage.delete(name)
    except Exception:  # the row is gone: say so loudly, the next deletion goes on
        log.exception("The stored file %s was not deleted", name)


def unsent(older_than: timedelta) -> QuerySet[Attachment]:
    """Uploads never sent with a message, older than `older_than` (chat_prune deletes them)."""
    return Attachment.objects.filter(message__isnull=True, created_at__lt=timezone.now() - older_than)


def attachments_delete(attachments: QuerySet[Attachment]) -> int:
    """Delete uploads and (after commit) their bytes."""
    with transaction.atomic():
        return attachments.delete()[1].get(Attachment._meta.label, 0)
