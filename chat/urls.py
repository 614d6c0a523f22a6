"""The app's URLs. Mount them anywhere (`path("assistant/", include("chat.urls"))`): the page,
its scripts and every URL the API returns follow the prefix (contract v2, "Mounting")."""

from django.urls import path, re_path

from chat import languages, ui_views, views

app_name = "chat"

urlpatterns = [
    path("", views.page_view, name="page"),
    path("c/<uuid:conversation_id>/", views.page_view, name="conversation-page"),
    path("api/models", views.models_view, name="models"),
    path("api/conversations", views.conversations_view, name="conversations"),
    path("api/conversations/<str:conversation_id>", views.conversation_view, name="conversation"),
    path("api/conversations/<str:conversation_id>/messages", views.messages_view, name="messages"),
    path("api/conversations/<str:conversation_id>/regenerate", views.regenerate_view, name="regenerate"),
    path("api/messages/<str:message_id>", views.message_view, name="message"),
    path("api/messages/<str:message_id>/stream", views.stream_view, name="stream"),
    path("api/messages/<str:message_id>/stop", views.stop_view, name="stop"),
    path("api/messages/<str:message_id>/feedback", views.feedback_view, name="feedback"),
    path("api/messages/<str:message_id>/approve", views.approve_view, name="approve"),
    path("api/conversations/<str:conversation_id>/share", views.share_view, name="share"),
    path("s/<str:token>/", views.share_page_view, name="share-page"),
    path("api/conversations/<str:conversation_id>/branch", views.branch_view, name="branch"),
    path(f"api/{views.UPLOAD_PATH}", views.attachments_view, name="attachments"),
    path("api/attachments/<str:attachment_id>", views.attachment_view, name="attachment"),
    path("jsi18n/", languages.catalogue_view, name="jsi18n"),  # the page's strings (issue 32)
    # The AI SDK's chat protocol (chat/ui_views.py)
    path("api/ui/chat", ui_views.ui_chat_view, name="ui-chat"),
    path("api/ui/chat/<str:chat_id>", ui_views.ui_chat_history_view, name="ui-chat-history"),
    path("api/ui/chat/<str:chat_id>/stream", ui_views.ui_chat_stream_view, name="ui-chat-stream"),
    # Anything else under api/ is the API's own 404, whatever the host's handler404 does.
    re_path(r"^api/", views.api_not_found, name="api"),
]
