"""The Russian translation is complete: every msgid of locale/ru has a non-empty msgstr
(every plural form), nothing is fuzzy, and the compiled .mo says the same as the .po."""

import ast
import gettext
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PO = ROOT / "locale" / "ru" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")
KEYWORD = re.compile(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?) (".*")$')


def entries() -> list[dict]:
    """The .po's entries: their flags and their strings by keyword."""
    found = []
    for block in PO.read_text(encoding="utf-8").split("\n\n"):
        entry: dict = {"flags": "", "strings": {}}
        current = None
        for line in block.splitlines():
            if line.startswith("#,"):
                entry["flags"] += line
                continue
            if line.startswith("#"):
                continue
            match = KEYWORD.match(line)
            if match:
                current = match.group(1)
                entry["strings"][current] = ast.literal_eval(match.group(2))
            elif line.startswith('"') and current is not None:
                entry["strings"][current] += ast.literal_eval(line)
        if entry["strings"]:
            found.append(entry)
    return found


def test_every_message_has_a_russian_translation_and_none_is_fuzzy():
    all_entries = entries()
    assert len(all_entries) > 200
    header = all_entries[0]
    assert header["strings"]["msgid"] == ""
    assert "fuzzy" not in header["flags"]
    untranslated, fuzzy = [], []
    for entry in all_entries[1:]:
        msgid = entry["strings"]["msgid"]
        if "fuzzy" in entry["flags"]:
            fuzzy.append(msgid)
        translations = [v for k, v in entry["strings"].items() if k.startswith("msgstr")]
        if not translations or not all(text.strip() for text in translations):
            untranslated.append(msgid)
    assert untranslated == []
    assert fuzzy == []


def test_placeholders_survive_translation():
    for entry in entries()[1:]:
        strings = entry["strings"]
        wanted = set(re.findall(r"%\(\w+\)s", strings["msgid"] + strings.get("msgid_plural", "")))
        for key, text in strings.items():
            if key.startswith("msgstr"):
                assert set(re.findall(r"%\(\w+\)s", text)) <= wanted, strings["msgid"]
                if "msgid_plural" not in strings:
                    assert set(re.findall(r"%\(\w+\)s", text)) == wanted, strings["msgid"]


def test_the_compiled_catalogue_matches_the_po():
    with MO.open("rb") as stream:
        catalogue = gettext.GNUTranslations(stream)
    for entry in entries()[1:]:
        strings = entry["strings"]
        if "msgid_plural" in strings:
            assert (
                catalogue.ngettext(strings["msgid"], strings["msgid_plural"], 1)
                == (strings["msgstr[0]"])
            )
        else:
            assert catalogue.gettext(strings["msgid"]) == strings["msgstr"], strings["msgid"]
