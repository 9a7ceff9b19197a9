"""Encryption of MiMo API keys at rest, with keys of their own (never SECRET_KEY)."""

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.views.decorators.debug import sensitive_variables


class UndecryptableSecret(Exception):
    """A stored secret that none of the configured encryption keys opens."""


def _multifernet():
    # Built on each use: cheap, and it always follows the current settings.
    return MultiFernet([Fernet(key) for key in settings.MIMOWEB_ENCRYPTION_KEYS])


@sensitive_variables("plaintext")
def encrypt(plaintext: str) -> str:
    """Encrypt with the first (newest) encryption key."""
    return _multifernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _multifernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise UndecryptableSecret(
            "None of the keys in MIMOWEB_ENCRYPTION_KEYS can decrypt this stored secret: "
            "the key it was encrypted with was removed or changed. Put that key back "
            "(after the new one) and run `manage.py reencrypt_keys`."
        ) from None


def reencrypt(token: str) -> str:
    """The same secret, encrypted again under the newest encryption key."""
    try:
        return _multifernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise UndecryptableSecret(
            "None of the keys in MIMOWEB_ENCRYPTION_KEYS can decrypt this stored secret, "
            "so it cannot be re-encrypted."
        ) from None
