"""Applies a signed-in user's saved language and time zone to every request."""

import zoneinfo

from django.utils import timezone, translation


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
