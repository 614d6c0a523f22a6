"""The page, the admin and the terminal client in German and Spanish (issue 32), and a check
that no catalogue is stale: every string of the code is in every .po, translated, and every
.mo is its .po compiled."""

import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from chat.languages import language_from_environment
from chat.models import Conversation, Message
from tests.conftest import REQUIRE_SERVICES

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "chat"
LANGUAGES = ("de", "es")
DOMAINS = ("django", "djangojs")
# As the Makefile's `messages` target runs makemessages (inside chat/).
MAKEMESSAGES = ["--add-location=file", "--no-obsolete", "-i", "vendor", "-i", "locale"]


def need_gettext() -> None:
    missing = [tool for tool in ("msgfmt", "xgettext", "msgmerge") if shutil.which(tool) is None]
    if missing:
        problem = f"GNU gettext is not installed ({', '.join(missing)} missing): apt-get install gettext"
        if REQUIRE_SERVICES:
            pytest.fail(problem)
        pytest.skip(problem)


def po_entries(path: Path) -> dict[str, tuple[list[str], bool]]:
    """A .po file's entries: msgid (with its plural, if any, after a NUL) -> (msgstrs, fuzzy).

    A reader of the plain format gettext writes (makemessages' output), enough for the check.
    """
    entries: dict[str, tuple[list[str], bool]] = {}
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        lines = [line for line in block.splitlines() if line.strip()]
        fuzzy = any(line.startswith("#,") and "fuzzy" in line for line in lines)
        fields: dict[str, str] = {}
        key = None
        for line in lines:
            if line.startswith("#"):
                continue
            if line.startswith('"'):
                fields[key] += _unquote(line)
                continue
            key, _, rest = line.partition(" ")
            fields[key] = _unquote(rest)
        if "msgid" not in fields:
            continue
        msgid = fields["msgid"] + ("\0" + fields["msgid_plural"] if "msgid_plural" in fields else "")
        msgstrs = [value for name, value in fields.items() if name.startswith("msgstr")]
        entries[msgid] = (msgstrs, fuzzy)
    return entries


ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _unquote(text: str) -> str:
    """A quoted .po string's text (gettext's C escapes undone)."""
    return re.sub(r"\\(.)", lambda m: ESCAPES.get(m.group(1), m.group(0)), text.strip()[1:-1])


def mo_catalogue(data: bytes) -> dict[bytes, bytes]:
    """A .mo file's strings (GNU gettext's documented layout), to compare two compilations by
    content: two gettext versions may lay out the same strings differently."""
    order = "<" if data[:4] == b"\xde\x12\x04\x95" else ">"
    count, originals, translations = struct.unpack(f"{order}3I", data[8:20])
    catalogue = {}
    for i in range(count):
        length, at = struct.unpack(f"{order}2I", data[originals + 8 * i : originals + 8 * i + 8])
        tlength, tat = struct.unpack(f"{order}2I", data[translations + 8 * i : translations + 8 * i + 8])
        catalogue[data[at : at + length]] = data[tat : tat + tlength]
    return catalogue


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    """The app copied, its catalogues regenerated from its code as `make messages` does."""
    need_gettext()
    copy = tmp_path_factory.mktemp("i18n") / "chat"
    shutil.copytree(APP, copy, ignore=shutil.ignore_patterns("__pycache__"))
    environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    for domain in DOMAINS:
        languages = [arg for lang in LANGUAGES for arg in ("-l", lang)]
        command = [sys.executable, "-m", "django", "makemessages", *languages, "-d", domain, *MAKEMESSAGES]
        done = subprocess.run(command, cwd=copy, env=environ, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    return copy


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("domain", DOMAINS)
def test_every_string_of_the_code_is_in_the_catalogue_and_translated(regenerated, language, domain):
    relative = Path("locale", language, "LC_MESSAGES", f"{domain}.po")
    committed = po_entries(APP / relative)
    fresh = po_entries(regenerated / relative)
    missing = sorted(set(fresh) - set(committed))
    gone = sorted(set(committed) - set(fresh))
    untranslated = sorted(m for m, (strs, _) in fresh.items() if m and not all(strs))
    fuzzy = sorted(m for m, (_, is_fuzzy) in fresh.items() if m and is_fuzzy)
    problems = {"not in the catalogue": missing, "no longer in the code": gone}
    problems |= {"untranslated": untranslated, "fuzzy": fuzzy}
    found = {what: strings for what, strings in problems.items() if strings}
    assert not found, f"{relative} is stale (run `make messages`, then translate): {found}"
    assert len(fresh) > 50  # the check saw the strings


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("domain", DOMAINS)
def test_every_compiled_catalogue_is_its_po_compiled(tmp_path, language, domain):
    need_gettext()
    po = APP / "locale" / language / "LC_MESSAGES" / f"{domain}.po"
    compiled = tmp_path / f"{domain}.mo"
    done = subprocess.run(
        ["msgfmt", "--check-format", "-o", compiled, po], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    fresh = mo_catalogue(compiled.read_bytes())
    shipped = mo_catalogue(po.with_suffix(".mo").read_bytes())
    differ = sorted(
        k.decode() for k in set(fresh) ^ set(shipped) | {k for k in fresh if fresh[k] != shipped.get(k)}
    )
    assert not differ, f"{po.with_suffix('.mo')} is not {po.name} compiled (run `make messages`): {differ}"


# --- the page -----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "strings"),
    [
        ("de", ["Neuer Chat", "Senden", "Unterhaltungen durchsuchen", "Wobei kann ich helfen?"]),
        ("es", ["Chat nuevo", "Enviar", "Buscar conversaciones", "¿En qué puedo ayudarle?"]),
    ],
)
def test_the_page_follows_accept_language(client, language, strings):
    page = client.get("/", HTTP_ACCEPT_LANGUAGE=f"{language},en;q=0.5").content.decode()
    assert f'<html lang="{language}">' in page
    for text in strings:
        assert text in page
    assert "What can I help with?" not in page
    # The scripts' catalogue: a same-origin script file (the CSP allows no inline script),
    # before the modules.
    src = re.search(r'<script src="([^"]+)"></script>', page).group(1)
    assert src.startswith("/jsi18n/")
    assert page.index(src) < page.index('type="module"')
    assert not re.search(r"<script(?![^>]*\b(src|type=\"application/json\"))[^>]*>", page)


@pytest.mark.django_db
def test_a_language_not_offered_gets_english(client):
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="fr-FR,fr;q=0.9").content.decode()
    assert '<html lang="en">' in page
    assert "What can I help with?" in page


@pytest.mark.django_db
def test_a_host_without_locale_middleware_gets_its_language_code(client, settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "django.middleware.locale.LocaleMiddleware"]
    settings.LANGUAGE_CODE = "es"
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert '<html lang="es">' in page
    assert "Chat nuevo" in page


@pytest.mark.django_db
def test_the_shared_page_is_translated_too(client):
    page = client.get("/s/nothing-here/", HTTP_ACCEPT_LANGUAGE="de")
    assert page.status_code == 404
    assert '<html lang="de">' in page.content.decode()
    assert "Nicht geteilt" in page.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "strings"),
    [
        ("de", ["Senden", "Antwort kopieren", "Neu erzeugen", "Sekunden nachgedacht"]),
        ("es", ["Enviar", "Copiar la respuesta", "Regenerar", "segundos"]),  # ASCII: JSON escapes the rest
    ],
)
def test_the_catalogue_answers_the_scripts_strings(client, language, strings):
    response = client.get("/jsi18n/", HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert "Accept-Language" in response["Vary"]  # a shared cache keeps one per language
    script = response.content.decode()
    for text in strings:
        assert text in script
    english = client.get("/jsi18n/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Antwort kopieren" not in english and "django.gettext" in english


# --- the admin ----------------------------------------------------------------------------


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


def conversation_of_two() -> Conversation:
    conversation = Conversation.objects.create(title="Zwei", model="demo", visitor="v-two")
    question = Message.objects.create(conversation=conversation, role="user", content="Hallo?")
    Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content="Hallo!", model="demo"
    )
    return conversation


@pytest.mark.django_db
def test_the_admin_list_in_german_by_accept_language(staff):
    conversation_of_two()
    page = staff.get("/admin/chat/conversation/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
    for text in ("Unterhaltungen", "Letzte Aktivität", "fehlgeschlagene Antworten", "Eigentümer"):
        assert text in page, text
    assert "ast activity" not in page


@pytest.mark.django_db
def test_the_admin_in_spanish_by_the_language_cookie(staff):
    conversation = conversation_of_two()
    staff.cookies[settings.LANGUAGE_COOKIE_NAME] = "es"
    page = staff.get(f"/admin/chat/conversation/{conversation.pk}/change/").content.decode()
    for text in ("Transcripción (2 mensajes)", "Abrir en la página del chat", "rama actual"):
        assert text in page, text
    assert "<strong>asistente</strong>" in page and 'chat-status-complete">completa<' in page
    messages = staff.get("/admin/chat/message/").content.decode()
    assert "Primer token" in messages and "Completa" in messages


# --- the terminal client ------------------------------------------------------------------


def test_the_terminal_language_comes_from_the_environment():
    """As GNU gettext reads it: LC_ALL, LC_MESSAGES, LANG name the locale; LANGUAGE's list comes
    first unless that locale is C (which means untranslated)."""
    assert language_from_environment({"LANG": "de_DE.UTF-8"}) == "de"
    assert language_from_environment({"LANG": "es_MX.UTF-8@currency=MXN"}) == "es"
    assert language_from_environment({"LC_MESSAGES": "de_AT.UTF-8", "LANG": "es_ES.UTF-8"}) == "de"
    assert language_from_environment({"LANGUAGE": "es_MX:de", "LANG": "de_DE.UTF-8"}) == "es"
    assert language_from_environment({"LANGUAGE": "fr_FR:es_ES", "LANG": "fr_FR.UTF-8"}) == "es"
    assert language_from_environment({"LC_ALL": "C", "LANG": "de_DE.UTF-8"}) == settings.LANGUAGE_CODE
    assert language_from_environment({"LANGUAGE": "de", "LANG": "C.UTF-8"}) == settings.LANGUAGE_CODE
    assert language_from_environment({"LANGUAGE": "de"}) == settings.LANGUAGE_CODE  # no locale: C
    assert language_from_environment({"LANG": "fr_FR.UTF-8"}) == settings.LANGUAGE_CODE
    assert language_from_environment({}) == settings.LANGUAGE_CODE


def manage(args: list[str], lang: str, **extra: str) -> subprocess.CompletedProcess:
    names = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG", "DATABASE_URL", "CHAT_MODELS", "CHAT_MODEL")
    environ = {k: v for k, v in os.environ.items() if k not in names}
    environ.update(DJANGO_SETTINGS_MODULE="project.settings", LANG=lang, CHAT_DEMO_RATE="0", **extra)
    command = [sys.executable, "manage.py", *args]
    return subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)


def test_the_terminal_client_helps_and_refuses_in_german():
    helped = manage(["chat", "--help"], "de_DE.UTF-8")
    assert helped.returncode == 0, helped.stderr
    assert "Ein Modell im Terminal fragen" in helped.stdout
    assert "Diese Unterhaltung fortsetzen." in helped.stdout
    refused = manage(["chat", "--regenerate"], "de_DE.UTF-8")
    assert refused.returncode == 1
    assert "--branch und --regenerate benötigen --conversation ID." in refused.stderr
    listed = manage(["chat", "--list-models"], "es_ES.UTF-8", CHAT_MODELS="demo")
    assert listed.stdout.strip() == "demo  (predeterminado)"
    english = manage(["chat", "--list-models"], "C.UTF-8", CHAT_MODELS="demo")
    assert english.stdout.strip() == "demo  (default)"


def test_the_terminal_client_answers_in_german(tmp_path):
    database = {"DATABASE_URL": f"sqlite:///{tmp_path / 'chat.sqlite3'}", "CHAT_MODELS": "demo"}
    migrated = manage(["migrate", "--noinput", "-v0"], "C.UTF-8", **database)
    assert migrated.returncode == 0, migrated.stderr
    asked = manage(["chat", "Hallo"], "de_DE.UTF-8", **database)
    assert asked.returncode == 0, asked.stderr
    assert re.search(r"^\[complete\] Unterhaltung [0-9a-f-]{36} · demo", asked.stderr, re.M), asked.stderr
