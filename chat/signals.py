"""Keeps the search index up to date as messages and titles are saved (chat/search.py does the work),
deletes an attachment's file with the last row naming it, and closes each HTTP request's database
connections when it ends.

Signals, so that the code that writes messages (the generation, edits, imports)
needs to know nothing of search. Deleted messages need no signal: their entries go
with them by cascade, and the index with its entries (migration 0005).
"""

from functools import partial

from django.core.signals import request_finished
from django.db import connections, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from chat import attachments, search
from chat.models import Attachment, Conversation, Message

INDEXED_FIELDS = {"content", "reasoning_content", "status"}


@receiver(post_save, sender=Message, dispatch_uid="search-index-message")
def index_saved_message(sender, instance, created, update_fields, raw, **kwargs):
    # Not while an answer streams: its progress is written in bulk (generation.save_progress),
    # and it is indexed once, when it is saved with its final status.
    if raw or instance.status == Message.Status.STREAMING:
        return
    if update_fields is not None and not INDEXED_FIELDS & set(update_fields):
        return
    search.index_message(instance, new=created)


@receiver(post_save, sender=Conversation, dispatch_uid="search-index-title")
def index_saved_title(sender, instance, update_fields, raw, **kwargs):
    if raw or (update_fields is not None and "title" not in update_fields):
        return
    search.index_title(instance)


@receiver(request_finished, dispatch_uid="close-request-connections")
def close_request_connections(sender, **kwargs):
    """Under ASGI each request runs its database work in a thread of its own, which ends with it.

    Connections are kept open (CONN_MAX_AGE, settings.py) for the one
    long-lived thread where websockets and streams do theirs; a request's
    would only wait for the garbage collector, so it is closed here, as
    Django does after every request when connections are not kept. Not
    inside a transaction: a test's, whose requests run in its own thread.
    """
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


@receiver(post_delete, sender=Attachment, dispatch_uid="attachment-files")
def delete_unused_attachment_files(sender, instance, **kwargs):
    """A file goes with the last attachment naming it (a cascade deletes rows one by one, with this
    signal each), once the deletion is committed: a rolled-back one must find its file."""
    transaction.on_commit(partial(attachments.delete_unused_files, instance.sha256))
