from django.urls import path

from chat.views import attachments, conversations
from chat.views import library
from chat.views import review
from chat.views import sharing, transfer
from chat.views import search
from chat.views import limits
from chat.views import usage

urlpatterns = [
    path("chats/", library.conversation_list, name="conversation_list"),
    path("chats/sidebar/", library.sidebar, name="sidebar"),
    path("chats/trash/", library.trash, name="trash"),
    path("chats/<uuid:conversation_id>/sidebar-item/", library.sidebar_item, name="sidebar_item"),
    path("chats/<uuid:conversation_id>/rename/", library.rename, name="rename_conversation"),
    path("chats/<uuid:conversation_id>/pin/", library.pin, name="pin_conversation"),
    path("chats/<uuid:conversation_id>/delete/", library.delete, name="delete_conversation"),
    path("chats/<uuid:conversation_id>/restore/", library.restore, name="restore_conversation"),
    path(
        "chats/<uuid:conversation_id>/messages/<int:message_id>/details/",
        library.message_details,
        name="message_details",
    ),
    path("chats/new/", conversations.new_conversation, name="new_conversation"),
    path("chats/search/", search.search_page, name="search"),
    path("chats/<uuid:conversation_id>/", conversations.conversation_page, name="conversation"),
    path("chats/<uuid:conversation_id>/messages/", conversations.message_page, name="message_page"),
    path(
        "chats/<uuid:conversation_id>/messages/<int:message_id>/show/",
        conversations.show_version,
        name="show_version",
    ),
    # -- Attachments --
    path("chats/<uuid:conversation_id>/attachments/", attachments.upload, name="upload_attachments"),
    path("attachments/<uuid:attachment_id>/", attachments.attachment_file, name="attachment"),
    path("attachments/<uuid:attachment_id>/thumbnail/", attachments.thumbnail, name="attachment_thumbnail"),
    path("attachments/<uuid:attachment_id>/remove/", attachments.remove, name="remove_attachment"),
    path("review/", review.review_list, name="review_list"),
    path("review/<uuid:conversation_id>/", review.review_conversation, name="review_conversation"),
    path("review/<uuid:conversation_id>/reason/", review.review_reason, name="review_reason"),
    path("chats/read-by-reviewers/", review.review_accesses, name="review_accesses"),
    path("teams/<int:team_id>/review/", review.team_review_settings, name="team_review_settings"),
    path("chats/<uuid:conversation_id>/export.json", transfer.export_conversation, {"kind": "json"}, name="export_json"),
    path("chats/<uuid:conversation_id>/export.md", transfer.export_conversation, {"kind": "md"}, name="export_markdown"),
    path("chats/export.json", transfer.export_all, {"kind": "json"}, name="export_all_json"),
    path("chats/export.md", transfer.export_all, {"kind": "md"}, name="export_all_markdown"),
    path("chats/import/", transfer.import_conversations, name="import_conversations"),
    path("chats/<uuid:conversation_id>/shares/", sharing.conversation_shares, name="conversation_shares"),
    path("shares/", sharing.share_list, name="share_list"),
    path("shares/<uuid:share_id>/", sharing.open_share, name="share"),
    path("shares/<uuid:share_id>/revoke/", sharing.revoke_share, name="revoke_share"),
    # -- Usage and cost --
    path("teams/<int:team_id>/usage/", usage.team_usage, name="team_usage"),
    path("teams/<int:team_id>/usage.csv", usage.team_usage_csv, name="team_usage_csv"),
    path("usage/", usage.my_usage, name="my_usage"),
    path("usage.csv", usage.my_usage_csv, name="my_usage_csv"),
    # -- Budgets and pace --
    path("teams/<int:team_id>/limits/", limits.team_limits, name="team_limits"),
]
