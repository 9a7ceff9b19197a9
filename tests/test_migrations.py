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
