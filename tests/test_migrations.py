from io import StringIO

from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def test_no_pending_migrations(db):
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_messages_saved_before_versions_become_one_chain(transactional_db, bob, acme):
    before, after = [("chat", "0005_search")], [("chat", "0006_chain_earlier_messages")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    conversation = old.get_model("chat", "Conversation").objects.create(owner_id=bob.pk, team_id=acme.pk)
    Message = old.get_model("chat", "Message")
    ids = [
        Message.objects.create(conversation_id=conversation.pk, role=role, content=text).pk
        for role, text in [("user", "one"), ("assistant", "two"), ("user", "three"), ("assistant", "four")]
    ]
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    parents = dict(Message.objects.values_list("pk", "parent_id"))
    assert [parents[pk] for pk in ids] == [None, *ids[:-1]]
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_rollups_count_the_media_tokens_of_answers_saved_before_they_had_them(transactional_db, bob, acme):
    before, after = [("chat", "0015_message_attachments_left_out")], [("chat", "0016_rollup_media_tokens")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    conversation = old.get_model("chat", "Conversation").objects.create(owner_id=bob.pk, team_id=acme.pk)
    old.get_model("chat", "Message").objects.create(
        conversation_id=conversation.pk, role="assistant", prompt_tokens=2000, completion_tokens=10,
        image_tokens=1024, audio_tokens=None, video_tokens=256,
    )  # fmt: skip
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    new = executor.loader.project_state(after).apps
    rows = new.get_model("chat", "UsageRollup").objects.values_list("period", "image_tokens", "audio_tokens", "video_tokens")
    assert sorted(rows) == [("day", 1024, 0, 256), ("month", 1024, 0, 256)]
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
