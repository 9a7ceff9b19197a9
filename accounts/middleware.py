"""Applies a signed-in user's saved language and time zone to every request, and holds a one-time password's user at the password change."""

import zoneinfo

from django.conf import settings
from django.shortcuts import redirect
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone, translation
from django_htmx.http import HttpResponseClientRedirect


class UserPreferencesMiddleware:
    """The user's saved language wins over the browser's and the cookie's.

    Sits after LocaleMiddleware (which handles visitors who are not signed in)
    and after AuthenticationMiddleware (which tells who the user is).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        if user.is_authenticated and user.language:
            translation.activate(user.language)
            request.LANGUAGE_CODE = user.language
        if user.is_authenticated and user.time_zone:
            timezone.activate(zoneinfo.ZoneInfo(user.time_zone))
        else:
            timezone.deactivate()
        return self.get_response(request)


class PasswordChangeRequiredMiddleware:
    """A user signed in with a one-time password sees only the password change until they choose their own.

    Sits after AuthenticationMiddleware. The socket refuses them too (chat/consumers.py).
    """

    ALLOWED = {"password_change", "password_change_done", "logout", "set_language", "healthz"}

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        if user.is_authenticated and user.must_change_password and not self.allowed(request.path_info):
            url = reverse("password_change")
            # A plain redirect would land the whole password page inside an htmx target.
            return HttpResponseClientRedirect(url) if request.headers.get("HX-Request") else redirect(url)
        return self.get_response(request)

    def allowed(self, path):
        if path.startswith("/" + settings.STATIC_URL.lstrip("/")):
            return True
        try:
            return resolve(path).url_name in self.ALLOWED
        except Resolver404:
            return False
