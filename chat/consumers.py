"""The conversation socket: thin over chat/generation.py, which does the work."""

import asyncio
import json
import logging
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.http import Http404
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation.trans_real import parse_accept_lang_header

from chat import generation, limits, transfer, versions
from chat.forms import ATTACHMENT_GONE, EditForm, RetryForm, SendForm
from chat.models import Conversation, Message, get_conversation_for

logger = logging.getLogger(__name__)

SNAPSHOT_WAIT = 3.0  # seconds to wait for another process's snapshot before asking again
LAYER_RETRY = 1.0  # seconds between tries to reach a channel layer that is unreachable (Redis down)
REMOTE_SILENCE = 3.0  # seconds without a frame of another process's answer before the socket checks on it


def render_notice(text, *, until_answer_ends=False):
    """The one notice by the composer (a new one replaces it); `until_answer_ends`: the page drops it when
    the answer streaming now ends, its cause."""
    return render_to_string("chat/conversation.html#notice", {"notice": text, "until_answer_ends": until_answer_ends})


def render_live_status(out_of_date=False):
    """The line that says the page may be out of date; empty, it shows nothing. composer.js fills it too while the socket is closed."""
    return render_to_string("chat/conversation.html#live-status", {"out_of_date": out_of_date})


def socket_language(scope, user):
    """The language frames are rendered in: the user's saved one, else the cookie, else the browser's."""
    if user.language:
        return user.language
    for code in (scope.get("cookies", {}).get(settings.LANGUAGE_COOKIE_NAME, ""), *browser_languages(scope)):
        try:
            return translation.get_supported_language_variant(code)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


def read_frame(text):
    """A browser's frame as the JSON object it should be, or None.

    None for a binary frame, text that is not JSON, JSON nested past what the
    parser takes, JSON that is not an object, and text no database here
    stores (NUL, a lone surrogate: both valid in JSON).
    """
    if not text:
        return None
    try:
        content = json.loads(text)
        as_text = json.dumps(content, ensure_ascii=False)
    except (ValueError, RecursionError):
        return None
    if not isinstance(content, dict) or transfer.unstorable(as_text) or "\\u0000" in as_text:
        return None
    return content


def browser_languages(scope):
    header = dict(scope.get("headers", [])).get(b"accept-language", b"").decode("latin-1")
    return [code for code, _quality in parse_accept_lang_header(header)]


class ConversationConsumer(AsyncJsonWebsocketConsumer):
    """`/ws/conversations/<uuid>/`: owner only; sends HTML fragments, takes send, stop, retry and resync.

    The channel layer (Redis) only carries other processes' frames: while it is
    unreachable, the socket stays open, gets its own process's frames as ever,
    and says the page may be out of date; when it is back, the socket joins its
    group again and shows the conversation as a reload would.
    """

    layer_down = False  # the channel layer failed and has not answered since
    layer_receive = None  # the layer's receive under way: kept across waits, as cancelling one loses what it buffered
    remote_expected = False  # another process's answer streams, so its frames should keep coming

    # Channels' consumer loop reads the layer through `channel_receive`, which it sets to the layer's own
    # receive: a Redis outage raises there and ends the socket with 1011. Ours waits the outage out.
    @property
    def channel_receive(self):
        return self.receive_from_layer

    @channel_receive.setter
    def channel_receive(self, layer_receive):
        pass

    async def connect(self):
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=4401)
            return
        if user.must_change_password:  # a one-time password opens the password change only
            await self.close(code=4403)
            return
        try:
            self.conversation = await database_sync_to_async(get_conversation_for)(
                user, self.scope["url_route"]["kwargs"]["conversation_id"]
            )
        except Http404:
            await self.close(code=4404)
            return
        self.user = user
        self.group = generation.group_name(self.conversation.pk)
        self.watcher = generation.Watcher(self.conversation.pk, socket_language(self.scope, user), user.time_zone)
        # Frames from other processes: whose, the last seq applied, frames held until a snapshot, and when last heard.
        self.remote_generation = None
        self.remote_seq = None
        self.remote_waiting = []
        self.remote_heard_at = 0.0
        self.snapshot_asked_at = 0.0
        # A stream left by a dead process is marked before this socket shows anything.
        await database_sync_to_async(Message.objects.filter(conversation=self.conversation).mark_dead)(
            running=generation.running_ids()
        )
        generation.keep_tending()
        await self.accept()
        self.writer = asyncio.create_task(self.write_frames())
        await self.send_meters()
        if not await self.join_group():  # Redis is down: this process's frames still come, and the page says it may be out of date
            with translation.override(self.watcher.language):
                self.watcher.deliver(render_live_status(out_of_date=True))
        snapshot = generation.watch(self.watcher)
        if snapshot:
            self.watcher.deliver(snapshot[1])
        elif generation.is_shared_layer() and await self.streaming_elsewhere():
            await self.ask_for_snapshot()

    async def disconnect(self, code):
        if self.layer_receive is not None:
            self.layer_receive.cancel()
        if hasattr(self, "watcher"):
            generation.unwatch(self.watcher)
            self.writer.cancel()
            try:
                await self.channel_layer.group_discard(self.group, self.channel_name)
            except Exception:  # Redis unreachable: it forgets the membership by itself (channels_redis' group expiry)
                pass

    async def join_group(self):
        """Join the conversation's group (again, after an outage: a restarted Redis has forgotten it);
        False, and the layer marked down, when it cannot be reached."""
        try:
            await self.channel_layer.group_add(self.group, self.channel_name)
        except Exception as error:
            generation.report_layer(False, error)
            self.layer_down = True
            return False
        if self.layer_down:
            generation.report_layer(True)
        self.layer_down = False
        return True

    async def receive_from_layer(self):
        """The layer's next message for this socket, or one of our own, so that its handler runs one at a
        time with the others, as Channels runs them:
        - "layer.unreachable" when the layer fails; then it tries again every LAYER_RETRY seconds, and
        - "layer.reachable" once this socket is in its group again;
        - "remote.silent" when another process's answer has sent nothing for REMOTE_SILENCE seconds: the
          layer drops what a full channel cannot take, its last frame included.
        """
        while True:
            if self.layer_down and hasattr(self, "watcher"):  # connected: join again before reading
                if await self.join_group():
                    return {"type": "layer.reachable"}
                await asyncio.sleep(LAYER_RETRY)
                continue
            if self.layer_receive is None:
                self.layer_receive = asyncio.ensure_future(self.channel_layer.receive(self.channel_name))
            try:
                # Only a shared layer carries other processes' answers: in memory, nothing to check on.
                silence = REMOTE_SILENCE if generation.is_shared_layer() else None
                done, _pending = await asyncio.wait({self.layer_receive}, timeout=silence)
            except asyncio.CancelledError:
                self.layer_receive.cancel()
                raise
            if not done:
                if self.remote_expected and time.monotonic() - self.remote_heard_at >= REMOTE_SILENCE:
                    return {"type": "remote.silent"}
                continue
            received, self.layer_receive = self.layer_receive, None
            try:
                return received.result()
            except Exception as error:
                if not self.layer_down:
                    generation.report_layer(False, error)
                    self.layer_down = True
                    return {"type": "layer.unreachable"}
                await asyncio.sleep(LAYER_RETRY)

    async def write_frames(self):
        """Send this socket's frames in order; one writer, so nothing overtakes."""
        while True:
            html = await self.watcher.outbox.get()
            await self.send(text_data=html)

    async def streaming_elsewhere(self):
        return await Message.objects.filter(conversation=self.conversation, status=Message.Status.STREAMING).aexists()

    # -- from the browser --

    async def receive(self, text_data=None, bytes_data=None):
        """Every frame: a broken one is answered with a notice, logged in one line, and the socket stays open."""
        content = read_frame(text_data)
        if content is None:
            logger.warning("Unreadable frame on the socket of conversation %s", self.conversation.pk)
            with translation.override(self.watcher.language):
                self.watcher.deliver(render_notice(_("That message could not be read. Reload the page and send it again.")))
            return
        await self.receive_json(content)

    async def receive_json(self, content):
        with translation.override(self.watcher.language):
            action = content.get("action")
            if action == "send":
                await self.send_message(content)
            elif action == "stop":
                await generation.stop(self.conversation.pk)
            elif action in ("regenerate", "retry"):  # Retry is Regenerate on an answer that failed
                await self.regenerate(content)
            elif action == "edit":
                await self.edit(content)
            elif action == "resync":  # the page's socket dropped and opened again (composer.js)
                await self.resync()

    async def send_message(self, content):
        form = await database_sync_to_async(self.accept_form)(content)
        if not form.is_valid():
            first_error = next(iter(form.errors.values()))[0]
            self.watcher.deliver(render_notice(first_error))
            return
        if await self.start(text=form.cleaned_data["text"], attachments=form.cleaned_data["attachments"]):
            # Only now may the composer let go of the text: until then a refusal keeps it in the box.
            accepted = render_to_string("chat/conversation.html#send-accepted", {"accepted": True})
            self.watcher.deliver(accepted + render_notice(""))

    def accept_form(self, content):
        """The composer's form, validated, and its settings saved when valid: one trip to the database
        thread (its key field asks which keys this member may use)."""
        form = SendForm(content, conversation=self.conversation)
        if form.is_valid():
            self.save_settings(form.cleaned_data)
        return form

    async def regenerate(self, content):
        """A new version of an answer, beside the old one."""
        form = RetryForm(content)
        if form.is_valid() and (answer := await self.own_message(form.cleaned_data["message_id"], Message.Role.ASSISTANT)):
            await self.start(text="", instead_of=answer)

    async def edit(self, content):
        """A new version of a question, beside the old one, and a new answer to it."""
        form = EditForm(content)
        if not form.is_valid():
            self.watcher.deliver(render_notice(next(iter(form.errors.values()))[0]))
            return
        if question := await self.own_message(form.cleaned_data["message_id"], Message.Role.USER):
            await self.start(text=form.cleaned_data["text"], instead_of=question)

    async def own_message(self, message_id, role):
        """A message of this socket's conversation, or None: ids from elsewhere change nothing."""
        return await Message.objects.filter(pk=message_id, conversation=self.conversation, role=role).afirst()

    async def start(self, *, text, instead_of=None, attachments=()):
        """Start an answer; True if it started, else the reason goes to this socket alone and False."""
        try:
            await generation.start(
                self.conversation, text=text, user_time_zone=self.user.time_zone, instead_of=instead_of, attachments=attachments
            )
        except generation.AttachmentsGone:
            self.watcher.deliver(render_notice(str(ATTACHMENT_GONE)))
            return False
        except generation.NoKey:
            self.watcher.deliver(render_notice(_("Your team has no MiMo key yet. Ask a team admin to add one.")))
            return False
        except generation.AlreadyStreaming:
            notice = _("MiMo is still answering. Wait for the answer or stop it first.")
            self.watcher.deliver(render_notice(notice, until_answer_ends=True))
            return False
        except limits.Refused as refusal:  # a budget or the pace: nothing was saved or sent
            if refusal.meter is None:
                self.watcher.deliver(render_notice(str(refusal)))
            else:  # said once, where the budgets are: instead of the meters' own warning
                await self.send_meters(refusal=refusal)
            return False
        return True

    async def send_meters(self, refusal=None):
        """The member's budget meters by the composer (chat/limits.py); none without a budget. With a
        budget's refusal, it is the one warning they show, and the notice is cleared."""
        meters = await database_sync_to_async(limits.member_meters)(self.conversation)
        if meters or refusal:
            context = {"meters": meters, "refusal": refusal}
            html = generation.render_partial("chat/conversation.html#usage-meter", context, self.watcher)
            self.watcher.deliver(html + (render_notice("") if refusal else ""))

    def save_settings(self, data):
        conversation = self.conversation
        conversation.model = data["model"]
        conversation.thinking = data["thinking"]
        conversation.web_search = data["web_search"]
        conversation.system_prompt = data["system_prompt"]
        conversation.temperature = data["temperature"]
        conversation.top_p = data["top_p"]
        conversation.max_output_tokens = data["max_output_tokens"]
        fields = ["model", "thinking", "web_search", "system_prompt", "temperature", "top_p", "max_output_tokens", "updated_at"]
        if "api_key" in data:  # the form offers a choice of key only to members who have one
            conversation.api_key = data["api_key"]
            fields.append("api_key")
        # Only these: this copy was loaded when the socket opened, and its title, pin and trash
        # may have changed since (the sidebar; chat/titles.py names the conversation after its first answer).
        conversation.save(update_fields=fields)

    # -- from other processes, through the group --

    async def generation_frame(self, event):
        if event["origin"] == generation.process_id():
            return  # this process's sockets got it directly
        seq, html = event["seq"], event["html"].get(self.watcher.language) or event["html"]["en"]
        self.remote_expected, self.remote_heard_at = True, time.monotonic()
        if event["generation"] != self.remote_generation:
            # Another answer's frames: their numbers start again. Its process sends us only its
            # snapshots until a socket here asks for one (as a frame held below does); then every frame.
            self.remote_generation, self.remote_seq, self.remote_waiting = event["generation"], None, []
            if event["snapshot"]:
                await self.ask_for_snapshot()
        if event["snapshot"] and (self.remote_seq is None or seq > self.remote_seq):
            self.remote_seq = seq
            self.watcher.deliver(html)
            for held_seq, held_html in sorted(self.remote_waiting):
                if held_seq == self.remote_seq + 1:
                    self.remote_seq = held_seq
                    self.watcher.deliver(held_html)
            self.remote_waiting = []
        elif self.remote_seq is not None and seq == self.remote_seq + 1:
            self.remote_seq = seq
            self.watcher.deliver(html)
        elif self.remote_seq is None or seq > self.remote_seq + 1:
            # A gap (a dropped frame) or frames before our first snapshot: hold and ask.
            self.remote_waiting.append((seq, html))
            await self.ask_for_snapshot()

    async def ask_for_snapshot(self):
        now = time.monotonic()
        if now - self.snapshot_asked_at >= SNAPSHOT_WAIT and not self.layer_down:
            self.snapshot_asked_at = now
            # An answer is expected: if nothing comes of it, remote_silent checks on it.
            self.remote_expected, self.remote_heard_at = True, now
            try:
                await generation.request_snapshot(self.conversation.pk)
            except Exception as error:  # Redis unreachable: the socket asks again when it is back (layer_reachable)
                generation.report_layer(False, error)

    async def generation_stop(self, event):
        pass  # for the generation's own channel

    async def generation_snapshot_request(self, event):
        pass  # for the generation's own channel

    async def layer_unreachable(self, event):
        """Redis is down: other processes' frames cannot come, so the page says it may be out of date."""
        if self.layer_down and hasattr(self, "watcher"):
            with translation.override(self.watcher.language):
                self.watcher.deliver(render_live_status(out_of_date=True))

    async def layer_reachable(self, event):
        """Redis is back, and this socket in its group again: whatever other processes sent meanwhile was lost."""
        await self.resync()

    async def remote_silent(self, event):
        """Another process's answer has sent nothing for a while: ask again while it streams; once it has
        ended, show it from the database (its last frame may have been dropped), and expect nothing more."""
        if str(self.conversation.pk) in generation.running_ids():
            self.remote_expected = False  # the answer streaming now is this process's own: its frames come directly
        elif await self.streaming_elsewhere():
            self.remote_heard_at = time.monotonic()
            await self.ask_for_snapshot()
        else:
            self.remote_expected = False
            await self.resync()

    async def resync(self):
        """The conversation as a reload would show it, then the answer streaming now, wherever it runs."""
        html = await database_sync_to_async(self.render_conversation)()
        # Frames held for another process's answer predate what was just rendered: start again from its next snapshot.
        self.remote_seq, self.remote_waiting = None, []
        self.watcher.deliver(html)
        if snapshot := generation.watch(self.watcher):  # this process's answer: its live state, with no await before it
            self.watcher.deliver(snapshot[1])
        elif generation.is_shared_layer() and await self.streaming_elsewhere():
            self.snapshot_asked_at = 0.0  # at once: whatever was asked before the outage went unanswered
            await self.ask_for_snapshot()

    def render_conversation(self):
        """The latest messages (chat/views/conversations.py's conversation_page opens on them), the title and the live status."""
        conversation = Conversation.objects.get(pk=self.conversation.pk)
        context = generation.window_context(conversation, versions.latest_window(conversation)) | {
            "composer_streaming": conversation.messages.filter(status=Message.Status.STREAMING).exists(),
            "out_of_date": self.layer_down,
        }
        return generation.render_partial("chat/conversation.html#resynced", context, self.watcher)

    async def conversation_changed(self, event):
        """Another tab switched versions (chat/views/conversations.py): show the branch now visible."""
        if html := await database_sync_to_async(self.render_window_around)(event["message_id"]):
            self.watcher.deliver(html)
            if snapshot := generation.watch(self.watcher):  # an answer started meanwhile: its live state
                self.watcher.deliver(snapshot[1])

    def render_window_around(self, message_id):
        message = Message.objects.filter(pk=message_id, conversation=self.conversation, visible=True).first()
        if message is None:
            return None
        window = generation.window_context(self.conversation, versions.window_around(message))
        return generation.render_partial("chat/message.html#messages", window, self.watcher)
