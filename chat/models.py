"""Conversations as rows: what MiMo sent is what is stored, and the next turn is rebuilt from it."""

import uuid
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import ApiKey, Team, User
from chat import mimo, processes


class ConversationQuerySet(models.QuerySet):
    def visible_to(self, user):
        return self.filter(owner=user)

    def not_in_trash(self):
        return self.filter(deleted_at__isnull=True)

    def in_trash(self):
        return self.filter(deleted_at__isnull=False)

    def due_for_purge(self):
        """In the trash for TRASH_DAYS or more: to be deleted for good."""
        return self.filter(deleted_at__lte=timezone.now() - timedelta(days=TRASH_DAYS))

    def newest_first(self):
        """Pinned ones first (the latest pinned on top), then the latest active."""
        return self.order_by(models.F("pinned_at").desc(nulls_last=True), "-updated_at", "-pk")

    def reviewable_by(self, user):
        """What a reviewer (or a superuser) may open for review: the conversations of the teams they
        review, except those in the trash and their own (which their chat list has)."""
        return self.filter(team__in=Team.objects.reviewable_by(user), deleted_at__isnull=True).exclude(owner=user)

    def with_counts(self):
        """Each with its number of messages and its tokens (prompt and completion, over every answer)."""
        return self.annotate(
            message_count=models.Count("messages"),
            total_tokens=Coalesce(
                models.Sum(Coalesce("messages__prompt_tokens", 0) + Coalesce("messages__completion_tokens", 0)), 0
            ),
        )


# How long a deleted conversation stays in the trash, restorable, before it is deleted for good.
TRASH_DAYS = 30


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="conversations")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(_("title"), max_length=200, blank=True)
    # The settings the next turn runs with; each message keeps the ones it ran with.
    model = models.CharField(_("model"), max_length=100, default=mimo.DEFAULT_MODEL)
    thinking = models.BooleanField(_("thinking"), default=True)
    web_search = models.BooleanField(_("web search"), default=False)
    system_prompt = models.TextField(_("system prompt"), blank=True)
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # Sampling: empty means the model's own value (chat/mimo/catalogue.py); ranges in chat/forms.py.
    temperature = models.FloatField(_("temperature"), null=True, blank=True)
    top_p = models.FloatField(_("top p"), null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(_("maximum output tokens"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Pinned conversations come first in the sidebar.
    pinned_at = models.DateTimeField(null=True, blank=True)
    # In the trash since then; restorable for TRASH_DAYS, then deleted for good.
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "deleted_at", "-updated_at"])]

    def __str__(self):
        return self.title or str(self.id)

    # Pin, trash and restore leave `updated_at` alone: they are not activity, and must not reorder the sidebar.
    def set_pinned(self, pinned):
        self.pinned_at = timezone.now() if pinned else None
        self.save(update_fields=["pinned_at"])

    def move_to_trash(self):
        self.deleted_at = timezone.now()
        self.save(update_fields=["deleted_at"])

    def restore(self):
        self.deleted_at = None
        self.save(update_fields=["deleted_at"])

    @property
    def purge_at(self):
        """When a conversation in the trash is deleted for good."""
        return self.deleted_at + timedelta(days=TRASH_DAYS) if self.deleted_at else None

    def key_for_next_turn(self, team=None):
        """The key chosen for this conversation while it is active and still allowed for its owner (a team
        key while members may choose, or the owner's own personal key); else the team's default key if
        active; else the team's oldest active team key. A personal key never serves anyone else.

        `team` is the conversation's, read just now (an admin may have changed the rules since the
        conversation was loaded); read here when not given.
        """
        team = team or Team.objects.get(pk=self.team_id)
        if self.api_key_id and (chosen := ApiKey.objects.usable_by(self.owner_id, team).filter(pk=self.api_key_id).first()):
            return chosen
        return team_default_key(team)

    def parameters(self):
        """The settings an answer runs with, kept on its message; sampling only where one was chosen."""
        chosen = {"temperature": self.temperature, "top_p": self.top_p, "max_output_tokens": self.max_output_tokens}
        return {"thinking": self.thinking, "web_search": self.web_search} | {
            name: value for name, value in chosen.items() if value is not None
        }

    def turns(self):
        """The history MiMo is sent, rebuilt from the rows alone.

        Only the visible branch is sent: earlier versions of an edited question
        or a regenerated answer stay out. Assistant messages that failed or were
        interrupted are left out too: what they hold stays on the page, and a
        retry answers the same question anew. A stopped answer stays in: the
        person chose to keep it.
        """
        # chat/attachments.py reads the files into the turn; it imports this module, so it is imported here.
        from chat.attachments import user_turn

        # Only the fields a turn is made of, not whole rows: every round of every answer reads them.
        messages = [
            SimpleNamespace(**row)
            for row in self.messages.filter(visible=True)
            .exclude(
                role=Message.Role.ASSISTANT, status__in=[Message.Status.ERROR, Message.Status.INTERRUPTED, Message.Status.STREAMING]
            )
            .annotate(has_attachments=models.Exists(Attachment.objects.filter(message=models.OuterRef("pk"))))
            .values("pk", "role", "content", "reasoning_content", "thinking_signature", "has_attachments")
        ]
        # Each question's attachments go again with every later turn, read from their rows and files;
        # no query for them in a conversation without any.
        attachments_of = {}
        if with_attachments := [message.pk for message in messages if message.has_attachments]:
            for attachment in Attachment.objects.filter(message_id__in=with_attachments):
                attachments_of.setdefault(attachment.message_id, []).append(attachment)
        # One plain query for the answers' finished tool calls, none before the first answer: every
        # answer starts here, and prefetch_related's machinery cost more than its query.
        answer_ids = [message.pk for message in messages if message.role == Message.Role.ASSISTANT]
        calls_of = {}
        if answer_ids:
            finished = ToolCall.objects.filter(message_id__in=answer_ids, status__in=[ToolCall.Status.DONE, ToolCall.Status.ERROR])
            for call in finished:
                calls_of.setdefault(call.message_id, []).append(call)
        turns = []
        for message in messages:
            if message.role == Message.Role.USER:
                attachments = attachments_of.get(message.pk)
                turns.append(user_turn(message.content, attachments) if attachments else mimo.UserTurn(message.content))
                continue
            calls = calls_of.get(message.pk, [])
            turns.append(
                mimo.AssistantTurn(
                    text=message.content,
                    reasoning=message.reasoning_content,
                    signature=message.thinking_signature,
                    tool_calls=[mimo.ToolCall(call.call_id, call.name, call.arguments_raw) for call in calls],
                )
            )
            for call in calls:
                is_error = call.status == ToolCall.Status.ERROR
                turns.append(mimo.ToolResult(call.call_id, call.error if is_error else call.result, is_error))
        return turns


def team_default_key(team):
    """The key a conversation of the team uses when its member chose none: the team's default key if
    active, else the team's oldest active team key; None when it has none."""
    keys = ApiKey.objects.active().team_keys().filter(team=team)
    default = keys.filter(pk=team.default_key_id).first() if team.default_key_id else None
    return default or keys.order_by("created_at", "pk").first()


def get_conversation_for(user, conversation_id, *, in_trash=False):
    """The conversation, if this user may see it; anyone else gets a 404, as if it did not exist.

    One in the trash is a 404 too (its page, its socket, everything), unless `in_trash=True`
    asks for one in the trash, and only such: that is how it is restored.
    """
    conversations = Conversation.objects.visible_to(user)
    conversations = conversations.in_trash() if in_trash else conversations.not_in_trash()
    try:
        return conversations.select_related("team").get(pk=conversation_id)
    except (Conversation.DoesNotExist, ValidationError):
        raise Http404


def get_conversation_for_review(user, conversation_id):
    """The conversation, if this user may review it (see `reviewable_by`); anyone else gets a 404."""
    try:
        return Conversation.objects.reviewable_by(user).select_related("team", "owner").get(pk=conversation_id)
    except (Conversation.DoesNotExist, ValidationError):
        raise Http404


class MessageQuerySet(models.QuerySet):
    def stale_streams(self, older_than=timedelta(seconds=45)):
        """Streams whose generation stopped beating: its process died."""
        return self.filter(status=Message.Status.STREAMING, heartbeat_at__lt=timezone.now() - older_than)

    def orphaned_streams(self):
        """Streams whose process is gone: it stopped beating, or it is one of our pid space that no longer
        runs (chat/processes.py), which is known at once, without waiting for its beat to go stale."""
        ours = self.filter(status=Message.Status.STREAMING, process__startswith=f"{processes.own_pid_space()}:")
        gone = [identity for identity in ours.values_list("process", flat=True).distinct() if processes.is_gone(identity)]
        return self.stale_streams() | ours.filter(process__in=gone)

    def mark_dead(self, running=()):
        """Orphaned streams become `interrupted`; what they hold stays. `running`: conversations streaming here."""
        return (
            self.orphaned_streams()
            .exclude(conversation_id__in=running)
            .update(status=Message.Status.INTERRUPTED, heartbeat_at=None, finished_at=timezone.now())
        )

    def with_usage(self):
        """Each message's `tokens` (prompt + completion, reasoning included) and `cost`, in the database.

        The cost is at the price in force when the message ran (Price.in_force, in SQL):
        cached prompt tokens at the cached rate, the rest of the prompt at the input rate,
        web-search calls per thousand. Messages with no usage or no price cost nothing.
        Price.cost_of computes the same for one message in Python.
        """
        def price(column):
            in_force = Price.objects.filter(model=models.OuterRef("model"), valid_from__lte=models.OuterRef("created_at"))
            return models.Subquery(in_force.order_by("-valid_from").values(column)[:1])

        money = models.DecimalField(max_digits=20, decimal_places=10)
        # Multiplied by decimal fractions, not divided by whole numbers: SQLite divides integers as integers.
        per_million = models.Value(Decimal("0.000001"), output_field=money)
        per_thousand = models.Value(Decimal("0.001"), output_field=money)
        prompt = Coalesce("prompt_tokens", 0)
        cached = Coalesce("cached_tokens", 0)
        completion = Coalesce("completion_tokens", 0)
        cost = models.ExpressionWrapper(
            (
                (prompt - cached) * price("input_per_million")
                + cached * price("cached_input_per_million")
                + completion * price("output_per_million")
            )
            * per_million
            + Coalesce("web_search_calls", 0) * price("web_search_per_thousand") * per_thousand,
            output_field=money,
        )
        return self.annotate(
            tokens=models.ExpressionWrapper(prompt + completion, output_field=models.BigIntegerField()),
            cost=Coalesce(cost, models.Value(0), output_field=money),
        )


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", _("you")
        ASSISTANT = "assistant", _("MiMo")

    class Status(models.TextChoices):
        STREAMING = "streaming", _("streaming")
        COMPLETE = "complete", _("complete")
        STOPPED = "stopped", _("stopped")
        ERROR = "error", _("error")
        INTERRUPTED = "interrupted", _("interrupted")

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=20, choices=Role)
    # Versions: an edited question or a regenerated answer is a sibling (same parent) of the one it
    # replaces. `parent` is the message this one follows (None for the first); `visible` marks the
    # branch the page shows and MiMo is sent.
    parent = models.ForeignKey("self", on_delete=models.CASCADE, null=True, blank=True, related_name="children")
    visible = models.BooleanField(default=True)
    content = models.TextField(blank=True)
    # Null: MiMo sent none. Otherwise the exact string, which goes back to MiMo unchanged.
    reasoning_content = models.TextField(null=True, blank=True)
    thinking_signature = models.TextField(null=True, blank=True)  # Anthropic format; MiMo sends ""
    status = models.CharField(max_length=20, choices=Status, default=Status.COMPLETE)
    finish_reason = models.CharField(max_length=40, blank=True)
    error_kind = models.CharField(max_length=40, blank=True)
    error_text = models.TextField(blank=True)
    # What the assistant turn ran with.
    model = models.CharField(max_length=100, blank=True)
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages")
    api_key_version = models.PositiveIntegerField(null=True, blank=True)  # which of the key's secrets served it
    parameters = models.JSONField(default=dict, blank=True)
    # Usage as MiMo reported it (null: not reported, e.g. a stream cut before the end).
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    cached_tokens = models.PositiveIntegerField(null=True, blank=True)
    # Of the prompt, the tokens of its images, audio and video, when MiMo reports them (OpenAI format).
    # Shown with the message only: they are inside prompt_tokens, which usage, cost and budgets count.
    image_tokens = models.PositiveIntegerField(null=True, blank=True)
    audio_tokens = models.PositiveIntegerField(null=True, blank=True)
    video_tokens = models.PositiveIntegerField(null=True, blank=True)
    web_search_calls = models.PositiveIntegerField(null=True, blank=True)
    web_search_pages = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Beaten by the generation while it streams; a stale beat means its process died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The server process that streams it (chat/processes.py): a restarted process knows at once
    # that a stream of its predecessor's is dead, without waiting for its beat to go stale.
    process = models.CharField(max_length=300, blank=True)
    # Set by a Stop from a process other than the generation's; it reads this with each beat.
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    # Tools MiMo wrote calls to inside its reasoning instead of calling them (a known quirk).
    reasoning_tool_calls = models.JSONField(default=list, blank=True)
    # How many of the oldest turns were left out to fit the model's context window.
    turns_left_out = models.PositiveIntegerField(default=0)
    # How many attachments of older questions were left out to fit it (their text stayed).
    attachments_left_out = models.PositiveIntegerField(default=0)
    # Read from an exported file: its figures are kept as history, but it never counts
    # toward usage, cost or budgets (a file's figures are whatever its writer typed).
    imported = models.BooleanField(default=False)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["conversation", "created_at"]),
            models.Index(fields=["conversation", "visible", "created_at", "id"]),
            models.Index(fields=["status", "heartbeat_at"]),
            # The budget check's newest answers and the pace's last minute, without reading the month.
            models.Index(fields=["created_at"]),
        ]
        constraints = [
            # One answer streams per conversation, whichever process starts it.
            models.UniqueConstraint(
                fields=["conversation"], condition=models.Q(status="streaming"), name="one_stream_per_conversation"
            )
        ]

    def __str__(self):
        return f"{self.role} message {self.pk} ({self.status})"

    @property
    def is_thinking(self):
        return self.status == self.Status.STREAMING and self.first_token_at is None

    @property
    def thinking_seconds(self):
        end = self.first_token_at or self.finished_at
        return round((end - self.created_at).total_seconds()) if end else None

    @property
    def duration_seconds(self):
        return round((self.finished_at - self.created_at).total_seconds(), 1) if self.finished_at else None

    @property
    def seconds_to_first_token(self):
        """Until the answer's first word (after any thinking)."""
        return round((self.first_token_at - self.created_at).total_seconds(), 1) if self.first_token_at else None

    @property
    def tokens_per_second(self):
        """Completion tokens (thinking included) over the whole duration."""
        seconds = (self.finished_at - self.created_at).total_seconds() if self.finished_at else 0
        return round(self.completion_tokens / seconds, 1) if self.completion_tokens and seconds > 0 else None

    @property
    def media_tokens(self):
        """(kind, tokens) of the prompt's media MiMo reported, those above zero: for the message's details."""
        counts = [(_("image"), self.image_tokens), (_("audio"), self.audio_tokens), (_("video"), self.video_tokens)]
        return [(kind, tokens) for kind, tokens in counts if tokens]

    @property
    def key_last_four(self):
        """The last four of the secret that served this answer: the key may have a newer secret since."""
        if self.api_key is None or self.api_key_version is None:
            return ""
        return self.api_key.last_four_of_version(self.api_key_version)

    @property
    def can_retry(self):
        return self.role == self.Role.ASSISTANT and self.status in (self.Status.ERROR, self.Status.STOPPED, self.Status.INTERRUPTED)

    def explanation(self):
        """What happened to this answer, in words for the person reading it."""
        if self.status == self.Status.STOPPED:
            return _("You stopped this answer. What arrived is kept.")
        if self.status == self.Status.INTERRUPTED:
            return _("The server stopped while MiMo was answering. What arrived is kept; you can try again.")
        if self.status == self.Status.ERROR and self.error_kind == "key_unusable":
            return _("The team's MiMo key cannot be used: it was revoked, or its base URL is no longer allowed. Ask a team admin.")
        if self.status == self.Status.ERROR and self.error_kind == "budget_exhausted":  # chat/limits.py
            return _(
                "The monthly budget ran out while MiMo was using tools, so the answer stops here. "
                "Once a team admin has raised it, Retry goes on from the tools’ results."
            )
        if self.status == self.Status.ERROR:
            try:
                return _(mimo.ErrorKind(self.error_kind).message)
            except ValueError:
                return _("Something went wrong on the server while MiMo was answering. What arrived is kept.")
        if self.finish_reason == "length":
            return _("The answer reached its length limit.")
        if self.finish_reason == "content_filter":
            return _("MiMo's content filter cut this answer short.")
        if self.finish_reason == "repetition_truncation":
            return _("MiMo cut this answer short because it started repeating itself.")
        if self.finish_reason == "tool_round_limit":
            return _("MiMo kept calling tools, so the answer was stopped after 8 rounds.")
        return ""


class ToolCall(models.Model):
    class Status(models.TextChoices):
        RECEIVING = "receiving", _("receiving")
        RUNNING = "running", _("running")
        DONE = "done", _("done")
        ERROR = "error", _("error")

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="tool_calls")
    index = models.PositiveSmallIntegerField()
    call_id = models.CharField(max_length=200)
    name = models.CharField(max_length=64)
    arguments_raw = models.TextField(blank=True)  # exactly as MiMo sent it
    arguments = models.JSONField(null=True, blank=True)
    result = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status, default=Status.RECEIVING)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["index"]
        constraints = [models.UniqueConstraint(fields=["message", "index"], name="one_tool_call_per_index")]


class Citation(models.Model):
    """A web-search source MiMo cited for a message."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="citations")
    index = models.PositiveSmallIntegerField()
    url = models.URLField(max_length=2000)
    title = models.CharField(max_length=500, blank=True)
    summary = models.TextField(blank=True)
    site_name = models.CharField(max_length=200, blank=True)
    publish_time = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["index"]


# --- Sharing and review ------------------------------------------------------------


class ShareQuerySet(models.QuerySet):
    def open_to(self, user):
        """The links this user may open now: of conversations of their teams, neither revoked, expired nor trashed."""
        return self.filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=timezone.now()),
            conversation__team__in=user.teams.all(),
            conversation__deleted_at__isnull=True,
            revoked_at__isnull=True,
        )


class Share(models.Model):
    """A read-only snapshot of a conversation that signed-in members of its team may open."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="shares")
    created_by = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The conversation as it was when shared (the export format), so later changes do not leak into it.
    snapshot = models.JSONField(default=dict)

    objects = ShareQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    @property
    def is_expired(self):
        return self.expires_at is not None and self.expires_at <= timezone.now()

    def shows_message(self, message_id):
        """Whether the snapshot holds this message (its export keeps each message's id)."""
        return any(
            message.get("id") == message_id
            for conversation in self.snapshot.get("conversations", [])
            for message in conversation.get("messages", [])
        )

    def why_closed(self):
        """Why the link no longer opens, in words for the person who followed it; "" while it opens."""
        if self.revoked_at:
            return _("Its owner revoked this link.")
        if self.is_expired:
            return _("This link has expired.")
        if self.conversation.deleted_at:
            return _("Its owner deleted this conversation.")
        return ""

    def revoke(self):
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


class ShareOpening(models.Model):
    """Who opened a share, and when: its owner sees the list."""

    share = models.ForeignKey(Share, on_delete=models.CASCADE, related_name="openings")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    opened_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-opened_at"]


class ReviewAccessQuerySet(models.QuerySet):
    def covering(self, reviewer, conversation):
        """The recorded reasons under which this reviewer may still read this conversation.

        One reason covers REVIEW_READING_TIME of reading, not one page view: a reviewer
        pages through a long conversation and reloads, and asking again each time would
        teach them to type "x". The record is the database row itself, so every page
        that shows contents is covered by a reason its owner can see.
        """
        return self.filter(
            reviewer=reviewer, conversation=conversation, opened_at__gt=timezone.now() - REVIEW_READING_TIME
        )


# How long a reason given for opening a conversation lets the reviewer read it.
REVIEW_READING_TIME = timedelta(hours=1)


class ReviewAccess(models.Model):
    """A reviewer opened someone's conversation: who, whose, when, why. Kept when the conversation goes."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.SET_NULL, null=True, blank=True, related_name="review_accesses"
    )
    conversation_title = models.CharField(max_length=200, blank=True)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="review_accesses")
    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="reviews_of_mine")
    reviewer = models.ForeignKey(User, on_delete=models.CASCADE, related_name="reviews_made")
    reason = models.TextField(_("reason"))
    opened_at = models.DateTimeField(default=timezone.now)

    objects = ReviewAccessQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["owner", "-opened_at"])]

    @classmethod
    def record(cls, conversation, reviewer, reason):
        return cls.objects.create(
            conversation=conversation,
            conversation_title=conversation.title,
            team=conversation.team,
            owner=conversation.owner,
            reviewer=reviewer,
            reason=reason,
        )


# --- Attachments -------------------------------------------------------------------


class Attachment(models.Model):
    """A file a member attached to a message, as chat/attachments.py read and stored it.

    The file is stored once per content, named by its sha256 (`file_name`): rows with the same
    sha256 share it, and it is deleted with the last of them (chat/signals.py).
    """

    class Kind(models.TextChoices):
        IMAGE = "image", _("image")
        AUDIO = "audio", _("audio")
        VIDEO = "video", _("video")
        DOCUMENT = "document", _("document")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="attachments")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="attachments")
    # Null until the message it was uploaded for is sent; until then only its owner sees it.
    message = models.ForeignKey(Message, on_delete=models.CASCADE, null=True, blank=True, related_name="attachments")
    kind = models.CharField(max_length=20, choices=Kind)
    name = models.CharField(max_length=255)  # as uploaded, for people to read; never a path
    content_type = models.CharField(max_length=100)  # of the stored file, read from its content
    size = models.PositiveBigIntegerField()  # of the stored file, in bytes
    sha256 = models.CharField(max_length=64)  # of the stored file
    # Images: their size in pixels, as stored (scaled down to what MiMo takes).
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    # Audio and video, in seconds, as FFmpeg read it (chat/attachments.py media_facts).
    duration = models.FloatField(null=True, blank=True)
    # Documents: the text MiMo is sent, as extracted.
    text = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["sha256"])]

    def __str__(self):
        return f"{self.kind} {self.name}"

    @property
    def file_name(self):
        """Its file's name in the "attachments" storage: two levels, so no folder holds too many."""
        return f"{self.sha256[:2]}/{self.sha256[2:]}"

    @property
    def duration_label(self):
        """Audio's or video's length as a player shows it ("0:07", "1:02:03"); "" for other kinds.
        At least a second: a clip that lasts any time at all does not read "0:00"."""
        if self.duration is None:
            return ""
        minutes, seconds = divmod(max(1, round(self.duration)), 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"

    @property
    def thumbnail_name(self):
        """An image's thumbnail beside it (WebP); other kinds have none."""
        return f"{self.file_name}.thumbnail.webp"

    def may_be_seen_by(self, user):
        """Whether this user may see it: as whoever may see its message (see get_attachment_for)."""
        conversation = self.conversation
        if conversation.owner_id == user.pk:
            return conversation.deleted_at is None
        if self.message_id is None:
            return False
        reviewable = Conversation.objects.reviewable_by(user).filter(pk=conversation.pk).exists()
        if reviewable and ReviewAccess.objects.covering(user, conversation).exists():
            return True
        shares = Share.objects.open_to(user).filter(conversation=conversation)
        return any(share.shows_message(self.message_id) for share in shares)


def get_attachment_for(user, attachment_id):
    """The attachment, if this user may see it; anyone else gets a 404, as if it did not exist.

    Its owner sees it while its conversation is out of the trash, sent or not. Once sent, so do a
    reviewer whose recorded reason covers its conversation (as the review page), and members of
    the team who hold an open share link whose snapshot has its message (as the shared page).
    """
    try:
        attachment = Attachment.objects.select_related("conversation").get(pk=attachment_id)
    except (Attachment.DoesNotExist, ValidationError):
        raise Http404
    if not attachment.may_be_seen_by(user):
        raise Http404
    return attachment


# --- Prices ------------------------------------------------------------------------


class PriceQuerySet(models.QuerySet):
    def in_force(self, model, moment):
        """The model's price at that moment: the one valid from the latest time at or before it."""
        return self.filter(model=model, valid_from__lte=moment).order_by("-valid_from").first()


class Price(models.Model):
    """What MiMo charges for a model from a moment on; a message costs what was in force when it ran.

    A superuser edits these in the Django admin because prices change: a new
    price is a new row with a later `valid_from`, so older messages keep theirs.
    """

    model = models.CharField(_("model"), max_length=100)
    valid_from = models.DateTimeField(_("valid from"))
    currency = models.CharField(_("currency"), max_length=3, default="USD")
    input_per_million = models.DecimalField(_("input, per million tokens"), max_digits=12, decimal_places=6)
    cached_input_per_million = models.DecimalField(
        _("cached input, per million tokens"), max_digits=12, decimal_places=6
    )
    output_per_million = models.DecimalField(_("output, per million tokens"), max_digits=12, decimal_places=6)
    web_search_per_thousand = models.DecimalField(
        _("web search, per thousand calls"), max_digits=12, decimal_places=6, default=0
    )

    objects = PriceQuerySet.as_manager()

    class Meta:
        ordering = ["model", "-valid_from"]
        verbose_name = _("price")
        verbose_name_plural = _("prices")
        constraints = [models.UniqueConstraint(fields=["model", "valid_from"], name="one_price_per_model_and_moment")]

    def __str__(self):
        return f"{self.model} from {self.valid_from:%Y-%m-%d}"

    def cost_of(self, message):
        """What the message cost at this price, in `currency`; None when MiMo reported no usage.

        Cached prompt tokens are charged at the cached rate, the rest of the prompt at the input rate.
        """
        if message.prompt_tokens is None or message.completion_tokens is None:
            return None
        cached = message.cached_tokens or 0
        tokens = (
            (message.prompt_tokens - cached) * self.input_per_million
            + cached * self.cached_input_per_million
            + message.completion_tokens * self.output_per_million
        )
        return tokens / 1_000_000 + (message.web_search_calls or 0) * self.web_search_per_thousand / 1000


# --- Usage roll-ups -----------------------------------------------------------------


class UsageRollup(models.Model):
    """The sums of a group of answers: one team, member, key, model, day and price period (for
    the usage pages), or one team, member, model, month and price period (for the budgets).

    Budgets and usage pages read these instead of summing a month of answers
    (chat/usage.py keeps them in step with the messages, in the same transaction).
    Days and months are in the server's time zone (TIME_ZONE), as budgets' months are.
    The cost is not stored: it is computed from the sums and the price row when read
    (chat.usage.grouped), so an edited rate applies as it does to the answers themselves.
    """

    class Period(models.TextChoices):
        DAY = "day"
        MONTH = "month"  # `day` is the month's first; `api_key` is None: budgets are per team and member

    period = models.CharField(max_length=5, choices=Period)

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    # Deleting a key leaves its answers with none recorded; their sums follow them.
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    model = models.CharField(max_length=100, blank=True)
    day = models.DateField()  # the day, or the first of the month
    # The price in force for these answers; None when the model had none (they cost nothing).
    price = models.ForeignKey(Price, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    answers = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    web_search_calls = models.BigIntegerField(default=0)
    # Of the prompt tokens, MiMo's count for images, audio and video (an answer's None adds 0).
    image_tokens = models.BigIntegerField(default=0)
    audio_tokens = models.BigIntegerField(default=0)
    video_tokens = models.BigIntegerField(default=0)
    # The group's largest answer (prompt + completion tokens): what the budget check holds for
    # each answer still streaming (chat/limits.py). A high-water mark: it stays when the answer
    # is deleted, which only makes the hold a little larger; a rebuild measures it again.
    largest_tokens = models.BigIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["team", "period", "day"]),
            models.Index(fields=["owner", "period", "day"]),
        ]
        constraints = [
            # One row a group, so that an answer's figures are added once (None as 0: NULLs are all distinct).
            models.UniqueConstraint(
                "period", "team", "owner", Coalesce("api_key", 0), "model", "day", Coalesce("price", 0),
                name="one_usage_rollup_per_group",
            )
        ]

    def __str__(self):
        return f"usage of team {self.team_id}, member {self.owner_id}, {self.model} on {self.day}"


# --- Search ------------------------------------------------------------------------


class SearchEntry(models.Model):
    """A piece of a member's text as the full-text index reads it; chat/search.py writes and reads these.

    The database's own index (FTS5 on SQLite, GIN on PostgreSQL; migration 0005) covers `text`.
    Entries go with their message or conversation (cascade); signals keep them up to date.
    """

    class Kind(models.TextChoices):
        TITLE = "title", _("title")
        MESSAGE = "message", _("message")
        REASONING = "reasoning", _("thinking")
        ATTACHMENT = "attachment", _("attached file")  # the text of a message's attached documents

    # Indexed with `kind` below: a conversation's title is looked up among its many entries.
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+", db_index=False)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind)
    start = models.PositiveIntegerField(default=0)  # where this piece starts in the original text
    text = models.TextField()  # its words, folded and spaced (chat.search.words)
    written_at = models.DateTimeField()  # when the text was written: the date filters read this

    class Meta:
        verbose_name_plural = "search entries"
        indexes = [models.Index(fields=["conversation", "kind"], name="searchentry_conversation_kind")]
