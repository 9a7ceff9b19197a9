"""Keeps the search index up to date as messages and titles are saved; chat/search.py does the work.

Signals, so that the code that writes messages (the generation, edits, imports)
needs to know nothing of search. Deletes need no signal: entries go with their
message or conversation by cascade, and the index with its entries (migration 0005).
"""

from django.db.models.signals import post_save
from django.dispatch import receiver

from chat import search
from chat.models import Conversation, Message

INDEXED_FIELDS = {"content", "reasoning_content", "status"}


@receiver(post_save, sender=Message, dispatch_uid="search-index-message")
def index_saved_message(sender, instance, update_fields, raw, **kwargs):
    # Not while an answer streams: its progress is written in bulk (generation.save_progress),
    # and it is indexed once, when it is saved with its final status.
    if raw or instance.status == Message.Status.STREAMING:
        return
    if update_fields is not None and not INDEXED_FIELDS & set(update_fields):
        return
    search.index_message(instance)


@receiver(post_save, sender=Conversation, dispatch_uid="search-index-title")
def index_saved_title(sender, instance, update_fields, raw, **kwargs):
    if raw or (update_fields is not None and "title" not in update_fields):
        return
    search.index_title(instance)
