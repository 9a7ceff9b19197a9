from django.urls import path

from chat.views import conversations

urlpatterns = [
    path("chats/", conversations.conversation_list, name="conversation_list"),
    path("chats/new/", conversations.new_conversation, name="new_conversation"),
    path("chats/<uuid:conversation_id>/", conversations.conversation_page, name="conversation"),
]
