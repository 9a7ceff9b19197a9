"""The Django admin for chat: prices, and the review trail read-only.

Conversations, messages, tool calls and citations are not registered: a
superuser reads a conversation only through Review, with a reason its owner
sees, never around it here.
"""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from chat.models import Price, ReviewAccess


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = [
        "model",
        "valid_from",
        "currency",
        "input_per_million",
        "cached_input_per_million",
        "output_per_million",
        "web_search_per_thousand",
    ]
    list_filter = ["model"]
    search_fields = ["model"]


@admin.register(ReviewAccess)
class ReviewAccessAdmin(admin.ModelAdmin):
    """The record of who read whose conversation and why: nobody adds, edits or deletes it here."""

    list_display = ["opened_at", "reviewer", "owner", "team", "title"]
    list_filter = ["team"]
    search_fields = ["reviewer__username", "owner__username"]
    fields = ["opened_at", "reviewer", "owner", "team", "title", "reason"]
    readonly_fields = fields

    @admin.display(description=_("conversation"))
    def title(self, obj):
        return obj.conversation_title

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
