from django.urls import path

from chat import views

urlpatterns = [
    path("chats/", views.conversation_list, name="conversation_list"),
    path("chats/new/", views.new_conversation, name="new_conversation"),
    path("chats/<uuid:conversation_id>/", views.conversation_page, name="conversation"),
]
