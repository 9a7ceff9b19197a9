"""One assistant answer as an asyncio task that belongs to the server process, not to a socket.

A generation streams MiMo's answer, runs the tools MiMo calls, and keeps the
rows up to date. Closing or reloading a tab never stops it: only `stop()` does,
from any tab and any process.

What the page sees travels two ways:
- to sockets in this process, directly: each watching socket has an outbox
  (an unbounded queue) that a frame is put into, so no frame is ever dropped
  and frames keep their order;
- to sockets in other processes (only with the Redis channel layer), through
  the group `conversation-<id>`: snapshots always, the frames between them
  once a socket elsewhere has asked for a snapshot (a socket does when it
  hears of an answer). The layer may drop a message when a channel is full:
  every frame carries a sequence number, and a socket that sees a gap asks
  for a snapshot.

The database is the truth: it is written about once a second while a stream
runs and at every change of state, never per token.
"""

import asyncio
import base64
import io
import logging
import time
import uuid
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.html import escape
from django.utils.safestring import mark_safe
from PIL import Image

from accounts.crypto import UndecryptableSecret
from accounts.models import Team
from chat import limits, mimo, processes, render, search, titles, tools, versions
from chat.mimo.wire import user_text
from chat.models import Attachment, Citation, Conversation, Message, ToolCall
from chat.tokens import context_budget, estimated_tokens

logger = logging.getLogger(__name__)

def process_id():
    """Tells this process's frames from other processes': its identity, which its streams record too."""
    return processes.current()


FRAME_INTERVAL = 0.05  # at most about 20 frames a second per stream while the process has room
BUSIEST_FRAME_INTERVAL = 0.1  # ... down to 10 a second as its core fills (see frame_interval_for)
FLUSH_INTERVAL = 1.0  # the database at most about once a second per stream
HEARTBEAT_INTERVAL = 15.0  # a beat while MiMo is silent; stale after 45 s (Message.stale_streams)
STOP_POLL_INTERVAL = 2.0  # how often the Stop flags other processes may set are read
MAX_TOOL_ROUNDS = 8
# Pauses between tries of an answer's final save that the database refused, about 15 s in all
# (on SQLite each try may first wait out the 5 s busy timeout) ...
FINAL_SAVE_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
SAVE_LATER_INTERVAL = 10.0  # ... then one log line, and a try this often until it is saved
KEY_UNUSABLE = "key_unusable"  # an error kind of ours, beside chat.mimo's


def group_name(conversation_id):
    return f"conversation-{conversation_id}"


def is_shared_layer():
    """Whether other processes can hear us: only a layer outside this process (Redis)."""
    layer = get_channel_layer()
    return layer is not None and not isinstance(layer, InMemoryChannelLayer)


_layer_reported_down = False  # so that an outage is logged once per process, not once per socket and stream


def report_layer(reachable, error=None):
    """Log the channel layer going away and coming back, once for all the sockets and streams of this process."""
    global _layer_reported_down
    if not reachable and not _layer_reported_down:
        logger.warning("Channel layer unreachable (%s): sockets stay open and catch up when it is back", error)
    elif reachable and _layer_reported_down:
        logger.warning("Channel layer reachable again: sockets catch up")
    _layer_reported_down = not reachable


# --- Who watches what, in this process -------------------------------------------


@dataclass(eq=False)
class Watcher:
    """One socket watching one conversation: frames wait in its outbox until sent."""

    conversation_id: uuid.UUID
    language: str
    time_zone: str
    outbox: asyncio.Queue = field(default_factory=asyncio.Queue)

    def deliver(self, html):
        self.outbox.put_nowait(html)


_watchers: dict[str, set[Watcher]] = {}
_generations: dict[str, "Generation"] = {}  # conversation id → its running generation (strong reference)


def watch(watcher):
    """Register a socket; returns the running generation's snapshot if there is one here.

    Registration and snapshot happen in one step with no await in between, so
    the socket gets the state as it is now and then every later frame: no gap,
    no duplicate.
    """
    key = str(watcher.conversation_id)
    _watchers.setdefault(key, set()).add(watcher)
    generation = _generations.get(key)
    return generation.snapshot_for(watcher) if generation else None


def unwatch(watcher):
    watchers = _watchers.get(str(watcher.conversation_id), set())
    watchers.discard(watcher)
    if not watchers:
        _watchers.pop(str(watcher.conversation_id), None)


# --- Starting and stopping -------------------------------------------------------


class AlreadyStreaming(Exception):
    pass


class NoKey(Exception):
    """The team has no key this conversation may use."""


class AttachmentsGone(Exception):
    """An attachment of the message was removed or sent since the form was checked (another tab)."""


async def start(conversation, *, text, user_time_zone="", instead_of=None, attachments=()):
    """Save the user's message and an empty answer, then stream the answer in the background.

    `instead_of`: the message this turn is a new version of (an edited
    question, or a regenerated or retried answer); its branch gives way to
    the new one. `attachments`: the member's files waiting in this conversation
    (chat/forms.py's SendForm checked them), sent with the new message.
    Returns at once with the assistant message; the work goes on
    in a task this module keeps a strong reference to. Raises NoKey,
    AlreadyStreaming, AttachmentsGone or limits.Refused when nothing was saved or sent.
    """
    try:
        user_message, message, window, metered = await create_turn(conversation, text, instead_of, attachments)
    except AlreadyStreaming:
        # The answer in the way may be one that a process which is gone left streaming.
        if not await end_orphaned_stream(conversation.pk):
            raise
        user_message, message, window, metered = await create_turn(conversation, text, instead_of, attachments)
    keep_tending()
    generation = Generation(conversation, message, message.api_key, user_time_zone, metered=metered)
    _generations[str(conversation.pk)] = generation
    generation.announce(user_message, window)
    generation.task = asyncio.get_running_loop().create_task(generation.run())
    return message


@database_sync_to_async
def create_turn(conversation, text, instead_of=None, attachments=()):
    """The user's message (none for a regenerated answer) and the empty answer, together or not at all.

    The user's message takes its attachments: the ones sent with it, or, for an
    edited question, copies of the attachments of the question it replaces (the
    copies share its files: they are stored once per content).

    Each follows the message before it on the branch: a new turn follows the
    visible branch's tip, a new version takes the parent of the one it
    replaces and becomes the visible branch. Then the window the page shows
    is returned too, since the whole list changed (None for a plain new turn).
    The answer's key is chosen here, in the same trip to the database thread:
    a hundred answers starting at once queue for that one thread. Last, whether
    a budget applies to the member (limits.admit).
    """
    now = timezone.now()
    try:
        with transaction.atomic():
            # The lock versions.switch_to takes: the branch does not change while a turn starts on it.
            Conversation.objects.select_for_update().only("pk").get(pk=conversation.pk)
            # The budget check's lock, held to the commit; the key is chosen by the team as locked.
            team = Team.objects.select_for_update().get(pk=conversation.team_id)
            api_key = conversation.key_for_next_turn(team)
            if api_key is None:
                raise NoKey
            # Budgets and pace, before anything is saved or sent.
            metered = limits.admit(conversation, team)
            if instead_of is None:
                parent_id = versions.branch(conversation.pk).order_by("created_at", "id").values_list("id", flat=True).last()
            else:
                parent_id = instead_of.parent_id
            user_message = None
            if text or attachments:
                user_message = Message.objects.create(
                    conversation=conversation, role=Message.Role.USER, content=text, created_at=now, parent_id=parent_id
                )
                attach(user_message, attachments, instead_of)
            message = Message.objects.create(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                parent_id=user_message.pk if user_message else parent_id,
                status=Message.Status.STREAMING,
                model=conversation.model,
                api_key=api_key,
                api_key_version=api_key.secret_version,
                parameters=conversation.parameters(),
                created_at=now,
                heartbeat_at=now,
                process=process_id(),
            )
            if instead_of is not None:
                versions.show_branch_of(message)
    except IntegrityError:  # another answer is streaming, maybe started by another process
        raise AlreadyStreaming from None
    if instead_of is None:
        return user_message, message, None, metered
    window = versions.latest_window(conversation)
    # The generation renders its own copy of the answer from now on: with its `‹ n/m ›`.
    message.version = next((m.version for m in window.messages if m.pk == message.pk), None)
    return user_message, message, window_context(conversation, window), metered


def attach(user_message, attachments, instead_of):
    """Give the new user message its attachments, inside create_turn's transaction.

    Only files still waiting (unsent, of this conversation and its owner) are taken, in one
    update: one another tab removed or sent since the form was checked raises AttachmentsGone,
    and the transaction leaves nothing behind.
    """
    conversation = user_message.conversation
    taken = []
    if attachments:
        taken = sorted(attachments, key=lambda attachment: (attachment.created_at, str(attachment.pk)))  # as a reload lists them
        waiting = Attachment.objects.filter(
            pk__in=[attachment.pk for attachment in taken], conversation=conversation, owner_id=conversation.owner_id, message__isnull=True
        )
        if waiting.update(message=user_message) != len(taken):
            raise AttachmentsGone
        for attachment in taken:
            attachment.message = user_message
    elif instead_of is not None and instead_of.role == Message.Role.USER:
        fields = ["owner_id", "conversation_id", "kind", "name", "content_type", "size", "sha256", "width", "height", "duration", "text"]
        taken = Attachment.objects.bulk_create(
            Attachment(message=user_message, **{name: getattr(old, name) for name in fields})
            for old in instead_of.attachments.all()
        )
    # As a prefetch would leave them, with no query: the frames that show the message are rendered
    # in the event loop, where none may run.
    user_message._prefetched_objects_cache = {"attachments": taken}
    if any(attachment.text for attachment in taken):  # a document: search finds the question by its text at once
        search.index_attachments(user_message, taken)


async def stop(conversation_id):
    """Stop the conversation's generation, wherever it runs.

    Here: at once. Left by a process that is gone: marked `interrupted` at once.
    Elsewhere: through the group (fast) and a flag in the database that the
    generation's process reads every STOP_POLL_INTERVAL (sure). With nothing
    streaming, the page that asked is behind (the answer ended, or was marked
    as its process restarted, while its socket was away): it is shown the
    answer as saved.
    """
    if generation := _generations.get(str(conversation_id)):
        generation.stop()
        return
    if await end_orphaned_stream(conversation_id):
        return
    asked = await Message.objects.filter(conversation_id=conversation_id, status=Message.Status.STREAMING).aupdate(
        stop_requested_at=timezone.now()
    )
    if not asked:
        await show_last_answer(conversation_id)
    elif is_shared_layer():
        try:
            await get_channel_layer().group_send(group_name(conversation_id), {"type": "generation.stop"})
        except Exception as error:  # Redis unreachable: the flag in the database stops it, a little later
            report_layer(False, error)


def running_ids():
    return list(_generations)


def mark_dead_at_start():
    """Run once as a server process starts (mimoweb/asgi.py), before it serves.

    Streams its dead predecessor left are marked `interrupted` at once
    (chat/processes.py), so a restart frees their conversations at once
    instead of when their beat goes stale. Whatever stops it (a database not
    reachable or not migrated yet; no database access at all where the module
    is only imported, as by a test) only leaves them to the sweeps of
    `tend_forever`.
    """
    try:
        if marked := Message.objects.mark_dead():
            logger.info("Marked %s answers left streaming by a process that is gone as interrupted", marked)
    except Exception as error:
        logger.warning("Could not mark the answers a process that is gone left streaming: %s", error)
    finally:
        connection.close()  # this thread serves no request: its connection would sit idle for good


async def end_orphaned_stream(conversation_id):
    """If the conversation's stream was left by a process that is gone (Message.orphaned_streams), mark it
    `interrupted` now, keeping what it holds, and show it so, with Retry, on every page watching.

    Returns whether there was one. Without this, Stop and Send waited for the
    heartbeat to go stale: most of a minute.
    """
    # Not database_sync_to_async: a view stops an answer too (async_to_sync), and that would close its connection.
    if not await sync_to_async(mark_orphan_interrupted)(conversation_id, running_ids()):
        return False
    await show_last_answer(conversation_id)
    return True


def mark_orphan_interrupted(conversation_id, running):
    return Message.objects.filter(conversation_id=conversation_id).mark_dead(running=running)


async def show_last_answer(conversation_id):
    """Show every page watching the conversation its last answer as saved, and the composer ready to send."""
    watchers = list(_watchers.get(str(conversation_id), ()))
    frames = await sync_to_async(render_last_answer)(conversation_id, watchers)
    if frames is None:
        return
    local, remote = frames
    for watcher, html in zip(watchers, local):
        watcher.deliver(html)
    if is_shared_layer():
        # As a generation's snapshot, under a name of its own: sockets elsewhere replace what they show.
        frame = {"type": "generation.frame", "origin": process_id(), "generation": uuid.uuid4().hex, "seq": 1}
        await get_channel_layer().group_send(group_name(conversation_id), frame | {"snapshot": True, "html": remote})


def render_last_answer(conversation_id, watchers):
    """The frames of `show_last_answer`: one per watcher here, one per language for other processes; None without an answer."""
    answers = Message.objects.select_related("api_key").filter(
        conversation_id=conversation_id, role=Message.Role.ASSISTANT, visible=True
    )
    message = answers.order_by("created_at", "id").last()  # a stream is always the visible branch's newest answer
    if message is None:
        return None
    versions.number_versions([message])  # its `‹ n/m ›`
    context = message_context(
        message, tool_calls=list(message.tool_calls.all()), citations=list(message.citations.all())
    ) | {"composer_streaming": message.status == Message.Status.STREAMING}
    partial = "chat/message.html#message-snapshot"
    local = [render_partial(partial, context, watcher) for watcher in watchers]
    return local, render_in_every_language(partial, context)


_tender = None


def keep_tending():
    """While this process serves chats, one task tends all of its streams (see `tend_forever`)."""
    global _tender
    loop = asyncio.get_running_loop()
    if _tender is None or _tender.done() or _tender.get_loop() is not loop:
        _tender = loop.create_task(tend_and_restart())


async def tend_and_restart():
    """`tend_forever`, started again a second after it fails, with one line in the log.

    A refused save of progress (SQLite's lock held past its busy timeout by
    another writer) used to end the task, and with it the saving and sweeping
    of every stream of the process until the next socket connected. What that
    save held is written by the next pass: every stream counts as unsaved again.
    """
    while True:
        try:
            await tend_forever()
        except Exception as error:
            logger.error("Saving the streams' progress failed and starts again: %s: %s", type(error).__name__, error)
            for generation in list(_generations.values()):
                generation.unsaved = True
            await asyncio.sleep(FLUSH_INTERVAL)
        else:
            return  # it never ends by itself; a stand-in that does (a test's) ends the task, not loops on it


async def tend_forever():
    """Once a second, for every stream of this process at once: save what arrived and beat.

    One transaction for all streams, not one per stream: at 300 streams, 300
    separate saves a second kept the database thread busy enough to starve
    the event loop of the GIL. With a shared channel layer it also reads the
    Stop flags other processes set, and every HEARTBEAT_INTERVAL it marks
    the streams of dead processes `interrupted`: they stop beating, and a
    beat older than 45 s means a lost process, so they are marked within a minute.
    It also sets how often streams send frames, by how busy the process was.
    """
    global frame_interval
    last_sweep = last_stop_poll = -HEARTBEAT_INTERVAL
    while True:
        now = time.monotonic()
        if rows := [row for generation in list(_generations.values()) if (row := generation.progress(now))]:
            await database_sync_to_async(save_progress)(rows)
        if is_shared_layer() and _generations and now - last_stop_poll >= STOP_POLL_INTERVAL:
            last_stop_poll = now
            for message_id in await database_sync_to_async(stops_requested)(list(_generations.values())):
                if generation := next((g for g in _generations.values() if g.message.pk == message_id), None):
                    generation.stop()
        if now - last_sweep >= HEARTBEAT_INTERVAL:
            last_sweep = now
            await database_sync_to_async(Message.objects.mark_dead)(running=running_ids())
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.sleep(FLUSH_INTERVAL)
        frame_interval = frame_interval_for((time.process_time() - cpu) / (time.monotonic() - wall))


def frame_interval_for(busy):
    """How long a stream waits between frames, by the share of a core the process used in the last second.

    Each frame costs about the same whatever it carries, so when the process
    gets busy, fewer and fuller frames let the delay grow gently instead of
    frames queueing behind each other: 20 a second up to a quarter of a core,
    then fewer, down to 10 a second from half a core, which leaves the core
    room for a burst. Not fewer: a token waits for its frame up to the interval,
    and with 5 a second 200 streams' p99 delay could not go below 200 ms, while
    10 a second cost about the same CPU per token (bench/README.md).
    """
    fill = min(1.0, max(0.0, (busy - 0.25) / 0.25))
    return FRAME_INTERVAL + fill * (BUSIEST_FRAME_INTERVAL - FRAME_INTERVAL)


frame_interval = FRAME_INTERVAL  # set once a second by tend_forever


PROGRESS_FIELDS = ("content", "reasoning_content", "thinking_signature", "first_token_at", "heartbeat_at")
# What an answer's end writes: what the generation sets, and nothing another writer may have
# changed meanwhile (a Stop asked through another process, the branch shown).
FINISHED_FIELDS = (
    *PROGRESS_FIELDS, "status", "finish_reason", "error_kind", "error_text", "finished_at", "reasoning_tool_calls",
    "prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_tokens", "image_tokens", "audio_tokens",
    "video_tokens", "web_search_calls", "web_search_pages",
)


def save_progress(rows):
    """Write (content, reasoning, signature, first token, heartbeat, message id) rows in one transaction.

    Plain SQL because the ORM's own work per saved row (about 300 µs on our
    machine, against 25 µs for the statement) was most of a busy second. Only
    a message still streaming is written: one that finished meanwhile keeps
    what `Generation.finish` saved.
    """
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(Message._meta.get_field(name).column)} = %s" for name in PROGRESS_FIELDS)
    sql = f"UPDATE {quote(Message._meta.db_table)} SET {assignments} WHERE {quote('id')} = %s AND {quote('status')} = %s"
    adapt = connection.ops.adapt_datetimefield_value
    params = [
        (content, reasoning, signature, adapt(first_token), adapt(beat), pk, Message.Status.STREAMING)
        for content, reasoning, signature, first_token, beat, pk in rows
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, params)


def stops_requested(generations):
    """The messages of these generations that another process asked to stop."""
    ids = [generation.message.pk for generation in generations]
    return set(Message.objects.filter(pk__in=ids, stop_requested_at__isnull=False).values_list("pk", flat=True))


async def request_snapshot(conversation_id):
    """Ask whichever process runs this conversation's generation to send a snapshot frame."""
    await get_channel_layer().group_send(group_name(conversation_id), {"type": "generation.snapshot.request"})


# --- Rendering -----------------------------------------------------------------


def message_context(message, *, tool_calls=None, citations=None, answer=None):
    """What the `#message` partial needs, for a saved message or a live one."""
    if answer is None:
        if message.status == Message.Status.STREAMING:
            renderer = answer_renderer(message)
            answer = (renderer.feed(message.content).final, renderer.tail)
        else:
            answer = (render.render_markdown(message.content), "")
    return {
        "message": message,
        "tool_calls": message.tool_calls.all() if tool_calls is None else tool_calls,
        "citations": message.citations.all() if citations is None else citations,
        "answer_final": answer[0],
        "answer_tail": answer[1],
    }


def answer_renderer(message):
    """The renderer of a streaming answer, whose open element the delta frames replace."""
    return render.IncrementalRenderer(open_id=f"message-{message.pk}-open")


def delta_frame(message, reasoning_delta, update):
    """The HTML of a frame that adds to a streaming answer, built without the template engine.

    Delta frames are most of what a process sends, and rendering them through
    a template was 13 % of a busy process; they hold no words to translate.
    Each top-level element is swapped in by htmx: by its id, or where its
    hx-swap-oob says. See render.Update for the tail's two ways.
    """
    prefix = f"message-{message.pk}"
    parts = []
    if update is not None and update.tail is None:
        # First: a frame is parsed as a <template>'s content, whose first element
        # sets how the rest parses, and a table's <tbody> must not come after a <div>.
        if update.added:
            container = update.container
            parts.append(f'<{container} hx-swap-oob="{update.added_to}">{update.added}</{container}>')
        parts.append(update.open)
    if reasoning_delta:
        parts.append(f'<span hx-swap-oob="beforeend:#{prefix}-reasoning">{escape(reasoning_delta)}</span>')
    if update is not None and update.final:
        parts.append(f'<div hx-swap-oob="beforeend:#{prefix}-final">{update.final}</div>')
    if update is not None and update.tail is not None:
        parts.append(f'<div id="{prefix}-tail">{update.tail}</div>')
    return "".join(parts)


def window_context(conversation, window):
    """What the `#messages` partial needs: a window of the visible branch (chat/versions.py)."""
    return {
        "conversation": conversation,
        "window": window,
        "items": [message_context(message) for message in window.messages],
    }


def render_in_every_language(name, context):
    """A partial for other processes' sockets, once per language (each picks its own): {code: html}."""
    rendered = {}
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            rendered[code] = render_to_string(name, context)
    return rendered


def render_partial(name, context, watcher):
    """`name` is a template's partial, such as "chat/message.html#message-snapshot"."""
    # Each socket hears frames in its own language and time zone.
    with translation.override(watcher.language), timezone.override(watcher.time_zone or None):
        return render_to_string(name, context)


# --- Fitting the history into the context window ----------------------------------


# MiMo's image tokens (mimo-api.md §5.3): 16-pixel patches merged 2×2, so one token per 32×32
# pixels, with the pixel count clamped to [8192, 8388608].
IMAGE_PIXELS_PER_TOKEN = 32 * 32
MIN_IMAGE_PIXELS = 8192
# Audio is about 6.25 tokens a second (§5.3); its bytes stand in for its length, as if it were
# 64 kbit/s (8,000 bytes a second), which most recordings exceed: an upper bound again. Video's
# tokens are not documented: a token a kilobyte is a cautious guess.
AUDIO_BYTES_PER_TOKEN = 8000 / 6.25
VIDEO_BYTES_PER_TOKEN = 1000


def media_tokens(turn):
    """About how many tokens a user turn's images, audio and video cost."""
    images = sum(image_tokens(image.url) for image in turn.images)
    audio = sum(len(part.data) * 3 / 4 / AUDIO_BYTES_PER_TOKEN for part in turn.audio)
    videos = sum(len(part.url) * 3 / 4 / VIDEO_BYTES_PER_TOKEN for part in turn.videos)
    return images + int(audio + videos)


# Enough of an image's base64 for Pillow to find its size in: formats put it in their first bytes
# (a JPEG after its tables, well within this once its metadata is gone).
IMAGE_HEADER_BASE64 = 64 * 1024


def image_tokens(url):
    """An inline image's tokens from its pixel size (its header, read by Pillow); the most an image costs when unreadable."""
    pixels = mimo.MAX_IMAGE_PIXELS
    if url.startswith("data:"):
        start = url.index(",") + 1  # slices of the URL, not a copy of its data: it may hold megabytes
        for end in (start + IMAGE_HEADER_BASE64, len(url)):  # the head first: decoding a whole image for its size is waste
            try:
                with Image.open(io.BytesIO(base64.b64decode(url[start:end]))) as image:
                    pixels = image.width * image.height
                break
            except (OSError, ValueError, Image.DecompressionBombError):
                continue
    return min(max(pixels, MIN_IMAGE_PIXELS), mimo.MAX_IMAGE_PIXELS) // IMAGE_PIXELS_PER_TOKEN


def turn_tokens(turn):
    match turn:
        case mimo.UserTurn():
            return estimated_tokens(user_text(turn)) + media_tokens(turn)
        case mimo.AssistantTurn():
            calls = sum(estimated_tokens(call.name + call.arguments) for call in turn.tool_calls)
            return estimated_tokens(turn.text) + estimated_tokens(turn.reasoning or "") + calls
        case mimo.ToolResult(content=content):
            return estimated_tokens(content)


def fit_to_context(turns, system, model):
    """Leave out what is oldest until the rest fits beside the answer's budget.

    First the attachments of older questions, oldest first (their text stays): an image or a
    document costs far more than the words around it. Then, if that is not enough, the oldest
    exchanges. An exchange runs from one user turn to the next, so a tool call never loses its
    result. The latest exchange is always kept whole. Returns the turns kept, how many turns
    were left out and how many attachments.
    """
    budget = context_budget(model) - estimated_tokens(system)
    turns, attachments_left_out = leave_out_old_attachments(turns, budget)
    exchanges = []
    for turn in turns:
        if isinstance(turn, mimo.UserTurn) or not exchanges:
            exchanges.append([])
        exchanges[-1].append(turn)
    sizes = [sum(turn_tokens(turn) for turn in exchange) for exchange in exchanges]
    while len(exchanges) > 1 and sum(sizes) > budget:
        exchanges.pop(0)
        sizes.pop(0)
    kept = [turn for exchange in exchanges for turn in exchange]
    return kept, len(turns) - len(kept), attachments_left_out


def leave_out_old_attachments(turns, budget):
    """The turns with the oldest questions' attachments taken out until they fit (or none is left
    but the latest question's), and how many were taken out."""
    sizes = [turn_tokens(turn) for turn in turns]
    latest = max((index for index, turn in enumerate(turns) if isinstance(turn, mimo.UserTurn)), default=0)
    turns, left_out = list(turns), 0
    for index in range(latest):
        if sum(sizes) <= budget:
            break
        turn = turns[index]
        if isinstance(turn, mimo.UserTurn):
            count = len(turn.images) + len(turn.audio) + len(turn.videos) + len(turn.documents)
            if count:
                turns[index] = mimo.UserTurn(turn.text)
                sizes[index] = turn_tokens(turns[index])
                left_out += count
    return turns, left_out


# --- The generation ----------------------------------------------------------------


class Generation:
    def __init__(self, conversation, message, api_key, user_time_zone, *, metered=True):
        self.conversation = conversation
        self.metered = metered  # a budget applies to the member: their meters are updated after the answer
        self.watch_key = str(conversation.pk)  # its key in _watchers and _generations (str of a UUID costs, per frame)
        self.message = message  # the assistant message of the current round
        self.api_key = api_key
        self.user_time_zone = user_time_zone
        self.task = None
        self.key = uuid.uuid4().hex  # names this answer's frames; their seq counts from 1
        self.seq = 0
        self.renderer = answer_renderer(message)
        self.answer_final = []  # rendered blocks so far, for snapshots
        self.tool_calls: dict[int, ToolCall] = {}
        self.citations: list[Citation] = []
        self.pending_reasoning = []
        self.pending_text = []
        self.pending_tool_calls = set()
        self.frame_scheduled = None
        self.last_frame = 0.0
        self.unsaved = False  # text arrived since the last save
        self.new_text, self.new_reasoning = [], []  # ... not yet added to the message (take_text)
        self.saved_at = time.monotonic()
        self.remote_outbox = asyncio.Queue() if is_shared_layer() else None
        # Whether a socket in another process watches: until one asks for a snapshot, only
        # snapshots go to the group (each delta through Redis cost more than the rest of a frame).
        self.watched_elsewhere = False
        self.stopping = False
        self.more_rounds = False  # a tool round ended and the next one is being started

    # -- frames --

    def announce(self, user_message=None, window=None):
        """New messages appear in every watching page (each round's answer is a new message).

        A new version changes the branch: then every page gets the whole window instead.
        """
        if window is not None:
            self.publish("chat/message.html#messages-replaced", window | {"composer_streaming": True}, snapshot=True)
            return
        self.publish("chat/message.html#messages-appended", {"user_message": user_message, **self.live_context()}, snapshot=True)

    def live_context(self):
        self.take_text()  # the thinking so far is in the message partial
        return message_context(
            self.message,
            tool_calls=[self.tool_calls[i] for i in sorted(self.tool_calls)],
            citations=self.citations,
            # Joined pieces of sanitised output (chat/render.py), safe as a whole.
            answer=(mark_safe("".join(self.answer_final)), self.renderer.tail),
        ) | {"composer_streaming": self.message.status == Message.Status.STREAMING or self.more_rounds}

    def snapshot_for(self, watcher):
        """The whole live message, and the seq it stands at."""
        return self.seq, render_partial("chat/message.html#message-snapshot", self.live_context(), watcher)

    def publish(self, partial, context, *, html="", snapshot=False):
        """Send a frame to every local watcher and queue it for the other processes.

        The frame is `html`, the same in every language, followed by `partial`
        (if any) rendered in each watcher's language.
        """
        self.seq += 1
        for watcher in list(_watchers.get(self.watch_key, ())):
            watcher.deliver(html + render_partial(partial, context, watcher) if partial else html)
        if self.remote_outbox is not None and (snapshot or self.watched_elsewhere):
            self.remote_outbox.put_nowait((self.seq, html, partial, context, snapshot))

    def publish_snapshot(self):
        self.publish("chat/message.html#message-snapshot", self.live_context(), snapshot=True)

    def schedule_frame(self):
        """Coalesce deltas: one frame at most every `frame_interval`."""
        if self.frame_scheduled is not None:
            return
        delay = max(0.0, self.last_frame + frame_interval - time.monotonic())
        self.frame_scheduled = asyncio.get_running_loop().call_later(delay, self.publish_deltas)

    def render_pending_text(self, *, at_end=False):
        """Feed the text that came since the last frame; returns the render.Update for the frame."""
        update = self.renderer.feed("".join(self.pending_text))
        self.pending_text = []
        if at_end:
            last = self.renderer.finish()
            update = render.Update(final=mark_safe(update.final + last.final), tail=last.tail)
        if update.final:
            self.answer_final.append(update.final)
        return update

    def publish_deltas(self, *, at_end=False):
        self.frame_scheduled = None
        self.last_frame = time.monotonic()
        if not (self.pending_reasoning or self.pending_text or self.pending_tool_calls or at_end):
            return
        update = self.render_pending_text(at_end=at_end) if (self.pending_text or at_end) else None
        html = delta_frame(self.message, "".join(self.pending_reasoning), update)
        self.pending_reasoning = []
        if self.pending_tool_calls:
            # The whole set of cards: a new card has nothing to replace yet.
            tool_calls = [self.tool_calls[i] for i in sorted(self.tool_calls)]
            self.pending_tool_calls = set()
            self.publish("chat/message.html#tool-calls", {"message": self.message, "tool_calls": tool_calls}, html=html)
        else:
            self.publish(None, None, html=html)

    def flush_frames(self, *, at_end=False):
        if self.frame_scheduled is not None:
            self.frame_scheduled.cancel()
            self.frame_scheduled = None
        self.publish_deltas(at_end=at_end)

    # -- the work --

    async def run(self):
        remote = asyncio.create_task(self.serve_other_processes()) if self.remote_outbox is not None else None
        try:
            await self.answer()
        except asyncio.CancelledError:
            await self.finish(Message.Status.STOPPED)
        except Exception:
            logger.exception("Generation of message %s failed", self.message.pk)
            await self.finish(Message.Status.ERROR, error_kind="internal", error_text="")
        finally:
            _generations.pop(self.watch_key, None)
            if remote is not None:
                # The last frames go out before the sender stops; but when the sender was cancelled
                # too (the process or its loop shutting down), nothing would ever drain them.
                sent = asyncio.ensure_future(self.remote_outbox.join())
                await asyncio.wait({sent, remote}, return_when=asyncio.FIRST_COMPLETED)
                sent.cancel()
                remote.cancel()

    def stop(self):
        if self.task and not self.stopping:
            self.stopping = True
            self.task.cancel()

    async def answer(self):
        try:
            secret = await self.api_key.asecret_for_request()
        except (ValidationError, PermissionError, UndecryptableSecret) as error:
            logger.warning("API key %s cannot be used: %s", self.api_key, error)
            await self.finish(Message.Status.ERROR, error_kind=KEY_UNUSABLE)
            return
        endpoint = mimo.Endpoint(self.api_key.base_url, secret, mimo.ApiFormat(self.api_key.api_format))
        for _round in range(MAX_TOOL_ROUNDS):
            request = await self.build_request()
            accumulator = mimo.Accumulator()
            async for event in mimo.stream_turn(endpoint, request):
                accumulator.add(event)
                self.apply(event)
            if accumulator.error is not None:
                error = accumulator.error
                await self.finish(
                    Message.Status.ERROR, error_kind=error.kind.value, error_text=error.detail[:2000]
                )
                return
            self.apply_usage(accumulator.usage)
            complete_calls = accumulator.complete_tool_calls
            finish_reason = accumulator.finish.reason if accumulator.finish else ""
            if not complete_calls:
                if accumulator.reasoning:
                    offered = [tool.name for tool in tools.TOOLS]
                    self.message.reasoning_tool_calls = tools.tool_calls_in_reasoning(accumulator.reasoning, offered)
                await self.finish(Message.Status.COMPLETE, finish_reason=finish_reason)
                titles.title_soon(self)  # its own task: a title never delays or breaks an answer
                return
            await self.run_tools(complete_calls)
            await self.finish(Message.Status.COMPLETE, finish_reason=finish_reason, more_rounds=True)
            if not await self.next_round():
                return  # the budget ran out: the new round is an error that says so
        await self.finish(Message.Status.COMPLETE, finish_reason="tool_round_limit")

    @database_sync_to_async
    def build_request(self):
        """Each round's request: the settings the answer started with, which its message records (not
        read again: every answer's first round asked for them), and the history as it is now."""
        conversation = self.conversation
        model = mimo.get_model(conversation.model)
        turns, left_out, attachments_left_out = fit_to_context(conversation.turns(), conversation.system_prompt, model)
        if (left_out, attachments_left_out) != (self.message.turns_left_out, self.message.attachments_left_out):
            self.message.turns_left_out, self.message.attachments_left_out = left_out, attachments_left_out
            self.message.save(update_fields=["turns_left_out", "attachments_left_out"])
        return mimo.ChatRequest(
            model=conversation.model,
            turns=turns,
            system=conversation.system_prompt,
            thinking=conversation.thinking,
            temperature=conversation.temperature,
            top_p=conversation.top_p,
            max_output_tokens=conversation.max_output_tokens,
            tools=tools.TOOLS,
            web_search=mimo.WebSearch() if conversation.web_search and model.web_search else None,
        )

    def apply(self, event):
        message = self.message
        match event:  # the text first: most events are text
            case mimo.TextDelta(text=text):
                if message.first_token_at is None and not message.content and not self.new_text:
                    self.mark_first_token()
                self.new_text.append(text)
                self.pending_text.append(text)  # rendered once per frame, not per token
            case mimo.ReasoningDelta(text=text):
                self.new_reasoning.append(text)
                self.pending_reasoning.append(text)
            case mimo.SignatureDelta(text=text):
                message.thinking_signature = (message.thinking_signature or "") + text
            case mimo.ToolCallStart(index=index, id=call_id, name=name):
                self.tool_calls[index] = ToolCall(message=message, index=index, call_id=call_id, name=name)
                self.pending_tool_calls.add(index)
            case mimo.ToolCallDelta(index=index, arguments=arguments):
                if index in self.tool_calls:
                    self.tool_calls[index].arguments_raw += arguments
                    self.pending_tool_calls.add(index)
            case mimo.Citations(citations=citations):
                for citation in citations:
                    self.citations.append(
                        Citation(
                            message=message, index=len(self.citations), url=citation.url, title=citation.title,
                            summary=citation.summary, site_name=citation.site_name, publish_time=citation.publish_time,
                        )
                    )
                self.publish_snapshot()
                return
            case _:
                return
        self.unsaved = True
        self.schedule_frame()

    def mark_first_token(self):
        """The answer starts: fold the thinking panel everywhere (or take away its "Thinking…" when MiMo
        did not think), with a frame of the panel alone, not the whole message. The time is saved with
        the next progress (save_progress): waiting for the database here held up a hundred answers
        starting at once."""
        self.message.first_token_at = timezone.now()
        self.flush_frames()
        self.take_text()  # the thinking so far is in the panel
        self.publish("chat/message.html#thinking", {"message": self.message, "swap": True})

    def apply_usage(self, usage):
        if usage is None:
            return
        message = self.message
        message.prompt_tokens = usage.prompt_tokens
        message.completion_tokens = usage.completion_tokens
        message.reasoning_tokens = usage.reasoning_tokens
        message.cached_tokens = usage.cached_tokens
        message.image_tokens = usage.image_tokens
        message.audio_tokens = usage.audio_tokens
        message.video_tokens = usage.video_tokens
        message.web_search_calls = usage.web_search_calls
        message.web_search_pages = usage.web_search_pages

    def take_text(self):
        """Add the text that came since to the message: once a save, not once a token, as a string grows by copying."""
        message = self.message
        if self.new_reasoning:
            message.reasoning_content = (message.reasoning_content or "") + "".join(self.new_reasoning)
            self.new_reasoning = []
        if self.new_text:
            message.content += "".join(self.new_text)
            self.new_text = []

    def progress(self, now):
        """The row `save_progress` writes, if this stream has news or is due a beat; else None."""
        message = self.message
        if message.status != Message.Status.STREAMING:
            return None
        if not self.unsaved and now - self.saved_at < HEARTBEAT_INTERVAL:
            return None
        self.take_text()
        self.unsaved, self.saved_at = False, now
        message.heartbeat_at = timezone.now()
        return (
            message.content, message.reasoning_content, message.thinking_signature,
            message.first_token_at, message.heartbeat_at, message.pk,
        )

    async def finish(self, status, *, finish_reason="", error_kind="", error_text="", more_rounds=False):
        # A tool round's end is not the answer's: the page keeps Stop, and announces the end once.
        self.more_rounds = more_rounds
        self.flush_frames(at_end=True)
        self.take_text()
        message = self.message
        message.status = status
        message.finish_reason = str(finish_reason or "")
        message.error_kind = error_kind
        message.error_text = error_text
        message.finished_at = timezone.now()
        message.heartbeat_at = None
        await self.save_finished_until_saved()
        self.publish_snapshot()
        await self.publish_meters()

    async def publish_meters(self):
        """The member's budget meters, now that this answer's usage counts (none without a budget)."""
        if not self.metered:
            return
        if meters := await database_sync_to_async(limits.member_meters)(self.conversation):
            self.publish("chat/conversation.html#usage-meter", {"meters": meters})

    def save_finished(self):
        self.message.save(update_fields=FINISHED_FIELDS)
        for call in self.tool_calls.values():
            if call.pk is None:
                if call.status == ToolCall.Status.RECEIVING:
                    call.status = ToolCall.Status.ERROR
                    call.error = "The call was not finished."
                call.save()
        Citation.objects.bulk_create([c for c in self.citations if c.pk is None])

    async def save_finished_until_saved(self):
        """`save_finished`, tried again while the database refuses it, so that an answer that streamed
        in full never ends as an error, nor loses its usage, because the database was busy a moment.

        Refused: an OperationalError or InterfaceError (SQLite's lock held past its busy
        timeout by another writer, a lost connection; database_sync_to_async replaces a
        broken connection before each try). After the quick tries (FINAL_SAVE_DELAYS), one
        log line, then a try every SAVE_LATER_INTERVAL until the database takes it: the
        text and usage wait in memory, and the answer stays this process's meanwhile, so no
        sweep marks it interrupted and no other answer starts in its conversation.
        """
        delays = iter(FINAL_SAVE_DELAYS)
        started, logged = time.monotonic(), False
        while True:
            try:
                await database_sync_to_async(self.save_finished_in_one_transaction)()
            except (OperationalError, InterfaceError) as error:
                delay = next(delays, None)
                if delay is None:
                    if not logged:
                        logger.warning(
                            "The end of answer %s was refused by the database (%s); it is tried again every %d s",
                            self.message.pk, error, SAVE_LATER_INTERVAL,
                        )
                        logged = True
                    delay = SAVE_LATER_INTERVAL
                await asyncio.sleep(delay)
            else:
                if logged:
                    late = time.monotonic() - started
                    logger.warning("The end of answer %s is saved, %d s late", self.message.pk, late)
                return

    def save_finished_in_one_transaction(self):
        """`save_finished`, all or nothing: after a refusal, the rows it was creating are new again for the next try."""
        new_rows = [row for row in [*self.tool_calls.values(), *self.citations] if row.pk is None]
        try:
            with transaction.atomic():
                self.save_finished()
        except DatabaseError:
            for row in new_rows:
                row.pk, row._state.adding = None, True
            raise

    async def run_tools(self, complete_calls):
        for call in complete_calls:
            row = next((c for c in self.tool_calls.values() if c.call_id == call.id), None)
            if row is None:
                continue
            row.status = ToolCall.Status.RUNNING
            self.pending_tool_calls.add(row.index)
            self.flush_frames()
            started = time.monotonic()
            outcome = await sync_to_async(tools.run_tool)(call.name, call.arguments, time_zone=self.user_time_zone or None)
            row.duration_ms = int((time.monotonic() - started) * 1000)
            row.arguments = outcome.arguments
            if outcome.is_error:
                row.status, row.error = ToolCall.Status.ERROR, outcome.result
            else:
                row.status, row.result = ToolCall.Status.DONE, outcome.result
            self.pending_tool_calls.add(row.index)
            self.flush_frames()

    async def next_round(self):
        """MiMo called tools: their results go back in a new assistant message.

        Returns False when the budget ran out meanwhile: the new message is then
        an error that says so, and nothing more is sent. Retrying it continues
        from the tools' results.
        """
        self.message = await database_sync_to_async(self.create_round)()
        self.more_rounds = False  # the round has started, or the budget refused it and the answer ends here
        self.renderer = answer_renderer(self.message)
        self.answer_final = []
        self.tool_calls, self.citations = {}, []
        self.announce()
        return self.message.status == Message.Status.STREAMING

    def create_round(self):
        """The next round's answer, admitted like a send (budgets only: the answer is already under way)."""
        now = timezone.now()
        fields = {
            "conversation_id": self.conversation.pk,
            "role": Message.Role.ASSISTANT,
            "parent": self.message,  # a branch is a chain: each round follows the one before
            "model": self.message.model,
            "api_key": self.api_key,
            "api_key_version": self.message.api_key_version,
            "parameters": self.message.parameters,
            "created_at": now,
        }
        with transaction.atomic():
            try:
                self.metered = limits.admit(self.conversation, pace=False)
            except limits.Refused as refusal:
                return Message.objects.create(
                    **fields,
                    status=Message.Status.ERROR,
                    error_kind=limits.BUDGET_EXHAUSTED,
                    error_text=str(refusal),
                    finished_at=now,
                )
            return Message.objects.create(**fields, status=Message.Status.STREAMING, heartbeat_at=now, process=process_id())

    # -- other processes --

    async def serve_other_processes(self):
        """Send frames to the group in order, and answer snapshot and stop requests."""
        layer = get_channel_layer()
        channel = await layer.new_channel()
        group = group_name(self.conversation.pk)
        listener = asyncio.create_task(self.listen(layer, channel, group))
        try:
            while True:
                seq, text, partial, context, snapshot = await self.remote_outbox.get()
                try:
                    rendered = render_in_every_language(partial, context) if partial else {}
                    html = {code: text + rendered.get(code, "") for code, _name in settings.LANGUAGES}
                    await layer.group_send(
                        group,
                        {
                            "type": "generation.frame",
                            "origin": process_id(),
                            "generation": self.key,
                            "seq": seq,
                            "snapshot": snapshot,
                            "html": html,
                        },
                    )
                except Exception:  # Redis unreachable: the frame is lost to other processes; `listen` catches them up
                    pass
                finally:
                    self.remote_outbox.task_done()
        finally:
            listener.cancel()
            try:
                await layer.group_discard(group, channel)
            except Exception:  # Redis unreachable: it forgets the membership by itself (the group's expiry)
                pass

    async def listen(self, layer, channel, group):
        """Join the group, then answer stop and snapshot requests. While Redis is unreachable, try again every
        second (the database flag backs Stop up meanwhile); when it is back, maybe emptied by a restart, join
        again and send a snapshot: the frames other processes' sockets missed."""
        joined = outage = False
        while True:
            try:
                if not joined:
                    await layer.group_add(group, channel)
                    joined = True
                    if outage:
                        outage = False
                        report_layer(True)
                        self.publish_snapshot()
                message = await layer.receive(channel)
            except Exception as error:
                report_layer(False, error)
                joined, outage = False, True
                await asyncio.sleep(1)
                continue
            if message["type"] == "generation.stop":
                self.stop()
            elif message["type"] == "generation.snapshot.request":
                self.watched_elsewhere = True
                self.publish_snapshot()
