"""Messages saved before versions existed become one chain: each follows the one before it.

Without a parent, every user message of an older conversation would count as
a version of the others (versions are siblings: same parent, same role).
"""

from django.db import migrations


def chain_messages(apps, schema_editor):
    Message = apps.get_model("chat", "Message")
    conversation_ids = (
        Message.objects.filter(parent__isnull=True).values("conversation_id").order_by().distinct()
    )
    for row in conversation_ids.iterator():
        messages = list(
            Message.objects.filter(conversation_id=row["conversation_id"]).order_by("created_at", "id").only("id", "parent_id")
        )
        if sum(message.parent_id is None for message in messages) <= 1:
            continue  # already chained (only the first has no parent)
        changed = []
        for previous, message in zip(messages, messages[1:]):
            if message.parent_id is None:
                message.parent_id = previous.id
                changed.append(message)
        Message.objects.bulk_update(changed, ["parent"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [("chat", "0005_search")]
    operations = [migrations.RunPython(chain_messages, migrations.RunPython.noop)]
