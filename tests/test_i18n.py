"""The Chinese catalogs: complete, compiled, faithful to their placeholders, in step with the code.

The compiled django.mo files are committed on purpose, so that `make run` works
on machines without GNU gettext; these tests make sure nobody forgets to
translate a new string or to run `make messages` (which also compiles).
"""

import gettext
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polib
import pytest
from django.utils import translation

ROOT = Path(__file__).resolve().parent.parent
LOCALE_DIR = ROOT / "locale"
LOCALES = ["zh_Hans", "zh_Hant"]

# A printf-style conversion as Python's % operator reads it: %(name)s, %d, %5.2f ...
# "%%" is a literal percent sign, not a placeholder.
PLACEHOLDER = re.compile(r"%(?:\(\w+\))?[#0\- +]*(?:\d+|\*)?(?:\.(?:\d+|\*))?[diouxXeEfFgGcrsa%]")


def po_path(locale):
    return LOCALE_DIR / locale / "LC_MESSAGES" / "django.po"


def load_po(locale):
    return polib.pofile(str(po_path(locale)))


def live_entries(po):
    return [entry for entry in po if not entry.obsolete]


def describe(entry):
    return f"{entry.msgctxt}|{entry.msgid!r}" if entry.msgctxt else repr(entry.msgid)


def nplurals(po):
    match = re.search(r"nplurals\s*=\s*(\d+)", po.metadata.get("Plural-Forms", ""))
    return int(match.group(1)) if match else None


def placeholders(text):
    return sorted(p for p in PLACEHOLDER.findall(text) if p != "%%")


@pytest.mark.parametrize("locale", LOCALES)
def test_every_msgid_is_translated_and_not_fuzzy(locale):
    po = load_po(locale)
    plural_count = nplurals(po)
    assert plural_count, f"{po_path(locale)}: the header has no Plural-Forms with nplurals."
    problems = []
    if po.metadata_is_fuzzy:
        problems.append("the header is marked fuzzy")
    for entry in live_entries(po):
        if "fuzzy" in entry.flags:
            problems.append(f"{describe(entry)} is fuzzy")
        if entry.msgid_plural:
            forms = entry.msgstr_plural
            if sorted(forms) != list(range(plural_count)):
                problems.append(
                    f"{describe(entry)} has plural forms {sorted(forms)}, the header says nplurals={plural_count}"
                )
            if not forms or any(not text for text in forms.values()):
                problems.append(f"{describe(entry)} is untranslated (an empty msgstr[n])")
        elif not entry.msgstr:
            problems.append(f"{describe(entry)} is untranslated")
    assert not problems, f"{po_path(locale).relative_to(ROOT)}:\n  " + "\n  ".join(problems)


def expected_mo_catalog(po):
    """What msgfmt puts into the .mo, keyed as gettext.GNUTranslations keys its catalog."""
    catalog = {}
    for entry in live_entries(po):
        if "fuzzy" in entry.flags:
            continue  # msgfmt leaves fuzzy entries out
        key = f"{entry.msgctxt}\x04{entry.msgid}" if entry.msgctxt else entry.msgid
        if entry.msgid_plural:
            if entry.msgstr_plural and all(entry.msgstr_plural.values()):
                for index, text in entry.msgstr_plural.items():
                    catalog[(key, int(index))] = text
        elif entry.msgstr:
            catalog[key] = entry.msgstr
    return catalog


@pytest.mark.parametrize("locale", LOCALES)
def test_compiled_mo_is_present_and_matches_its_po(locale):
    mo_path = po_path(locale).with_suffix(".mo")
    hint = "run `make messages` (or `manage.py compilemessages --ignore '.venv/*'`) and commit the .mo"
    assert mo_path.exists(), f"{mo_path.relative_to(ROOT)} is missing: {hint}."
    with mo_path.open("rb") as f:
        compiled = gettext.GNUTranslations(f)
    # The catalog is private, but it is the only way to see every entry the .mo holds,
    # including ones whose translation equals the msgid and stale ones the .po lost.
    actual = {key: text for key, text in compiled._catalog.items() if key != ""}
    expected = expected_mo_catalog(load_po(locale))

    def shown(key):
        msgid, index = key if isinstance(key, tuple) else (key, None)
        msgid = msgid.replace("\x04", "|")
        return f"{msgid!r}[{index}]" if index is not None else repr(msgid)

    stale = sorted(
        (shown(key) for key in expected.keys() | actual.keys() if expected.get(key) != actual.get(key)), key=str
    )
    assert not stale, f"{mo_path.relative_to(ROOT)} is out of date with its .po: {hint}. Differing:\n  " + (
        "\n  ".join(stale)
    )


@pytest.mark.parametrize("locale", LOCALES)
def test_translations_keep_exactly_the_placeholders_of_their_msgid(locale):
    problems = []
    for entry in live_entries(load_po(locale)):
        if entry.msgid_plural:
            # Every plural form may be used for n != 1, so each one answers to msgid_plural.
            source = placeholders(entry.msgid_plural)
            translations = [text for _index, text in sorted(entry.msgstr_plural.items())]
        else:
            source = placeholders(entry.msgid)
            translations = [entry.msgstr]
        for text in translations:
            if text and placeholders(text) != source:
                problems.append(f"{describe(entry)}: msgid has {source}, msgstr {text!r} has {placeholders(text)}")
    assert not problems, f"{po_path(locale).relative_to(ROOT)}:\n  " + "\n  ".join(problems)


def test_both_catalogs_hold_the_same_msgids():
    def msgids(locale):
        return {(e.msgctxt, e.msgid, e.msgid_plural or None) for e in live_entries(load_po(locale))}

    hans, hant = msgids("zh_Hans"), msgids("zh_Hant")
    only = {"zh_Hans": sorted(m[1] for m in hans - hant), "zh_Hant": sorted(m[1] for m in hant - hans)}
    assert hans == hant, f"The catalogs differ; run `make messages` and translate the new strings. Only in: {only}"


def tree_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.skipif(
    not shutil.which("xgettext"),
    reason="xgettext (GNU gettext) is not installed, so makemessages cannot extract the code's msgids here",
)
def test_catalogs_hold_every_msgid_the_code_marks_for_translation(tmp_path):
    """Extract the msgids from a copy of the project, so the real locale/ is never written to.

    makemessages writes to the locale folder of the tree it scans (its current
    directory), so it runs in a copy whose settings' BASE_DIR, hence
    LOCALE_PATHS, point into the copy too.
    """
    copy = tmp_path / "project"
    ignored = {"data", "staticfiles", "media", "__pycache__", "node_modules"}
    shutil.copytree(
        ROOT,
        copy,
        symlinks=True,
        ignore=lambda _dir, names: [n for n in names if n.startswith(".") or n in ignored or n.endswith(".pyc")],
    )
    before = tree_digest(LOCALE_DIR)
    env = {**os.environ, "MIMOWEB_DATA_DIR": str(tmp_path / "data"), "DJANGO_SETTINGS_MODULE": "mimoweb.settings"}
    result = subprocess.run(
        [
            sys.executable, "manage.py", "makemessages",
            "--locale", "zh_Hans", "--no-obsolete", "--keep-pot",
            "--ignore", ".venv/*", "--ignore", "tests/*",
        ],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert tree_digest(LOCALE_DIR) == before, "makemessages touched the real locale/ folder"
    assert result.returncode == 0, f"makemessages failed:\n{result.stdout}\n{result.stderr}"

    def keys(po):
        return {(e.msgctxt, e.msgid, e.msgid_plural or None) for e in live_entries(po) if e.msgid}

    in_code = keys(polib.pofile(str(copy / "locale" / "django.pot")))
    for locale in LOCALES:
        missing = sorted(in_code - keys(load_po(locale)), key=str)
        assert not missing, (
            f"{po_path(locale).relative_to(ROOT)} lacks msgids the code marks for translation; "
            "run `make messages` and translate the new strings:\n  "
            + "\n  ".join(f"{msgctxt + '|' if msgctxt else ''}{msgid!r}" for msgctxt, msgid, _plural in missing)
        )


@pytest.mark.parametrize(("language", "expected"), [("zh-hans", "退出登录"), ("zh-hant", "登出")])
def test_django_serves_the_chinese_translation(language, expected):
    with translation.override(language):
        assert translation.gettext("Sign out") == expected
    with translation.override("en"):
        assert translation.gettext("Sign out") == "Sign out"


@pytest.mark.parametrize("language", ["zh-hans", "zh-hant"])
def test_every_mimo_error_tells_the_user_in_chinese(language):
    # chat/mimo has no Django; its sentences are translated by the caller.
    from chat.mimo import ErrorKind

    with translation.override(language):
        untranslated = [kind.value for kind in ErrorKind if translation.gettext(kind.message) == kind.message]
    assert untranslated == []
