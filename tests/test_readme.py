"""README shows three of the screenshots `make screenshots` writes, kept under docs/screenshots/."""

import re
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
# The screens tests/browser/test_screenshots.py writes, each as <screen>-<phone|desktop>-<light|dark>.png.
SCREENS = {"chat-streaming", "chat-code", "chat-tool", "chat-error", "sidebar", "keys", "usage", "limits"}


def test_the_readme_shows_three_screenshots_that_exist():
    images = re.findall(r"!\[[^\]]+\]\((docs/screenshots/[^)]+)\)", (ROOT / "README.md").read_text())
    assert len(images) == 3
    for image in images:
        path = ROOT / image
        assert path.read_bytes().startswith(b"\x89PNG"), image
        screen, device, scheme = re.fullmatch(r"(.+)-(phone|desktop)-(light|dark)\.png", path.name).groups()
        assert screen in SCREENS, image

