import secrets
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class Conversation(models.Model):
    """A chat, owned by one user or by one anonymous visitor (a token kept in the session)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, verbose_name=_("id"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="chat_conversations",
        db_index=False,  # chat_conv_user_updated leads with it: one index fewer to write per turn
        verbose_name=_("user"),
    )
    visitor = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text=_("Anonymous owner (token in the session)."),
        verbose_name=_("visitor"),
    )
    title = models.CharField(max_length=200, blank=True, default="", verbose_name=_("title"))
    model = models.CharField(max_length=200, verbose_name=_("model"))
    system_prompt = models.TextField(blank=True, default="", verbose_name=_("system prompt"))
    created_at = models.DateTimeField(default=timezone.now, verbose_name=_("created at"))
    updated_at = models.DateTimeField(default=timezone.now, verbose_name=_("updated at"))
    # The branch shown and continued (contract v3, "Branches"): the path from the root to this
    # message. Stored, so a reload shows the same branch. No constraint and no index: it is
    # written with the activity each turn anyway, and a leaf deleted by the admin just means
    # "the newest message" again.
    current_leaf = models.ForeignKey(
        "Message",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        ordering = ["-updated_at"]
        indexes = [
            models.Index(fields=["user", "-updated_at"], name="chat_conv_user_updated"),
            models.Index(fields=["visitor", "-updated_at"], name="chat_conv_visitor_updated"),
            models.Index(fields=["-updated_at"], name="chat_conv_updated"),
            # The admin: its model filter (distinct values, then filtered by last activity) and
            # its date hierarchy.
            models.Index(fields=["model", "-updated_at"], name="chat_conv_model_updated"),
            models.Index(fields=["created_at"], name="chat_conv_created"),
        ]

    def __str__(self) -> str:
        return self.title or gettext("Conversation %(id)s") % {"id": self.id}


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", _("User")
        ASSISTANT = "assistant", _("Assistant")
        SYSTEM = "system", _("System")

    class Status(models.TextChoices):
        COMPLETE = "complete", _("Complete")
        STREAMING = "streaming", _("Streaming")
        STOPPED = "stopped", _("Stopped")
        ERROR = "error", _("Error")
        INTERRUPTED = "interrupted", _("Interrupted")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, verbose_name=_("id"))
    # No index of its own: chat_msg_conv_created leads with it (one index fewer to write per message).
    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.CASCADE,
        related_name="messages",
        db_index=False,
        verbose_name=_("conversation"),
    )
    role = models.CharField(max_length=16, choices=Role.choices, verbose_name=_("role"))
    content = models.TextField(blank=True, default="", verbose_name=_("content"))
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.COMPLETE, verbose_name=_("status")
    )
    model = models.CharField(max_length=200, blank=True, default="", verbose_name=_("model"))
    created_at = models.DateTimeField(default=timezone.now, verbose_name=_("created at"))
    # The last save: for a streaming reply, its last checkpoint (how a dead process is noticed).
    updated_at = models.DateTimeField(default=timezone.now, verbose_name=_("updated at"))
    finish_reason = models.CharField(max_length=64, null=True, blank=True, verbose_name=_("finish reason"))
    input_tokens = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("input tokens"))
    output_tokens = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("output tokens"))
    error = models.TextField(null=True, blank=True, verbose_name=_("error"))
    error_code = models.CharField(max_length=64, null=True, blank=True, verbose_name=_("error code"))
    time_to_first_token_ms = models.PositiveIntegerField(
        null=True, blank=True, verbose_name=_("time to first token ms")
    )
    duration_ms = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("duration ms"))
    # Reasoning and tool steps (issue 12; chat/steps.py): all the reasoning text, how long the
    # model reasoned, and the reasoning runs (slices of `reasoning`) and tool calls in order.
    # Database defaults too: rows written by raw SQL (seeding, bulk tools) need not name them.
    reasoning = models.TextField(blank=True, default="", db_default="")
    reasoning_ms = models.PositiveIntegerField(null=True, blank=True)
    steps = models.JSONField(default=list, blank=True, db_default=models.Value([], models.JSONField()))
    # Set by a stop request that reaches a process other than the one generating the reply.
    stop_requested = models.BooleanField(default=False, verbose_name=_("stop requested"))
    # Told again from the answer cache (CHAT_CACHE_TTL) rather than generated: it cost nothing.
    cached = models.BooleanField(default=False, db_default=False, verbose_name=_("cached"))
    # The message this one follows (contract v3, "Branches"); null for a conversation's first.
    # An edit or a regenerate adds a sibling (same parent) instead of deleting. No constraint
    # and no index: messages are read by conversation, and a conversation's messages go
    # together (deleting one message splices its children onto its parent: chat/history.py).
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="children",
    )
    # The owner's verdict on a reply (contract v3, "Feedback"): 1 up, -1 down, null none.
    feedback_rating = models.SmallIntegerField(
        null=True, blank=True, choices=[(1, _("👍 good")), (-1, _("👎 bad"))], verbose_name=_("rating")
    )
    feedback_comment = models.TextField(blank=True, default="", db_default="", verbose_name=_("comment"))
    feedback_at = models.DateTimeField(null=True, blank=True, verbose_name=_("feedback given"))

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="chat_msg_conv_created"),
            # By status alone: the sweeper's streaming replies are few, and a checkpoint, which
            # moves `updated_at` each second of every streaming reply, then writes no index.
            models.Index(fields=["status"], name="chat_msg_status"),
            # The admin's message list: newest first, its date hierarchy, its model filter.
            models.Index(fields=["created_at"], name="chat_msg_created"),
            models.Index(fields=["model", "created_at"], name="chat_msg_model_created"),
            # The admin's feedback list: only the replies that have some are in it.
            models.Index(
                fields=["-feedback_at"],
                name="chat_msg_feedback",
                condition=models.Q(feedback_rating__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"

    @property
    def is_finished(self) -> bool:
        return self.status != self.Status.STREAMING

    @property
    def usage(self) -> dict[str, int] | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return {"input_tokens": self.input_tokens or 0, "output_tokens": self.output_tokens or 0}


def share_token() -> str:
    """32 URL-safe characters from 192 random bits: a share's URL cannot be guessed."""
    return secrets.token_urlsafe(24)


class Share(models.Model):
    """A conversation shown read-only at a URL nobody can guess (contract v3, "Sharing").

    It holds a snapshot of the current branch as it was when shared (`messages`: role, content,
    model, time), so later messages stay private until the owner shares again; nothing about
    the owner is in it. Revoking deletes the row, and so does deleting the conversation.
    """

    id = models.CharField(
        primary_key=True, max_length=64, default=share_token, editable=False, verbose_name=_("id")
    )
    conversation = models.OneToOneField(
        Conversation, on_delete=models.CASCADE, related_name="share", verbose_name=_("conversation")
    )
    title = models.CharField(max_length=200, blank=True, default="", verbose_name=_("title"))
    messages = models.JSONField(default=list, blank=True, verbose_name=_("messages"))
    created_at = models.DateTimeField(default=timezone.now, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("share")
        verbose_name_plural = _("shares")

    def __str__(self) -> str:
        return gettext("Share of %(id)s") % {"id": self.conversation_id}


class FeedbackManager(models.Manager):
    def get_queryset(self) -> models.QuerySet:
        # Only replies are ever rated (chat/feedback.py); the condition alone is the partial
        # index chat_msg_feedback's, so counting them reads only that index.
        return super().get_queryset().filter(feedback_rating__isnull=False)


class Feedback(Message):
    """The replies their owners rated (contract v3, "Feedback"): the admin's own list of them
    (chat/feedback_admin.py), beside the list of all messages."""

    objects = FeedbackManager()

    class Meta:
        proxy = True
        verbose_name = _("feedback")
        verbose_name_plural = _("feedback")
        ordering = ["-feedback_at"]


def attachment_path(instance: "Attachment", filename: str) -> str:
    """Where an upload is stored: its id under the month, nothing the uploader chose (a name
    with `../`, a reserved word or an extension a web server would run stays in `name`)."""
    return f"chat/attachments/{timezone.now():%Y/%m}/{instance.pk}"


class Attachment(models.Model):
    """A file a person uploaded (contract v3, "Files and images"), judged by its content.

    It belongs to its uploader (a user or a visitor, as a conversation does) until it is sent:
    then to the user message it went with (`message`), and it goes when that message goes.
    The bytes are in Django's storage (`STORAGES["default"]`, so S3 is configuration); deleting
    the row deletes them once the transaction commits (chat/attachments.py).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, verbose_name=_("id"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="chat_attachments",
        verbose_name=_("user"),
    )
    visitor = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text=_("Anonymous owner (token in the session)."),
        verbose_name=_("visitor"),
    )
    message = models.ForeignKey(
        Message,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="attachments",
        verbose_name=_("message"),
    )
    file = models.FileField(upload_to=attachment_path, max_length=255, verbose_name=_("file"))
    name = models.CharField(
        max_length=255, help_text=_("The name it was uploaded with, cleaned."), verbose_name=_("name")
    )
    content_type = models.CharField(
        max_length=100, help_text=_("Judged from the bytes, not the name."), verbose_name=_("content type")
    )
    size = models.PositiveBigIntegerField(verbose_name=_("size"))
    width = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("width"))
    height = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("height"))
    # A PDF's text, or a text file's, for models that cannot read the file itself (capped).
    text = models.TextField(blank=True, default="", verbose_name=_("text"))
    sha256 = models.CharField(max_length=64, verbose_name=_("sha256"))
    created_at = models.DateTimeField(default=timezone.now, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")
        ordering = ["created_at"]
        indexes = [
            # chat_prune: uploads never sent, oldest first; only they are in it.
            models.Index(
                fields=["created_at"], name="chat_att_unsent", condition=models.Q(message__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


class ToolApproval(models.Model):
    """A tool call waiting for the person's yes or no (CHAT_TOOLS_APPROVAL; chat/approvals.py).

    In the database, not in the generating process's memory: the approval may reach another
    worker or machine than the one running the reply, and a reload must find the request again.
    Each change of `state` is one conditional UPDATE from `waiting`, so a late decision and the
    timeout cannot both win.
    """

    class State(models.TextChoices):
        WAITING = "waiting"
        APPROVED = "approved"
        DENIED = "denied"
        EXPIRED = "expired"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="tool_approvals")
    call_id = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    arguments = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.WAITING)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "call_id"], name="chat_approval_one_per_call"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"
