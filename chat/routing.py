"""Websocket routes. The live chat adds its conversation socket here."""

websocket_urlpatterns = []
