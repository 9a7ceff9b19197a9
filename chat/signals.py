"""Keeps the search index up to date as messages and titles are saved (chat/search.py does the work),
keeps the usage roll-ups in step with the answers (chat/usage.py does the work), deletes an
attachment's file with the last row naming it, and closes each HTTP request's database connections
when it ends.

Signals, so that the code that writes messages (the generation, edits, imports)
needs to know nothing of search. Deleted messages need no signal: their entries go
with them by cascade, and the index with its entries (migration 0005).
"""

from functools import partial

from django.core.signals import request_finished
from django.db import connections, transaction
from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
from django.dispatch import receiver

from chat import attachments, search, usage
from chat.models import Attachment, Conversation, Message, Price

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


# --- Usage roll-ups ----------------------------------------------------------------
#
# Each save of an answer moves its roll-up from what it added before to what it adds
# now, in the save's transaction when there is one (the generation saves its final
# figures in one: Generation.save_finished_in_one_transaction). Writes that bypass saves change none of the
# counted fields: progress (generation.save_progress), stale streams (mark_dead).


def deleted_from(origin, model):
    """Whether a delete started from instances of this model (one, or a queryset of them)."""
    return isinstance(origin, model) or (isinstance(origin, QuerySet) and origin.model is model)


@receiver(pre_save, sender=Message, dispatch_uid="usage-before-save")
def remember_counted(sender, instance, update_fields, raw, **kwargs):
    instance._counted_before = None
    if raw or instance._state.adding or instance.role != Message.Role.ASSISTANT:
        return
    if update_fields is not None and not usage.COUNTED_FIELDS & set(update_fields):
        instance._counted_before = "unchanged"
        return
    instance._counted_before = usage.counted_as_stored(instance.pk)


@receiver(post_save, sender=Message, dispatch_uid="usage-after-save")
def count_saved_message(sender, instance, raw, **kwargs):
    if raw or instance.role != Message.Role.ASSISTANT or instance._counted_before == "unchanged":
        return
    before = instance._counted_before
    usage.count_change(before, usage.counted_as_saved(instance, before))


@receiver(post_delete, sender=Message, dispatch_uid="usage-message-deleted")
def uncount_deleted_message(sender, instance, origin, **kwargs):
    # Deleted with its conversation: uncount_deleted_conversation took it out. With its team
    # or its owner: their roll-ups go with them by cascade.
    if deleted_from(origin, Message):
        usage.count_change(usage.counted_as_saved(instance), None)


@receiver(pre_delete, sender=Conversation, dispatch_uid="usage-conversation-deleted")
def uncount_deleted_conversation(sender, instance, origin, **kwargs):
    if deleted_from(origin, Conversation):
        usage.uncount_conversation(instance)


@receiver(pre_save, sender=Price, dispatch_uid="usage-price-before-save")
def remember_price_period(sender, instance, raw, **kwargs):
    instance._period_before = None if raw else Price.objects.filter(pk=instance.pk).values_list("model", "valid_from").first()


@receiver(post_save, sender=Price, dispatch_uid="usage-price-saved")
def rebuild_after_price_saved(sender, instance, raw, **kwargs):
    """A new or moved price changes which answers its period and the one before hold: those months'
    roll-ups of its model are made again. A changed rate alone needs nothing: costs are computed
    from the price row when read. A price from a future moment finds nothing to rebuild."""
    if raw:
        return
    before = instance._period_before
    if before == (instance.model, instance.valid_from):
        return
    models, since = {instance.model}, instance.valid_from
    if before is not None:
        models.add(before[0])
        since = min(since, before[1])
    usage.rebuild_rollups(models=models, since=since)


@receiver(post_delete, sender=Price, dispatch_uid="usage-price-deleted")
def rebuild_after_price_deleted(sender, instance, **kwargs):
    usage.rebuild_rollups(models={instance.model}, since=instance.valid_from)


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
