# Traditional Chinese writes dates and numbers as Simplified Chinese does.
from mimoweb.formats.zh_Hans.formats import *  # noqa: F403
