"""Conversations to files and back: JSON that carries everything, Markdown for reading.

The JSON format (`FORMAT`, `VERSION`) is one object for one conversation or many:

    {"format": "mimoweb.conversations", "version": 1, "exported_at": "…",
     "conversations": [{"id": "…", "title": …, "messages": [{"id": 7, "parent": 6, …,
                        "tool_calls": [{…}], "citations": [{…}]}]}]}

Every message is there, every version of it included (`parent`, `visible`); times
are ISO 8601 in UTC. A key is named by its label and last four characters, never
by its secret. Not carried: a stream's heartbeat, process and stop request (they belong to
a live process), pin and trash (they are the library's, not the conversation's).

A conversation with attached files is exported as a zip (`archive`): the JSON above as
`conversations.json` (or the Markdown as `conversations.md`) and each file once, under its
sha256, as `files/<sha256>.<suffix>`; each message lists its attachments, naming its file. An
import reads either a plain JSON file (an export without files, older ones included) or such a
zip, whose files come back byte for byte: their sha256 is checked, and each is proven to be
what it says as an upload is (chat/attachments.py `read_restored`).

Importing gives new ids (parent links follow them), the importing member as owner,
their team, and two fields of its own: `updated_at` is the import time, so the
conversation comes first in the list, and `exported_at` is the next export's.
Everything else comes back as it was, except that an answer still streaming when
exported comes back `interrupted`: no process is streaming it here.
"""

import hashlib
import itertools
import json
import math
import re
import shutil
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from functools import partial
from pathlib import PurePath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import connection, models, transaction
from django.db.models import Prefetch, Q
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from accounts.models import ApiKey
from chat import attachments, mimo, search
from chat.mimo.wire import TEMPERATURE_RANGE, TOP_P_RANGE
from chat.models import Attachment, Citation, Conversation, Message, ToolCall

FORMAT = "mimoweb.conversations"
VERSION = 1
# An export of 2,000 long answers with their reasoning is a few megabytes; this leaves room for many.
MAX_IMPORT_BYTES = 20 * 1024 * 1024

CONVERSATION_FIELDS = [
    "title", "model", "thinking", "web_search", "system_prompt", "temperature", "top_p", "max_output_tokens",
    "created_at", "updated_at",
]  # fmt: skip
MESSAGE_FIELDS = [
    "visible", "role", "content", "reasoning_content", "thinking_signature", "status", "finish_reason",
    "error_kind", "error_text", "model", "parameters", "prompt_tokens", "completion_tokens", "reasoning_tokens",
    "cached_tokens", "image_tokens", "audio_tokens", "video_tokens", "web_search_calls", "web_search_pages",
    "created_at", "first_token_at", "finished_at", "reasoning_tool_calls", "turns_left_out", "attachments_left_out",
    "api_key_version",
]  # fmt: skip
# Fields that came after the first exports of this format: an export made before them still imports.
ADDED_LATER = {
    "api_key_version", "temperature", "top_p", "max_output_tokens", "image_tokens", "audio_tokens", "video_tokens",
    "attachments_left_out",
}  # fmt: skip
# The sampling settings, within MiMo's documented ranges (chat/forms.py checks them for each model at each send).
SETTING_RANGES = {
    "temperature": TEMPERATURE_RANGE,
    "top_p": TOP_P_RANGE,
    "max_output_tokens": (1, mimo.MOST_OUTPUT_TOKENS),
}
# What an export says of each attached file; the rest (pixel size, duration, text) is read from the file itself.
ATTACHMENT_FIELDS = ["kind", "name", "content_type", "sha256", "created_at"]
TOOL_CALL_FIELDS = ["index", "call_id", "name", "arguments_raw", "arguments", "result", "status", "error", "duration_ms"]
CITATION_FIELDS = ["index", "url", "title", "summary", "site_name", "publish_time"]


# --- Export ------------------------------------------------------------------------


def exportable(conversations):
    """The conversations out of the trash, with everything an export reads, in a fixed number of queries."""
    messages = Message.objects.select_related("api_key").prefetch_related("tool_calls", "citations", "attachments")
    return (
        conversations.filter(deleted_at__isnull=True)
        .select_related("api_key")
        .prefetch_related(Prefetch("messages", queryset=messages))
        .order_by("-updated_at")
    )


def export_data(conversations):
    """The JSON export (as Python data) of these conversations, every message and version included."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": dumped_time(timezone.now()),
        "conversations": [conversation_data(conversation) for conversation in conversations],
    }


def conversation_data(conversation):
    return {
        "id": str(conversation.pk),
        **{name: dumped(conversation, name) for name in CONVERSATION_FIELDS},
        "api_key": key_data(conversation.api_key),
        "messages": [message_data(message) for message in conversation.messages.all()],
    }


def message_data(message):
    return {
        "id": message.pk,
        "parent": message.parent_id,
        **{name: dumped(message, name) for name in MESSAGE_FIELDS},
        "api_key": key_data(message.api_key),
        "tool_calls": [{name: dumped(call, name) for name in TOOL_CALL_FIELDS} for call in message.tool_calls.all()],
        "citations": [{name: dumped(c, name) for name in CITATION_FIELDS} for c in message.citations.all()],
        "attachments": [attachment_data(attachment) for attachment in message.attachments.all()],
    }


def attachment_data(attachment):
    """An attached file as an export names it: its `id` for a share's page, its `file` in the zip."""
    return {
        "id": str(attachment.pk),
        **{name: dumped(attachment, name) for name in ATTACHMENT_FIELDS},
        "size": attachment.size,
        "file": archived_name(attachment),
    }


def archived_name(attachment):
    return f"files/{attachment.sha256}{attachments.suffix_for(attachment.content_type)}"


def attachments_of(conversations):
    """The attachments of the exported messages (prefetched by `exportable`), each file once."""
    found = {}
    for conversation in conversations:
        for message in conversation.messages.all():
            for attachment in message.attachments.all():
                found.setdefault(archived_name(attachment), attachment)
    return list(found.values())


def write_archive(out, document_name, document, files):
    """A zip of the export (`document`, JSON or Markdown text) and the files it names, each copied
    from storage a chunk at a time. Media are stored as they are: they are compressed already."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(document_name, document)
        for attachment in files:
            entry = zipfile.ZipInfo(archived_name(attachment), date_time=timezone.localtime().timetuple()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED if attachment.kind == Attachment.Kind.DOCUMENT else zipfile.ZIP_STORED
            with storages["attachments"].open(attachment.file_name) as source, archive.open(entry, "w") as target:
                shutil.copyfileobj(source, target, 1024 * 1024)


def key_data(api_key):
    """A key as a person recognises it, never its secret."""
    return {"label": api_key.label, "last_four": api_key.last_four} if api_key else None


def dumped(instance, name):
    value = getattr(instance, name)
    return dumped_time(value) if isinstance(model_field(instance, name), models.DateTimeField) else value


def dumped_time(value):
    return value.astimezone(UTC).isoformat() if value else None


def model_field(instance, name):
    return instance._meta.get_field(name)


def safe_filename(title, default="conversation"):
    """A file name from a title that may hold anything: letters, digits (any script), - and _ only."""
    name = re.sub(r"[^\w-]+", "-", title).strip("-_")[:80].strip("-_")
    return name or default


# --- Markdown, for reading -----------------------------------------------------------


def markdown(conversations):
    """The conversations as Markdown: the visible branch, with thinking folded, tool calls and sources."""
    return "\n\n---\n\n".join(conversation_markdown(conversation) for conversation in conversations)


def conversation_markdown(conversation):
    facts = [
        f"{_('Model')}: {conversation.model}",
        f"{_('Thinking')}: {_('on') if conversation.thinking else _('off')}",
        f"{_('Web search')}: {_('on') if conversation.web_search else _('off')}",
        *(f"{label}: {value}" for label, value in sampling_facts(conversation)),
        f"{_('Created')}: {date_format(timezone.localtime(conversation.created_at), 'Y-m-d H:i')}",
    ]
    parts = [f"# {one_line(conversation.title) or _('New chat')}", "*" + " · ".join(facts) + "*"]
    if conversation.system_prompt:
        parts.append(quoted(f"**{_('System prompt')}**\n\n{conversation.system_prompt}"))
    for message in conversation.messages.all():
        if message.visible:
            parts.append(message_markdown(message))
    return "\n\n".join(parts) + "\n"


def sampling_facts(conversation):
    """The sampling settings the member chose, as (label, value); MiMo's defaults are not listed."""
    chosen = [
        (_("Temperature"), conversation.temperature),
        (_("Top p"), conversation.top_p),
        (_("Maximum output tokens"), conversation.max_output_tokens),
    ]
    return [(label, value) for label, value in chosen if value is not None]


def message_markdown(message):
    parts = [f"## {capfirst(message.get_role_display())}"]
    if message.role == Message.Role.USER:
        files = [attachment_markdown(attachment) for attachment in message.attachments.all()]
        return "\n\n".join(parts + [message.content] + (["\n".join(files)] if files else []))
    if message.reasoning_content:
        parts.append(f"<details>\n<summary>{_('Thinking')}</summary>\n\n{quoted(message.reasoning_content)}\n\n</details>")
    if message.content:
        parts.append(message.content)
    for call in message.tool_calls.all():
        parts.append(tool_call_markdown(call))
    citations = list(message.citations.all())
    if citations:
        lines = [f"{number}. [{link_text(c.title or c.url)}](<{c.url}>)" for number, c in enumerate(citations, 1)]
        parts.append(f"**{_('Sources')}**\n\n" + "\n".join(lines))
    if explanation := message.explanation():
        parts.append(f"*{explanation}*")
    return "\n\n".join(parts)


def attachment_markdown(attachment):
    """A file as a link to its copy in the zip beside the Markdown; an image is shown."""
    label = f"{link_text(attachment.name)} ({filesizeformat(attachment.size)})"
    link = f"[{label}](<{archived_name(attachment)}>)"
    return f"- !{link}" if attachment.kind == Attachment.Kind.IMAGE else f"- {link}"


def tool_call_markdown(call):
    heading = _("Tool call: %(name)s") % {"name": call.name}
    parts = [f"**{heading}** ({call.get_status_display()})", f"{_('Arguments')}:", fenced(call.arguments_raw or "{}", "json")]
    if call.result:
        parts += [f"{_('Result')}:", fenced(call.result)]
    if call.error:
        parts += [f"{_('Error')}:", fenced(call.error)]
    return "\n\n".join(parts)


def fenced(text, language=""):
    """A code block that no run of backticks inside the text can close early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def quoted(text):
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def one_line(text):
    return " ".join(text.split())


def link_text(text):
    return re.sub(r"([\[\]\\])", r"\\\1", one_line(text))


# --- Reading an export back ----------------------------------------------------------


@dataclass(eq=False)
class ReadMessage:
    """A message read from a file, not saved: `file_id` and `parent` are the ids the file gives."""

    message: Message
    file_id: int
    parent: int | None
    api_key: dict | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    attachments: list["ReadAttachment"] = field(default_factory=list)


@dataclass(eq=False)
class ReadAttachment:
    """An attached file named by an export: what it says of it, then (from a zip) the file proven."""

    fields: dict  # ATTACHMENT_FIELDS, checked
    size: int
    file: str  # its name in the zip
    upload: attachments.Upload | None = None  # read from the zip (read_archive), content not kept
    archive: zipfile.ZipFile | None = None


@dataclass
class ReadConversation:
    conversation: Conversation
    api_key: dict | None
    messages: list[ReadMessage]  # each parent before its children


def read_upload(upload):
    """The conversations in an uploaded export (a JSON file, or a zip with files), checked through;
    ValidationError says what is wrong."""
    if zipfile.is_zipfile(upload):
        upload.seek(0)
        return read_archive(upload)
    upload.seek(0)
    if upload.size > MAX_IMPORT_BYTES:
        raise ValidationError(
            _("This file is %(size)s; an export can be at most %(limit)s."),
            params={"size": filesizeformat(upload.size), "limit": filesizeformat(MAX_IMPORT_BYTES)},
        )
    try:
        data = json.loads(upload.read())
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested beyond reason
        raise ValidationError(_("This file is not JSON. Choose a .json or .zip file exported from mimoweb."))
    read = read_export(data)
    if any(message.attachments for conversation in read for message in conversation.messages):
        raise ValidationError(_("This export names attached files, which it does not hold. Import the .zip file it came in."))
    return read


# A zip export: at most this much in all, this many files, this much once unpacked (a zip bomb
# declares little and unpacks to much: what each entry says it holds is checked before it is
# read, and reading stops there).
MAX_IMPORT_ARCHIVE_BYTES = 128 * 1024 * 1024
MAX_ARCHIVE_ENTRIES = 10_000
MAX_UNPACKED_BYTES = 1024 * 1024 * 1024


def read_archive(upload):
    """The conversations in a zip export, every attached file in it read, its sha256 checked and
    its content proven (chat/attachments.py read_restored); nothing is stored yet."""
    if upload.size > MAX_IMPORT_ARCHIVE_BYTES:
        raise ValidationError(
            _("This file is %(size)s; an export can be at most %(limit)s."),
            params={"size": filesizeformat(upload.size), "limit": filesizeformat(MAX_IMPORT_ARCHIVE_BYTES)},
        )
    try:
        archive = zipfile.ZipFile(upload)
        entries = {entry.filename: entry for entry in archive.infolist()}
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ValidationError(_("This zip file is damaged."))
    check_entries(entries)
    if "conversations.json" not in entries:
        raise ValidationError(_("This zip holds no conversations.json: it is not an export from mimoweb."))
    if entries["conversations.json"].file_size > MAX_IMPORT_BYTES:
        raise ValidationError(
            _("Its conversations.json is larger than %(limit)s."), params={"limit": filesizeformat(MAX_IMPORT_BYTES)}
        )
    try:
        data = json.loads(archive.read("conversations.json"))
    except (ValueError, RecursionError):
        raise ValidationError(_("Its conversations.json is not JSON."))
    except (zipfile.BadZipFile, OSError, EOFError):
        raise ValidationError(_("This zip file is damaged."))
    read = read_export(data)
    for conversation in read:
        for message in conversation.messages:
            for attachment in message.attachments:
                read_archived_file(archive, entries, attachment)
    return read


def check_entries(entries):
    """Refuses a zip no mimoweb export looks like: too many entries, too much unpacked, or a name
    that climbs out of a folder or starts at the root (nothing is ever written by its name, but
    such a zip was made to harm whatever unpacks it)."""
    if len(entries) > MAX_ARCHIVE_ENTRIES:
        raise ValidationError(_("This zip holds more than %(count)s files."), params={"count": MAX_ARCHIVE_ENTRIES})
    if sum(entry.file_size for entry in entries.values()) > MAX_UNPACKED_BYTES:
        raise ValidationError(
            _("This zip unpacks to more than %(limit)s."), params={"limit": filesizeformat(MAX_UNPACKED_BYTES)}
        )
    for name in entries:
        if name.startswith(("/", "\\")) or "\\" in name or ".." in name.split("/") or ":" in name:
            raise ValidationError(_("This zip holds a file named “%(name)s”, which no export holds."), params={"name": name})


def read_archived_file(archive, entries, attachment):
    name = attachment.fields["name"]
    entry = entries.get(attachment.file)
    if entry is None:
        raise ValidationError(_("The file of %(name)s is missing from the zip."), params={"name": name})
    if entry.file_size != attachment.size or entry.file_size > settings.MIMOWEB_ATTACHMENT_MAX_BYTES:
        raise ValidationError(_("The file of %(name)s is not the size the export says."), params={"name": name})
    try:
        data = archive.read(entry)
    except (zipfile.BadZipFile, OSError, EOFError):  # a CRC or length that does not match
        raise ValidationError(_("The file of %(name)s is damaged in the zip."), params={"name": name})
    if hashlib.sha256(data).hexdigest() != attachment.fields["sha256"]:
        raise ValidationError(
            _("The file of %(name)s is not the one the export names: its sha256 differs."), params={"name": name}
        )
    try:
        attachment.upload = attachments.read_restored(attachment.fields["kind"], name, attachment.fields["content_type"], data)
    except attachments.Refused as refusal:
        raise ValidationError(str(refusal))
    attachment.upload.content = None  # read again from the zip when it is stored: not all held at once
    attachment.archive = archive


def attachment_bytes(read_conversations):
    """What the attachments of an import add to the member's storage (chat/attachments.py check_storage_quota)."""
    return sum(attachment.size for read in read_conversations for message in read.messages for attachment in message.attachments)


def read_export(data):
    """Conversations from export data (a file's, or a share's snapshot), unsaved and checked."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValidationError(_("This is not a conversation export from mimoweb."))
    if data.get("version") != VERSION:
        raise ValidationError(
            _("This export has version %(version)s; this mimoweb reads version %(supported)s."),
            params={"version": json.dumps(data.get("version")), "supported": VERSION},
        )
    conversations = data.get("conversations")
    if not isinstance(conversations, list):
        raise ValidationError(_("“conversations” must be a list."))
    if not conversations:
        raise ValidationError(_("This export holds no conversations."))
    return [read_conversation(item, _("conversation %(number)s") % {"number": n}) for n, item in enumerate(conversations, 1)]


def read_conversation(item, where):
    conversation = Conversation(**read_fields(item, Conversation, CONVERSATION_FIELDS, where))
    messages = []
    for number, entry in enumerate(read_list(item, "messages", where), 1):
        at = _("%(where)s, message %(number)s") % {"where": where, "number": number}
        message = ReadMessage(
            # Not carried by a file, but set here: its figures stay as history, and never count toward usage or budgets.
            message=Message(**read_fields(entry, Message, MESSAGE_FIELDS, at), imported=True),
            file_id=read_id(entry, "id", at),
            parent=None if entry.get("parent") is None else read_id(entry, "parent", at),
            api_key=read_key(entry, at),
        )
        if message.message.status == Message.Status.STREAMING:
            message.message.status = Message.Status.INTERRUPTED  # nothing streams it here
        for n, call in enumerate(read_list(entry, "tool_calls", at), 1):
            call_at = _("%(where)s, tool call %(number)s") % {"where": at, "number": n}
            message.tool_calls.append(ToolCall(**read_fields(call, ToolCall, TOOL_CALL_FIELDS, call_at)))
        for n, citation in enumerate(read_list(entry, "citations", at), 1):
            citation_at = _("%(where)s, source %(number)s") % {"where": at, "number": n}
            message.citations.append(Citation(**read_fields(citation, Citation, CITATION_FIELDS, citation_at)))
        for n, attached in enumerate(entry.get("attachments") or [], 1):  # none in exports made before files
            attachment_at = _("%(where)s, file %(number)s") % {"where": at, "number": n}
            message.attachments.append(read_attachment(attached, attachment_at))
        check_unique_indexes(message, at)
        messages.append(message)
    return ReadConversation(conversation, read_key(item, where), parents_first(messages, where))


def read_attachment(item, where):
    fields = read_fields(item, Attachment, ATTACHMENT_FIELDS, where)
    if not re.fullmatch(r"[0-9a-f]{64}", fields["sha256"]):
        raise invalid(where, _("“sha256” must be 64 hexadecimal digits."))
    if PurePath(fields["name"]).name != fields["name"] or "\\" in fields["name"]:
        raise invalid(where, _("“name” must be a file name, not a path."))
    size = read_id(item, "size", where)
    file = item.get("file")
    if not isinstance(file, str):
        raise invalid(where, _("“file” must be text."))
    return ReadAttachment(fields=fields, size=size, file=file)


def read_list(item, name, where):
    value = item.get(name)
    if not isinstance(value, list):
        raise invalid(where, _("“%(name)s” must be a list.") % {"name": name})
    return value


def read_id(item, name, where):
    value = item.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(where, _("“%(name)s” must be a whole number.") % {"name": name})
    return value


def read_key(item, where):
    value = item.get("api_key")
    if value is None:
        return None
    if not (isinstance(value, dict) and isinstance(value.get("label"), str) and isinstance(value.get("last_four"), str)):
        raise invalid(where, _("“api_key” must be empty or name a key by its label and last four characters."))
    return {"label": value["label"], "last_four": value["last_four"]}


def read_fields(item, model, names, where):
    """The values of these fields, each checked against the model field it is saved to."""
    if not isinstance(item, dict):
        raise invalid(where, _("This must be an object."))
    return {name: read_value(item, model._meta.get_field(name), where) for name in names}


def read_value(item, model_field, where):
    name = model_field.name
    if name not in item:
        if name in ADDED_LATER:
            return model_field.get_default()
        raise invalid(where, _("“%(name)s” is missing.") % {"name": name})
    value = item[name]
    if value is None:
        if model_field.null:
            return None
        raise invalid(where, _("“%(name)s” cannot be empty (null).") % {"name": name})
    problem = value_problem(model_field, value)
    if problem:
        raise invalid(where, problem % {"name": name, "largest": largest_number(model_field)})
    if (bounds := SETTING_RANGES.get(name)) and not bounds[0] <= value <= bounds[1]:
        low, high = bounds
        raise invalid(where, _("“%(name)s” must be from %(low)s to %(high)s.") % {"name": name, "low": low, "high": high})
    if isinstance(model_field, models.DateTimeField):
        return parse_datetime(value)
    return value


def value_problem(model_field, value):
    """What is wrong with a value for this field (a message with %(name)s), or None."""
    if isinstance(model_field, models.BooleanField):
        return None if isinstance(value, bool) else _("“%(name)s” must be true or false.")
    if isinstance(model_field, models.DateTimeField):
        moment = parse_datetime(value) if isinstance(value, str) else None
        if moment is None or timezone.is_naive(moment):
            return _("“%(name)s” must be a date and time with its offset (ISO 8601).")
        return None
    if isinstance(model_field, models.PositiveIntegerField | models.PositiveSmallIntegerField):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= largest_number(model_field):
            return _("“%(name)s” must be a whole number from 0 to %(largest)s.")
        return None
    if isinstance(model_field, models.FloatField):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return _("“%(name)s” must be a number.")
        return None
    if isinstance(model_field, models.JSONField):
        # A field whose default is a {} or a [] holds that kind of value; the others hold any JSON.
        kind = type(model_field.get_default()) if model_field.has_default() else object
        if not isinstance(value, kind):
            return _("“%(name)s” has the wrong type.")
        as_text = json.dumps(value, ensure_ascii=False)
        return _("“%(name)s” holds characters that cannot be stored.") if unstorable(as_text) or "\\u0000" in as_text else None
    if not isinstance(value, str):
        return _("“%(name)s” must be text.")
    if unstorable(value):
        return _("“%(name)s” holds characters that cannot be stored.")
    if model_field.max_length and len(value) > model_field.max_length:
        return _("“%(name)s” is too long.")
    if model_field.choices and value not in dict(model_field.flatchoices):
        return _("“%(name)s” is not one of the values mimoweb knows.")
    if isinstance(model_field, models.URLField) and not value.lower().startswith(("https://", "http://")):
        return _("“%(name)s” must be a web address (http or https).")
    return None


def largest_number(model_field):
    return 32_767 if isinstance(model_field, models.PositiveSmallIntegerField) else 2_147_483_647


def unstorable(text):
    """Text a database here refuses: NUL (PostgreSQL) or a lone surrogate (not UTF-8), both valid in JSON."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return "\x00" in text


def check_unique_indexes(message, where):
    for rows, label in ((message.tool_calls, _("tool calls")), (message.citations, _("sources"))):
        indexes = [row.index for row in rows]
        if len(set(indexes)) != len(indexes):
            raise invalid(where, _("Two %(things)s have the same index.") % {"things": label})


def parents_first(messages, where):
    """The messages in file order, except that a parent always comes before its children.

    A file written by mimoweb is in that order already; a parent that is not in
    the file, a duplicate id or a loop of parents is an error.
    """
    by_id = {}
    for message in messages:
        if message.file_id in by_id:
            raise invalid(where, _("Two messages have the id %(id)s.") % {"id": message.file_id})
        by_id[message.file_id] = message
    ordered, placed = [], set()
    for message in messages:
        chain, current = [], message
        while current.file_id not in placed:
            if current in chain:  # the same object met twice: a loop
                raise invalid(where, _("The messages’ parents go round in a loop."))
            chain.append(current)
            if current.parent is None:
                break
            if current.parent not in by_id:
                raise invalid(where, _("Message %(id)s follows a message that is not in the file.") % {"id": current.file_id})
            current = by_id[current.parent]
        for each in reversed(chain):
            placed.add(each.file_id)
            ordered.append(each)
    return ordered


def invalid(where, problem):
    return ValidationError(_("%(where)s: %(problem)s") % {"where": capfirst(where), "problem": problem})


# --- Import ------------------------------------------------------------------------


def import_conversations(read_conversations, *, owner, team):
    """Save conversations read from a file as new ones of this member in this team: all of them, or none.

    In short transactions (a conversation's row, then its messages MESSAGES_PER_TRANSACTION
    at a time), not in one: on SQLite a transaction holds the lock on the whole database,
    and one for a 1,500-conversation import held it for 26 s, so answers that finished
    meanwhile could not save theirs (they wait 5 s, the busy timeout, then are refused).
    All or none is kept by hand: when a save fails, what the import saved is deleted
    again, and the member is told nothing was imported. While it runs, the member's own
    list may show the conversations arriving; a process killed mid-import (kill -9)
    leaves the conversations it had saved, as an interrupted upload would.
    """
    keys = usable_keys(owner, team)
    turns = TakingTurns()
    saved = []
    try:
        # The last first: each gets a later updated_at, so the list shows them in the file's order.
        for read in reversed(read_conversations):
            saved.insert(0, save_conversation(read, owner, team, keys, turns))
    except BaseException:
        delete_imported(saved, turns)
        # Files stored for rows that were never saved: a file goes with the last row naming it (and
        # the rows deleted above take theirs once committed), these had none.
        shas = {a.fields["sha256"] for read in read_conversations for m in read.messages for a in m.attachments}
        for sha256 in shas:
            transaction.on_commit(partial(attachments.delete_unused_files, sha256))
        raise
    return saved


class TakingTurns:
    """The import's transactions, with the database's lock left free now and then for other writers.

    SQLite hands its write lock to no one in turn: a writer that finds it taken
    waits, looking again at most every 100 ms, and an import that begins its next
    transaction as soon as it commits the last kept answers' saves waiting for
    seconds. So once the import has held the lock for HOLD in all, it leaves it
    free for PAUSE, longer than a waiting writer's look: the import takes about a
    quarter longer (1,500 conversations: 6 s of pauses in 30 s), and an answer's
    save waits a fraction of a second instead of seconds. PostgreSQL locks rows,
    not the database: there it never pauses.
    """

    HOLD = 0.4
    PAUSE = 0.11

    def __init__(self):
        self.held = 0.0
        self.pauses = connection.vendor == "sqlite"

    @contextmanager
    def atomic(self):
        started = time.monotonic()
        with transaction.atomic():
            yield
        self.held += time.monotonic() - started
        # Inside a caller's transaction the lock is not let go: no pause then.
        if self.pauses and self.held >= self.HOLD and not connection.in_atomic_block:
            time.sleep(self.PAUSE)
            self.held = 0.0


def usable_keys(owner, team):
    """The keys a member may run a conversation with, by (label, last four): the team's and their own."""
    keys = ApiKey.objects.filter(Q(owner__isnull=True) | Q(owner=owner), team=team).order_by("created_at")
    # Two keys with the same label and tail: the active one wins (it comes last).
    return {(key.label, key.last_four): key for key in sorted(keys, key=lambda key: key.revoked_at is None)}


# A transaction of the import writes about this many messages (with their tool calls, sources and
# search index entries): about 50 ms here, far below SQLite's 5 s busy timeout whatever the file holds.
MESSAGES_PER_TRANSACTION = 100


def save_conversation(read, owner, team, keys, turns):
    """Save one conversation in short transactions; if one fails, the conversation is deleted again."""
    conversation = read.conversation
    conversation.owner, conversation.team = owner, team
    conversation.api_key = key_named(read.api_key, keys)
    created_at = conversation.created_at
    with turns.atomic():
        conversation.save()
        # auto_now_add ignores the value given: write the exported one afterwards (updated_at stays the import time).
        Conversation.objects.filter(pk=conversation.pk).update(created_at=created_at)
    conversation.created_at = created_at
    new_ids = {}
    try:
        for batch in itertools.batched(read.messages, MESSAGES_PER_TRANSACTION):
            with turns.atomic():
                save_messages(batch, conversation, keys, new_ids)
    except BaseException:
        delete_imported([conversation], turns)
        raise
    return conversation


def save_messages(read_messages, conversation, keys, new_ids):
    """Save these messages of the conversation, parents first; `new_ids` maps the file's ids to the saved ones."""
    for read_message in read_messages:
        message = read_message.message
        message.conversation = conversation
        message.parent_id = None if read_message.parent is None else new_ids[read_message.parent]
        message.api_key = key_named(read_message.api_key, keys)
        message.save()
        new_ids[read_message.file_id] = message.pk
        for row in read_message.tool_calls + read_message.citations:
            row.message = message
    ToolCall.objects.bulk_create([call for read_message in read_messages for call in read_message.tool_calls])
    Citation.objects.bulk_create([citation for read_message in read_messages for citation in read_message.citations])
    for read_message in read_messages:
        saved = [save_attachment(attachment, read_message.message, conversation) for attachment in read_message.attachments]
        if saved:
            search.index_attachments(read_message.message, saved)


def save_attachment(read, message, conversation):
    """An imported file stored (once per content, as uploads are) with its row, on the new message."""
    upload = read.upload
    upload.content = ContentFile(read.archive.read(read.file))
    try:
        owner, created_at = conversation.owner, read.fields["created_at"]
        return attachments.store(upload, owner=owner, conversation=conversation, message=message, created_at=created_at)
    finally:
        upload.content = None


def delete_imported(conversations, turns):
    """Take back what a failed import saved: each conversation in a transaction of its own, as it was saved."""
    for conversation in conversations:
        with turns.atomic():
            conversation.delete()


def key_named(api_key, keys):
    return keys.get((api_key["label"], api_key["last_four"])) if api_key else None
