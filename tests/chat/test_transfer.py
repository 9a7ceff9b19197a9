import json
import time
from contextlib import contextmanager
from datetime import timedelta
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError, connection, transaction
from django.db.models.signals import post_save
from django.utils import timezone

from chat import transfer
from chat.models import Citation, Conversation, Message, ToolCall
from tests.conftest import SECRET, make_user

# Message fields an export leaves out on purpose (see chat/transfer.py): ids are given
# separately, the key by its label, and the rest belong to a live stream.
# `imported` is the importing mimoweb's to set (always), never a file's: a round trip gives the same file.
NOT_CARRIED = {"id", "conversation", "parent", "api_key", "heartbeat_at", "process", "stop_requested_at", "imported"}
# Not yet: chat/transfer.py learns attachments (and this count of them left out) on the export branch of issue 13.
NOT_CARRIED |= {"attachments_left_out"}


def build_conversation(owner, team, api_key=None, title="Plans: Q3/Q4 \"draft\" 计划"):
    """A conversation with everything an export must carry: two versions of a question, thinking,
    tool calls with results and errors, sources, usage, timings, an error and a stream cut short."""
    start = timezone.now() - timedelta(hours=2)
    conversation = Conversation.objects.create(
        owner=owner, team=team, title=title, model="mimo-v2.5-pro", thinking=True, web_search=True,
        system_prompt="You are MiMo.\n\nBe brief.", api_key=api_key, temperature=0.3, top_p=0.9, max_output_tokens=4096,
    )

    def add(role, at, **fields):
        return Message.objects.create(conversation=conversation, role=role, created_at=start + timedelta(seconds=at), **fields)

    first = add("user", 0, content="What time is it? Look it up.", visible=False)
    question = add("user", 10, content="What **time** is it?\n<b>now</b>")
    asked = add(
        "assistant", 11, parent=question, content="", reasoning_content="I should call the clock.\n\nThen answer.",
        thinking_signature="sig-1", status="complete", finish_reason="tool_calls", model="mimo-v2.5-pro",
        api_key=api_key, parameters={"thinking": True, "web_search": True, "temperature": 1.0},
        prompt_tokens=120, completion_tokens=40, reasoning_tokens=25, cached_tokens=64, web_search_calls=1,
        web_search_pages=5, first_token_at=start + timedelta(seconds=13), finished_at=start + timedelta(seconds=14.5),
        reasoning_tool_calls=["web_search"], turns_left_out=2,
    )
    ToolCall.objects.create(
        message=asked, index=0, call_id="call_1", name="current_time", arguments_raw='{"tz": "UTC"}',
        arguments={"tz": "UTC"}, result='{"now": "12:00 ```"}', status="done", duration_ms=3,
    )
    ToolCall.objects.create(
        message=asked, index=1, call_id="call_2", name="calculator", arguments_raw="{bad", arguments=None,
        result="", status="error", error="Arguments were not JSON.", duration_ms=None,
    )
    Citation.objects.create(
        message=asked, index=0, url="https://example.com/time?a=1&b=(2)", title="Time [now]", summary="What time it is.",
        site_name="Example", publish_time="2026-01-02",
    )
    answer = add(
        "assistant", 15, parent=asked, content="It is **noon**.\n\n<script>alert(1)</script>", reasoning_content="",
        status="complete", finish_reason="stop", model="mimo-v2.5-pro", api_key=api_key, prompt_tokens=200,
        completion_tokens=10, first_token_at=start + timedelta(seconds=16), finished_at=start + timedelta(seconds=17),
    )
    add("user", 20, parent=answer, content="And tomorrow?")
    add(
        "assistant", 21, content="Tomor", status="error", error_kind="stream_cut", error_text="The stream ended early.",
        model="mimo-v2.5-pro", reasoning_content=None, finished_at=start + timedelta(seconds=22),
    )
    return conversation


@pytest.fixture
def conversation(bob, acme, acme_key):
    return build_conversation(bob, acme, acme_key)


def upload(data, name="export.json"):
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return SimpleUploadedFile(name, body, content_type="application/json")


def without_ids(data):
    """An export with ids and the fields an import sets itself taken out; parents as positions."""
    data = json.loads(json.dumps(data))
    del data["exported_at"]
    for conversation in data["conversations"]:
        del conversation["id"], conversation["updated_at"]
        positions = {message["id"]: number for number, message in enumerate(conversation["messages"])}
        for message in conversation["messages"]:
            message["id"] = positions[message["id"]]
            message["parent"] = positions.get(message["parent"])
    return data


def export_json(client, conversation):
    response = client.get(f"/chats/{conversation.pk}/export.json")
    assert response.status_code == 200
    return json.loads(response.content)


# --- Export ------------------------------------------------------------------------


def test_json_export_carries_every_field_of_messages_tool_calls_and_sources(client, bob, conversation):
    client.force_login(bob)
    data = export_json(client, conversation)
    assert data["format"] == "mimoweb.conversations" and data["version"] == 1
    [exported] = data["conversations"]
    assert exported["title"] == conversation.title
    assert exported["system_prompt"] == "You are MiMo.\n\nBe brief."
    assert (exported["model"], exported["thinking"], exported["web_search"]) == ("mimo-v2.5-pro", True, True)
    assert (exported["temperature"], exported["top_p"], exported["max_output_tokens"]) == (0.3, 0.9, 4096)
    assert len(exported["messages"]) == 6  # the hidden first version included
    message_fields = {f.name for f in Message._meta.concrete_fields} - NOT_CARRIED
    tool_call_fields = {f.name for f in ToolCall._meta.concrete_fields} - {"id", "message"}
    citation_fields = {f.name for f in Citation._meta.concrete_fields} - {"id", "message"}
    asked = exported["messages"][2]
    assert message_fields <= set(asked)
    assert asked["parent"] == exported["messages"][1]["id"]
    assert asked["reasoning_tool_calls"] == ["web_search"] and asked["turns_left_out"] == 2
    assert asked["parameters"]["temperature"] == 1.0
    assert [set(call) for call in asked["tool_calls"]] == [tool_call_fields, tool_call_fields]
    assert asked["tool_calls"][1]["error"] == "Arguments were not JSON."
    assert set(asked["citations"][0]) == citation_fields
    assert exported["messages"][0]["visible"] is False


def test_export_names_the_key_by_label_and_last_four_never_its_secret(client, bob, conversation):
    client.force_login(bob)
    response = client.get(f"/chats/{conversation.pk}/export.json")
    assert SECRET not in response.text
    assert SECRET[:-4] not in response.text
    assert json.loads(response.content)["conversations"][0]["api_key"] == {"label": "Acme production", "last_four": SECRET[-4:]}
    assert "secret" not in response.text.lower()


def test_downloads_have_a_safe_file_name_whatever_the_title(client, bob, acme):
    conversation = Conversation.objects.create(owner=bob, team=acme, title='../../etc/"passwd"\r\nX-Evil: 1; 日本語')
    client.force_login(bob)
    for kind in ("json", "md"):
        disposition = client.get(f"/chats/{conversation.pk}/export.{kind}")["Content-Disposition"]
        assert disposition == f"attachment; filename*=utf-8''etc-passwd-X-Evil-1-%E6%97%A5%E6%9C%AC%E8%AA%9E.{kind}"
    untitled = Conversation.objects.create(owner=bob, team=acme, title="")
    assert client.get(f"/chats/{untitled.pk}/export.md")["Content-Disposition"] == 'attachment; filename="conversation.md"'


def test_markdown_export_reads_as_the_visible_conversation(client, bob, conversation):
    client.force_login(bob)
    response = client.get(f"/chats/{conversation.pk}/export.md")
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    text = response.content.decode()
    assert text.startswith('# Plans: Q3/Q4 "draft" 计划\n')
    assert "Look it up" not in text  # the hidden version
    assert "## You\n\nWhat **time** is it?" in text
    assert "<details>\n<summary>Thinking</summary>\n\n> I should call the clock.\n>\n> Then answer.\n\n</details>" in text
    assert '**Tool call: current_time** (done)\n\nArguments:\n\n```json\n{"tz": "UTC"}\n```' in text
    assert 'Result:\n\n````\n{"now": "12:00 ```"}\n````' in text  # a longer fence than the backticks inside
    assert "Error:\n\n```\nArguments were not JSON.\n```" in text
    assert "1. [Time \\[now\\]](<https://example.com/time?a=1&b=(2)>)" in text
    assert "It is **noon**." in text
    assert text.rstrip().endswith("*The answer stopped before it was finished. What arrived is kept; Retry asks for a new answer from the start.*")
    assert "> **System prompt**\n>\n> You are MiMo." in text
    assert "Temperature: 0.3 · Top p: 0.9 · Maximum output tokens: 4096" in text


def test_export_all_holds_a_list_of_ones_own_conversations_out_of_the_trash(client, alice, bob, acme, conversation):
    Conversation.objects.create(owner=bob, team=acme, title="Older one")
    Conversation.objects.create(owner=bob, team=acme, title="Deleted one", deleted_at=timezone.now())
    Conversation.objects.create(owner=alice, team=acme, title="Alice's")
    client.force_login(bob)
    response = client.get("/chats/export.json")
    assert response["Content-Disposition"] == 'attachment; filename="mimoweb-conversations.json"'
    titles = {c["title"] for c in json.loads(response.content)["conversations"]}
    assert titles == {conversation.title, "Older one"}
    markdown = client.get("/chats/export.md").content.decode()
    assert "# Older one" in markdown and f"# {conversation.title}" in markdown
    assert "Deleted one" not in markdown and "Alice" not in markdown


def test_export_all_reads_in_a_fixed_number_of_queries(client, bob, acme, acme_key, django_assert_max_num_queries):
    for _ in range(5):
        build_conversation(bob, acme, acme_key)
    client.force_login(bob)
    with django_assert_max_num_queries(12):
        assert len(json.loads(client.get("/chats/export.json").content)["conversations"]) == 5


# --- Import ------------------------------------------------------------------------


def test_round_trip_gives_the_same_export_apart_from_ids_and_import_times(client, bob, conversation):
    client.force_login(bob)
    first = export_json(client, conversation)
    response = client.post("/chats/import/", {"file": upload(first)})
    imported = Conversation.objects.exclude(pk=conversation.pk).get()
    assert response["Location"] == f"/chats/{imported.pk}/"
    assert (imported.owner, imported.team) == (bob, conversation.team)
    second = export_json(client, imported)
    assert without_ids(second) == without_ids(first)
    assert set(m.pk for m in imported.messages.all()).isdisjoint(m.pk for m in conversation.messages.all())
    assert imported.updated_at > conversation.updated_at  # the import time: first in the list


def test_imported_rows_equal_the_originals(client, bob, conversation):
    client.force_login(bob)
    client.post("/chats/import/", {"file": upload(export_json(client, conversation))})
    imported = Conversation.objects.exclude(pk=conversation.pk).get()
    pairs = list(zip(conversation.messages.all(), imported.messages.all(), strict=True))
    positions = {old.pk: new.pk for old, new in pairs}
    fields = transfer.MESSAGE_FIELDS + ["api_key_id"]
    for old, new in pairs:
        assert {f: getattr(old, f) for f in fields} == {f: getattr(new, f) for f in fields}
        assert new.parent_id == positions.get(old.parent_id)
        assert list(old.tool_calls.values(*transfer.TOOL_CALL_FIELDS)) == list(new.tool_calls.values(*transfer.TOOL_CALL_FIELDS))
        assert list(old.citations.values(*transfer.CITATION_FIELDS)) == list(new.citations.values(*transfer.CITATION_FIELDS))
    assert imported.created_at == conversation.created_at
    assert imported.api_key == conversation.api_key
    assert (imported.temperature, imported.top_p, imported.max_output_tokens) == (0.3, 0.9, 4096)


def test_an_export_made_before_secret_versions_were_recorded_still_imports(client, bob, conversation):
    client.force_login(bob)
    data = export_json(client, conversation)
    for message in data["conversations"][0]["messages"]:
        del message["api_key_version"]
    response = client.post("/chats/import/", {"file": upload(data)})
    imported = Conversation.objects.exclude(pk=conversation.pk).get()
    assert response["Location"] == f"/chats/{imported.pk}/"
    assert not imported.messages.exclude(api_key_version=None).exists()


def test_an_export_made_before_sampling_settings_imports_with_mimos_defaults(client, bob, conversation):
    client.force_login(bob)
    data = export_json(client, conversation)
    for name in ("temperature", "top_p", "max_output_tokens"):
        del data["conversations"][0][name]
    client.post("/chats/import/", {"file": upload(data)})
    imported = Conversation.objects.exclude(pk=conversation.pk).get()
    assert (imported.temperature, imported.top_p, imported.max_output_tokens) == (None, None, None)


def test_an_export_of_all_imports_every_conversation(client, bob, acme, acme_key, conversation):
    build_conversation(bob, acme, acme_key, title="Second")
    client.force_login(bob)
    data = json.loads(client.get("/chats/export.json").content)
    response = client.post("/chats/import/", {"file": upload(data)})
    assert response["Location"] == "/chats/"
    assert Conversation.objects.count() == 4
    assert Message.objects.count() == 24


def test_a_streaming_answer_comes_back_interrupted(client, bob, acme):
    streaming = Conversation.objects.create(owner=bob, team=acme)
    Message.objects.create(conversation=streaming, role="assistant", content="Half", status="streaming")
    client.force_login(bob)
    data = export_json(client, streaming)
    assert data["conversations"][0]["messages"][0]["status"] == "streaming"
    client.post("/chats/import/", {"file": upload(data)})
    imported = Conversation.objects.exclude(pk=streaming.pk).get()
    assert imported.messages.get().status == "interrupted"


def test_a_key_of_another_team_is_not_linked(client, charlie, conversation):
    client.force_login(conversation.owner)
    data = export_json(client, conversation)
    client.force_login(charlie)
    client.post("/chats/import/", {"file": upload(data)})
    imported = Conversation.objects.get(owner=charlie)
    assert imported.team.name == "Globex"
    assert imported.api_key is None and not imported.messages.filter(api_key__isnull=False).exists()


def test_messages_out_of_order_are_saved_parents_first(client, bob, conversation):
    client.force_login(bob)
    data = export_json(client, conversation)
    data["conversations"][0]["messages"].reverse()
    client.post("/chats/import/", {"file": upload(data)})
    imported = Conversation.objects.exclude(pk=conversation.pk).get()
    answer = imported.messages.get(content__startswith="It is")
    assert answer.parent.reasoning_content.startswith("I should call") and answer.parent.parent.content.startswith("What")


def broken(change):
    """A valid export of one small conversation, with `change` applied to it."""
    def make(valid):
        data = json.loads(json.dumps(valid))
        change(data)
        return data
    return make


def set_message(index, **values):
    return lambda data: data["conversations"][0]["messages"][index].update(values)


def drop_message_field(index, name):
    return lambda data: data["conversations"][0]["messages"][index].pop(name)


BAD_FILES = {
    "not JSON": (b"\x89PNG\r\n", "This file is not JSON"),
    "JSON, not an export": (b"[1, 2, 3]", "This is not a conversation export from mimoweb"),
    "another format": (broken(lambda d: d.update(format="chatgpt")), "This is not a conversation export"),
    "a later version": (broken(lambda d: d.update(version=2)), "This export has version 2; this mimoweb reads version 1"),
    "no conversations": (broken(lambda d: d.update(conversations=[])), "holds no conversations"),
    "missing field": (broken(drop_message_field(2, "content")), "Conversation 1, message 3: “content” is missing"),
    "text where a number goes": (broken(set_message(2, prompt_tokens="120")), "“prompt_tokens” must be a whole number"),
    "negative number": (broken(set_message(2, completion_tokens=-1)), "“completion_tokens” must be a whole number"),
    "number where text goes": (broken(set_message(1, content=5)), "message 2: “content” must be text"),
    "unknown status": (broken(set_message(1, status="exploded")), "“status” is not one of the values"),
    "naive time": (broken(set_message(1, created_at="2026-01-01T10:00:00")), "“created_at” must be a date and time"),
    "null where none allowed": (broken(set_message(1, visible=None)), "“visible” cannot be empty"),
    "parameters not an object": (broken(set_message(1, parameters=[1])), "“parameters” has the wrong type"),
    "NUL character": (broken(set_message(1, content="a\x00b")), "“content” holds characters that cannot be stored"),
    "lone surrogate": (broken(set_message(1, content="\ud800")), "“content” holds characters that cannot be stored"),
    "nested beyond reason": (b"[" * 100_000 + b"]" * 100_000, "This file is not JSON"),
    "title too long": (broken(lambda d: d["conversations"][0].update(title="x" * 201)), "“title” is too long"),
    "unknown parent": (broken(set_message(1, parent=999999)), "follows a message that is not in the file"),
    "parent loop": (
        broken(lambda d: [m.update(parent=d["conversations"][0]["messages"][1 - i]["id"]) for i, m in enumerate(d["conversations"][0]["messages"][:2])]),
        "go round in a loop",
    ),
    "duplicate id": (broken(lambda d: d["conversations"][0]["messages"][1].update(id=d["conversations"][0]["messages"][0]["id"])), "Two messages have the id"),
    "script link in a source": (
        broken(lambda d: d["conversations"][0]["messages"][2]["citations"][0].update(url="javascript:alert(1)")),
        "source 1: “url” must be a web address",
    ),
    "tool call with wrong type": (
        broken(lambda d: d["conversations"][0]["messages"][2]["tool_calls"][0].update(index="0")),
        "tool call 1: “index” must be a whole number",
    ),
    "temperature as text": (broken(lambda d: d["conversations"][0].update(temperature="hot")), "“temperature” must be a number"),
    "temperature out of range": (broken(lambda d: d["conversations"][0].update(temperature=9)), "“temperature” must be from 0.0 to 1.5"),
    "top_p not finite": (broken(lambda d: d["conversations"][0].update(top_p=float("nan"))), "“top_p” must be a number"),
    "no output tokens": (broken(lambda d: d["conversations"][0].update(max_output_tokens=0)), "“max_output_tokens” must be from 1 to"),
    "messages not a list": (broken(lambda d: d["conversations"][0].update(messages={})), "“messages” must be a list"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_file_is_explained_and_creates_nothing(client, bob, conversation, case):
    client.force_login(bob)
    body, expected = BAD_FILES[case]
    if callable(body):
        body = body(export_json(client, conversation))
    before = (Conversation.objects.count(), Message.objects.count(), ToolCall.objects.count(), Citation.objects.count())
    response = client.post("/chats/import/", {"file": upload(body)})
    assert response.status_code == 200
    assert expected in response.content.decode(), response.content.decode()
    assert (Conversation.objects.count(), Message.objects.count(), ToolCall.objects.count(), Citation.objects.count()) == before


def test_a_file_over_the_limit_is_refused_unread(client, bob, conversation, monkeypatch):
    client.force_login(bob)
    data = export_json(client, conversation)
    monkeypatch.setattr(transfer, "MAX_IMPORT_BYTES", 1000)
    response = client.post("/chats/import/", {"file": upload(data)})
    assert "an export can be at most 1000" in response.content.decode()
    assert Conversation.objects.count() == 1


def test_one_bad_conversation_in_a_file_imports_none_of_them(client, bob, acme, conversation):
    client.force_login(bob)
    data = export_json(client, conversation)
    good = data["conversations"][0]
    bad = json.loads(json.dumps(good))
    bad["messages"][0]["role"] = "system"
    data["conversations"] = [good, bad]
    response = client.post("/chats/import/", {"file": upload(data)})
    assert "Conversation 2, message 1: “role”" in response.content.decode()
    assert Conversation.objects.count() == 1


def test_a_failure_while_saving_rolls_the_whole_import_back(bob, acme, conversation):
    read = transfer.read_export(transfer.export_data(transfer.exportable(Conversation.objects.all())))
    real_save = transfer.save_conversation
    calls = []

    def fail_the_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real_save(*args)

    with mock.patch.object(transfer, "save_conversation", fail_the_second), pytest.raises(RuntimeError):
        transfer.import_conversations(read * 2, owner=bob, team=acme)
    assert Conversation.objects.count() == 1 and Message.objects.count() == 6


def read_twice(conversation):
    """Two conversations read from an export of this one (two reads: each its own unsaved rows)."""
    data = transfer.export_data(transfer.exportable(Conversation.objects.filter(pk=conversation.pk)))
    return transfer.read_export(data) + transfer.read_export(data)


@contextmanager
def on_each_new_message(action):
    """Call action() after each message the import saves, inside its transaction."""

    def saved(sender, instance, created, **kwargs):
        if created:
            action()

    post_save.connect(saved, sender=Message, weak=False, dispatch_uid="test-new-message")
    try:
        yield
    finally:
        post_save.disconnect(sender=Message, dispatch_uid="test-new-message")


@pytest.mark.django_db(transaction=True)
def test_an_import_commits_as_it_goes_so_it_never_holds_the_database_for_long(bob, acme, conversation, monkeypatch):
    """On SQLite a transaction locks the whole database: other members' answers wait for its end."""
    monkeypatch.setattr(transfer, "MESSAGES_PER_TRANSACTION", 2, raising=False)
    read = read_twice(conversation)
    uncommitted, most_uncommitted = [], []

    def count():
        uncommitted.append(1)
        most_uncommitted.append(len(uncommitted))
        transaction.on_commit(uncommitted.clear)

    with on_each_new_message(count):
        transfer.import_conversations(read, owner=bob, team=acme)
    assert max(most_uncommitted) == 2
    assert Message.objects.count() == 18


@pytest.mark.django_db(transaction=True)
def test_an_import_on_sqlite_leaves_the_database_free_for_other_writers_now_and_then(bob, acme, conversation, monkeypatch):
    """SQLite hands its lock to no one in turn: an import that takes it again at once keeps answers' saves waiting."""
    monkeypatch.setattr(transfer.TakingTurns, "HOLD", 0)  # a pause after every transaction
    pauses = []
    monkeypatch.setattr(time, "sleep", lambda seconds: pauses.append(connection.in_atomic_block))
    transfer.import_conversations(read_twice(conversation), owner=bob, team=acme)
    # Two conversations, each a transaction for its row and one for its messages; PostgreSQL locks rows.
    assert pauses == ([False] * 4 if connection.vendor == "sqlite" else [])


@pytest.mark.django_db(transaction=True)
def test_a_failure_halfway_through_a_conversation_leaves_nothing_of_the_import(bob, acme, conversation, monkeypatch):
    monkeypatch.setattr(transfer, "MESSAGES_PER_TRANSACTION", 2, raising=False)
    read = read_twice(conversation)
    saved = []

    def fail_the_ninth():  # the third message of the second conversation: its first two are committed
        saved.append(1)
        if len(saved) == 9:
            raise RuntimeError("disk full")

    with on_each_new_message(fail_the_ninth), pytest.raises(RuntimeError):
        transfer.import_conversations(read, owner=bob, team=acme)
    assert Conversation.objects.count() == 1 and Message.objects.count() == 6
    assert ToolCall.objects.count() == 2 and Citation.objects.count() == 1


def test_a_database_failure_while_importing_says_nothing_was_imported(client, bob, conversation, caplog):
    client.force_login(bob)
    data = export_json(client, conversation)

    def locked():
        raise OperationalError("database is locked")

    with on_each_new_message(locked):
        response = client.post("/chats/import/", {"file": upload(data)})
    assert response.status_code == 200
    assert "Nothing was imported" in response.content.decode()
    assert Conversation.objects.count() == 1
    assert [record.message for record in caplog.records] == [f"An import by member {bob.pk} failed"]


def test_a_member_of_no_team_cannot_import(client, db, conversation):
    loner = make_user("loner")
    client.force_login(conversation.owner)
    data = export_json(client, conversation)
    client.force_login(loner)
    response = client.post("/chats/import/", {"file": upload(data)})
    assert "not in a team" in response.content.decode()
    assert Conversation.objects.count() == 1


def test_import_page_shows_the_form(client, bob):
    client.force_login(bob)
    page = client.get("/chats/import/").content.decode()
    assert 'enctype="multipart/form-data"' in page and 'type="file"' in page


# --- Who may do what ---------------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "charlie"])  # a teammate, another team's member
@pytest.mark.parametrize("kind", ["json", "md"])
def test_others_get_404_exporting_a_conversation_that_is_not_theirs(client, conversation, who, kind, request):
    client.force_login(request.getfixturevalue(who))
    assert client.get(f"/chats/{conversation.pk}/export.{kind}").status_code == 404


@pytest.mark.parametrize("kind", ["json", "md"])
def test_a_conversation_in_the_trash_is_not_exported(client, bob, conversation, kind):
    conversation.deleted_at = timezone.now()
    conversation.save()
    client.force_login(bob)
    assert client.get(f"/chats/{conversation.pk}/export.{kind}").status_code == 404


@pytest.mark.parametrize("who", ["alice", "charlie"])
def test_export_all_never_holds_someone_elses_conversation(client, conversation, who, request):
    client.force_login(request.getfixturevalue(who))
    assert json.loads(client.get("/chats/export.json").content)["conversations"] == []
    assert conversation.title not in client.get("/chats/export.md").content.decode()


@pytest.mark.parametrize(
    "url", ["/chats/{pk}/export.json", "/chats/{pk}/export.md", "/chats/export.json", "/chats/export.md", "/chats/import/"]
)
def test_signed_out_visitor_is_sent_to_sign_in(client, conversation, url):
    response = client.get(url.format(pk=conversation.pk))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/sign-in/")


def test_signed_out_visitor_cannot_import(client, conversation):
    data = transfer.export_data(transfer.exportable(Conversation.objects.all()))
    response = client.post("/chats/import/", {"file": upload(data)})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/sign-in/")
    assert Conversation.objects.count() == 1


def test_an_import_is_always_the_importers_own(client, alice, conversation):
    client.force_login(conversation.owner)
    data = export_json(client, conversation)
    client.force_login(alice)
    client.post("/chats/import/", {"file": upload(data)})
    assert Conversation.objects.filter(owner=conversation.owner).count() == 1  # bob's untouched
    assert Conversation.objects.filter(owner=alice).count() == 1
