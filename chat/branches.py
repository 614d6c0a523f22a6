"""Conversations as trees (contract v3, "Branches"): which messages make the current branch.

An edit or a regenerate adds a sibling instead of deleting, so a conversation's messages form
a tree by `parent`; `Conversation.current_leaf` names the branch shown and continued. Reading a
conversation costs two queries whatever its shape: its skeleton (ids and parents, in time order: no text),
from which the branch and every message's siblings are computed here, then the branch's rows.

The rule that keeps this cheap: a message is never created before its parent (services set
`created_at = max(now, parent's + 1 µs)`), so children sort after their parent by time.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Subquery

from chat.errors import Invalid
from chat.models import Attachment, Conversation, Message

LARGE_BRANCH = 500  # more rows than this: read the conversation's rows, not `pk IN (...)`

Node = tuple[uuid.UUID, uuid.UUID | None]  # id, parent id


@dataclass(frozen=True)
class Tree:
    """A conversation's skeleton: each message's parent, and each parent's children, oldest first."""

    parents: dict[uuid.UUID, uuid.UUID | None]
    children: dict[uuid.UUID | None, list[uuid.UUID]]
    newest: uuid.UUID | None  # the newest message of all

    @classmethod
    def of(cls, nodes: Iterable[Node]) -> "Tree":
        """The tree of (id, parent) pairs given oldest first (by time, then id)."""
        ordered = list(nodes)
        parents = dict(ordered)
        children: dict[uuid.UUID | None, list[uuid.UUID]] = {}
        for pk, parent in ordered:
            # A parent that is not in the conversation (deleted by hand): the message is a root.
            children.setdefault(parent if parent in parents else None, []).append(pk)
        return cls(parents=parents, children=children, newest=ordered[-1][0] if ordered else None)

    def newest_leaf(self, start: uuid.UUID) -> uuid.UUID:
        """Down from `start` by the newest child each time: where a branch switch lands."""
        node, seen = start, {start}
        while (kids := self.children.get(node)) and kids[-1] not in seen:
            node = kids[-1]
            seen.add(node)
        return node

    def leaf(self, current: uuid.UUID | None) -> uuid.UUID | None:
        """The stored current leaf if it is still here, else the newest message's leaf."""
        if current in self.parents:
            return current
        return None if self.newest is None else self.newest_leaf(self.newest)

    def path(self, leaf: uuid.UUID | None) -> list[uuid.UUID]:
        """Root to `leaf`."""
        path: list[uuid.UUID] = []
        seen: set[uuid.UUID] = set()
        node = leaf
        while node is not None and node in self.parents and node not in seen:
            seen.add(node)
            path.append(node)
            node = self.parents[node]
        return path[::-1]

    def siblings(self, pk: uuid.UUID) -> list[uuid.UUID]:
        parent = self.parents.get(pk)
        return self.children.get(parent if parent in self.parents else None, [pk])

    def outline(self, leaf: uuid.UUID | None) -> list[tuple[uuid.UUID, int]]:
        """Every message once, with its depth, for reading the whole tree: the branch ending at
        `leaf` in order at depth 0, each other branch indented under its fork point (before the
        branch goes on), its own forks indented further. No recursion: a chain may be long."""
        on_branch = set(self.path(leaf))
        shown: list[tuple[uuid.UUID, int]] = []
        stack: list[tuple[uuid.UUID, int]] = []

        def below(node: uuid.UUID | None, depth: int) -> None:
            kids = self.children.get(node, [])
            main = next((k for k in kids if k in on_branch), kids[-1] if kids else None)
            if main is not None:  # popped last: the other children come first, indented
                stack.append((main, depth))
            stack.extend((kid, depth + 1) for kid in reversed(kids) if kid != main)

        below(None, 0)
        while stack:
            node, depth = stack.pop()
            shown.append((node, depth))
            below(node, depth)
        return shown


def tree(conversation_id: uuid.UUID) -> Tree:
    """A conversation's skeleton: ids and parents, in the order of time (no time is read: the
    database sorts by its index, and converting 6,000 times took a third of reading them)."""
    nodes = Message.objects.filter(conversation_id=conversation_id).order_by("created_at", "id")
    return Tree.of(nodes.values_list("id", "parent_id"))


def branch_messages(conversation: Conversation, shape: Tree) -> list[Message]:
    """The current branch's messages, root to leaf, each with its `sibling_ids`."""
    path = shape.path(shape.leaf(conversation.current_leaf_id))
    rows = Message.objects.filter(conversation_id=conversation.pk).order_by()
    if len(path) <= LARGE_BRANCH:
        rows = rows.filter(pk__in=path)
    by_id = {m.pk: m for m in rows}
    messages = [by_id[pk] for pk in path if pk in by_id]
    for message in messages:
        message.sibling_ids = shape.siblings(message.pk)
    attachments_put(conversation, messages)
    return messages


def attachments_put(conversation: Conversation, messages: list[Message]) -> None:
    """Each message's files as `attachment_list` (what chat.serializers shows): one query for
    the conversation's files, however long the branch (no `IN` list of its ids)."""
    files: dict[uuid.UUID, list[Attachment]] = {}
    for attachment in Attachment.objects.filter(message__conversation_id=conversation.pk).order_by(
        "created_at", "id"
    ):
        files.setdefault(attachment.message_id, []).append(attachment)
    for message in messages:
        message.attachment_list = files.get(message.pk, [])


def conversation_branch_load(conversation: Conversation) -> Conversation:
    """Put the current branch on `conversation.branch` (what conversation_json shows)."""
    shape = tree(conversation.pk)
    conversation.branch = branch_messages(conversation, shape)
    conversation.current_leaf_id = conversation.branch[-1].pk if conversation.branch else None
    return conversation


def sibling_ids(message: Message) -> list[uuid.UUID]:
    """A message's siblings, oldest first, itself included: known already, else one query on
    (conversation, parent), from the parent's time on (siblings are younger than it)."""
    known = getattr(message, "sibling_ids", None)
    if known is not None:
        return known
    rows = Message.objects.filter(conversation_id=message.conversation_id)
    if message.parent_id is None:
        rows = rows.filter(parent__isnull=True)
    else:
        parent_time = Message.objects.filter(pk=message.parent_id).values("created_at")[:1]
        rows = rows.filter(parent_id=message.parent_id, created_at__gte=Subquery(parent_time))
    found = list(rows.order_by("created_at", "id").values_list("id", flat=True))
    message.sibling_ids = found if message.pk in found else [*found, message.pk]
    return message.sibling_ids


def message_of(conversation: Conversation, value: object, *, key: str, role: str | None = None) -> Message:
    """A message of `conversation` named by a client (`key` of its body), of `role` if given: else 400."""
    what = {"user": "one of your messages", "assistant": "a reply"}.get(role or "", "a message")
    problem = f"'{key}' must be the id of {what} of this conversation."
    if not isinstance(value, str):
        raise Invalid(problem)
    try:
        pk = uuid.UUID(value)
    except ValueError:
        raise Invalid(problem) from None
    messages = Message.objects.filter(pk=pk, conversation_id=conversation.pk)
    if role is not None:
        messages = messages.filter(role=role)
    message = messages.first()
    if message is None:
        raise Invalid(problem)
    return message
