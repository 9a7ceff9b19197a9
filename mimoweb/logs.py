"""Log filters named in settings.LOGGING."""

import logging


class OneLineForClientErrors(logging.Filter):
    """A refused request (403, a CSRF failure, any 4xx) is one line; a real 500 keeps its traceback.

    Django logs PermissionDenied and SuspiciousOperation with the exception
    attached, so each 403 would write some 30 lines of traceback about code
    that did what it should. The record keeps its message and status code.
    """

    def filter(self, record):
        if record.name.startswith(("django.request", "django.security")) and getattr(record, "status_code", 500) < 500:
            record.exc_info = record.exc_text = None
        return True
