from django.urls import path

from chat import views

urlpatterns = [
    path("", views.page_view, name="chat-page"),
    path("c/<uuid:conversation_id>/", views.page_view, name="chat-conversation-page"),
    path("api/models", views.models_view),
    path("api/conversations", views.conversations_view),
    path("api/conversations/<str:conversation_id>", views.conversation_view),
    path("api/conversations/<str:conversation_id>/messages", views.messages_view),
    path("api/conversations/<str:conversation_id>/regenerate", views.regenerate_view),
    path("api/messages/<str:message_id>/stream", views.stream_view),
    path("api/messages/<str:message_id>/stop", views.stop_view),
]
