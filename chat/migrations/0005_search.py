"""Search: the entries the full-text index reads, the index itself (per database), and a first filling.

SQLite: an FTS5 table whose content is `chat_searchentry` ("external content": the
words are stored once), kept in step by triggers on that table, so a delete of
any kind (a cascade from a message or conversation, a flush) reaches the index.
Its tokenizer splits on spaces and punctuation only: chat/search.py has already
folded the words and put every Chinese character apart (FTS5's trigram tokenizer
would miss queries shorter than three characters, and 天气 is two).

PostgreSQL: a GIN index over `to_tsvector('simple', text)`; 'simple' lower-cases
and splits, with no stemming or stop words, so it finds what SQLite finds. A query
must use this same expression for the index to serve it (chat.search.matching).

Caution: Django alters an SQLite table by building a new one and dropping the old,
which drops these triggers. A later migration that alters `chat_searchentry` must
create them again (run `create_index` after it).
"""

import django.db.models.deletion
from django.db import migrations, models

SQLITE_INDEX = [
    """CREATE VIRTUAL TABLE chat_searchentry_fts USING fts5(
        text, content='chat_searchentry', content_rowid='id', tokenize='unicode61 remove_diacritics 0'
    )""",
    """CREATE TRIGGER chat_searchentry_fts_insert AFTER INSERT ON chat_searchentry BEGIN
        INSERT INTO chat_searchentry_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    """CREATE TRIGGER chat_searchentry_fts_delete AFTER DELETE ON chat_searchentry BEGIN
        INSERT INTO chat_searchentry_fts(chat_searchentry_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END""",
    """CREATE TRIGGER chat_searchentry_fts_update AFTER UPDATE ON chat_searchentry BEGIN
        INSERT INTO chat_searchentry_fts(chat_searchentry_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO chat_searchentry_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    # Rows that already exist (none when this migration creates the table).
    "INSERT INTO chat_searchentry_fts(chat_searchentry_fts) VALUES ('rebuild')",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS chat_searchentry_fts_insert",
    "DROP TRIGGER IF EXISTS chat_searchentry_fts_delete",
    "DROP TRIGGER IF EXISTS chat_searchentry_fts_update",
    "DROP TABLE IF EXISTS chat_searchentry_fts",
]
POSTGRESQL_INDEX = [
    "CREATE INDEX chat_searchentry_text_search ON chat_searchentry USING gin (to_tsvector('simple'::regconfig, text))"
]
POSTGRESQL_DROP = ["DROP INDEX IF EXISTS chat_searchentry_text_search"]


def run(schema_editor, statements):
    for statement in statements:
        schema_editor.execute(statement, params=None)


def create_index(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    run(schema_editor, POSTGRESQL_INDEX if vendor == "postgresql" else SQLITE_INDEX)


def drop_index(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    run(schema_editor, POSTGRESQL_DROP if vendor == "postgresql" else SQLITE_DROP)


def fill_index(apps, schema_editor):
    """Index the titles and messages written before search existed."""
    from chat.search import rebuild_index

    rebuild_index([apps.get_model("chat", name) for name in ("SearchEntry", "Conversation", "Message")])


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0004_initial_prices"),
    ]

    operations = [
        migrations.CreateModel(
            name="SearchEntry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "kind",
                    models.CharField(
                        choices=[("title", "title"), ("message", "message"), ("reasoning", "thinking")], max_length=20
                    ),
                ),
                ("start", models.PositiveIntegerField(default=0)),
                ("text", models.TextField()),
                ("written_at", models.DateTimeField()),
                (
                    "conversation",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="chat.conversation",
                    ),
                ),
                (
                    "message",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="chat.message",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "search entries",
                "indexes": [models.Index(fields=["conversation", "kind"], name="searchentry_conversation_kind")],
            },
        ),
        migrations.RunPython(create_index, drop_index),
        migrations.RunPython(fill_index, migrations.RunPython.noop),
    ]
