"""Versions of a message, the branch of them the page shows and MiMo is sent, and windows onto that branch.

A conversation is a tree: each message's `parent` is the message before it on
its branch. An edited question or a regenerated answer is a new sibling (same
parent, same role) of the one it replaces; siblings are numbered by creation.
Exactly one branch is `visible`, so the visible messages in order of creation
are that branch from the first message to its tip.
"""

from collections import defaultdict
from dataclasses import dataclass
from itertools import batched

from django.db import transaction
from django.db.models import Q, prefetch_related_objects

from chat.models import Conversation, Message

# How much of a long conversation the page shows at once, and at most (older pages load as the member scrolls).
PAGE_MESSAGES = 50
MAX_WINDOW = 300


@dataclass
class Version:
    """Where a message stands among its siblings: `number` of `count`, and the ones either side."""

    number: int
    count: int
    previous: int | None
    next: int | None


def number_versions(messages):
    """Give each message a `.version`, in one query whatever their number (the page shows `‹ 2/3 ›`)."""
    if not messages:
        return
    parents = {message.parent_id for message in messages}
    same_parent = Q(parent_id__in=[parent for parent in parents if parent is not None])
    if None in parents:
        same_parent |= Q(parent__isnull=True)
    siblings = defaultdict(list)
    rows = Message.objects.filter(same_parent, conversation_id=messages[0].conversation_id)
    for pk, parent, role in rows.order_by("created_at", "id").values_list("id", "parent_id", "role"):
        siblings[parent, role].append(pk)
    for message in messages:
        ids = siblings[message.parent_id, message.role] or [message.pk]
        index = ids.index(message.pk) if message.pk in ids else len(ids) - 1
        message.version = Version(
            number=index + 1,
            count=len(ids),
            previous=ids[index - 1] if index > 0 else None,
            next=ids[index + 1] if index + 1 < len(ids) else None,
        )


def show_branch_of(message):
    """Make the branch through `message` the visible one.

    Visible: its ancestors, itself, and below it the most recently created
    child at each level. Everything else becomes invisible. One query reads
    the conversation's shape (ids only, so cheap even for thousands of
    messages); only the rows whose visibility changes are written.
    """
    rows = Message.objects.filter(conversation_id=message.conversation_id).order_by("created_at", "id")
    parent_of, children, shown = {}, defaultdict(list), set()
    for pk, parent, visible in rows.values_list("id", "parent_id", "visible"):
        parent_of[pk] = parent
        children[parent].append(pk)
        if visible:
            shown.add(pk)
    branch = set()
    node = message.pk
    while node is not None and node not in branch:
        branch.add(node)
        node = parent_of.get(node)
    node = message.pk
    while children[node]:
        node = children[node][-1]
        branch.add(node)
    for ids, visible in ((branch - shown, True), (shown - branch, False)):
        for chunk in batched(sorted(ids), 500):  # keeps under SQLite's limit on parameters
            Message.objects.filter(pk__in=chunk).update(visible=visible)
    message.visible = True


def switch_to(message):
    """Show the branch through `message`, unless an answer streams: False then, and nothing changes.

    The conversation's row is locked so that no answer starts while the
    branch changes under it (`generation.create_turn` takes the same lock).
    """
    with transaction.atomic():
        Conversation.objects.select_for_update().only("pk").get(pk=message.conversation_id)
        if Message.objects.filter(conversation_id=message.conversation_id, status=Message.Status.STREAMING).exists():
            return False
        show_branch_of(message)
    return True


# --- Windows onto the visible branch ------------------------------------------------


@dataclass
class Window:
    """Consecutive messages of the visible branch, ready to render, and whether more lie either side."""

    messages: list
    has_older: bool
    has_newer: bool

    @property
    def oldest(self):
        return self.messages[0] if self.messages else None

    @property
    def newest(self):
        return self.messages[-1] if self.messages else None


def branch(conversation_id):
    return Message.objects.filter(conversation_id=conversation_id, visible=True)


def before(message):
    return branch(message.conversation_id).filter(
        Q(created_at__lt=message.created_at) | Q(created_at=message.created_at, id__lt=message.pk)
    )


def after(message):
    return branch(message.conversation_id).filter(
        Q(created_at__gt=message.created_at) | Q(created_at=message.created_at, id__gt=message.pk)
    )


def newest_first(messages, count):
    """Up to `count` of these, newest first, and whether there were more."""
    page = list(messages.order_by("-created_at", "-id")[: count + 1])
    return page[:count], len(page) > count


def oldest_first(messages, count):
    page = list(messages.order_by("created_at", "id")[: count + 1])
    return page[:count], len(page) > count


def prepared(messages, has_older, has_newer):
    """A window whose messages come with their tool calls, citations, attachments and versions: a fixed number of queries."""
    prefetch_related_objects(messages, "tool_calls", "citations", "attachments")
    number_versions(messages)
    return Window(messages, has_older, has_newer)


def latest_window(conversation):
    """What the page opens on: the latest messages of the visible branch."""
    page, has_older = newest_first(branch(conversation.pk), PAGE_MESSAGES)
    return prepared(page[::-1], has_older, False)


def window_around(message):
    """The messages around this one (half a page after it, the rest before), for links to a message."""
    newer, has_newer = oldest_first(after(message), PAGE_MESSAGES // 2)
    older, has_older = newest_first(before(message), PAGE_MESSAGES - 1 - len(newer))
    return prepared([*older[::-1], message, *newer], has_older, has_newer)


def page_before(message):
    page, has_older = newest_first(before(message), PAGE_MESSAGES)
    return prepared(page[::-1], has_older, False)


def page_after(message):
    page, has_newer = oldest_first(after(message), PAGE_MESSAGES)
    return prepared(page, False, has_newer)
