"""The app in the reader's language (issue 32): the page's catalogue and the terminal's language.

The catalogues live in chat/locale (`make messages` regenerates them); the page follows the
language Django activated for the request (LocaleMiddleware in the bundled project, or the
host's LANGUAGE_CODE), the terminal client the one its environment names.
"""

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from django.conf import settings
from django.utils import translation
from django.views.decorators.cache import cache_page
from django.views.i18n import JavaScriptCatalog

LOCALE = Path(__file__).resolve().parent / "locale"


def catalogue_version() -> str:
    """A digest of the compiled catalogues the app ships: it changes when they do."""
    digest = hashlib.sha256()
    for mo in sorted(LOCALE.glob("*/LC_MESSAGES/djangojs.mo")):
        digest.update(mo.parent.parent.name.encode() + mo.read_bytes())
    return digest.hexdigest()[:12]


# The page's strings, as the script `django.gettext` & co. read (chat/static/chat/i18n.js): a
# same-origin file, as the page's CSP asks. It changes only with the catalogues, so it is cached
# an hour (in Django's cache and the browser), per language (Django's cache keys carry the
# active language), under a key of the catalogues' digest: new ones never get the old strings.
CATALOGUE_SECONDS = 3600
catalogue_view = cache_page(CATALOGUE_SECONDS, key_prefix=f"chat-jsi18n-{catalogue_version()}")(
    JavaScriptCatalog.as_view(packages=["chat"])
)

# The locale's own variables, in GNU gettext's order: the first one set names the locale.
LOCALE_NAMES = ("LC_ALL", "LC_MESSAGES", "LANG")


def language_from_environment(environ: Mapping[str, str] | None = None) -> str:
    """The language a terminal's environment asks for, among the site's LANGUAGES.

    As GNU gettext reads it: the locale (LC_ALL, else LC_MESSAGES, else LANG), preceded by
    LANGUAGE's list (`es_MX:de`) unless the locale is C or POSIX (untranslated, so English).
    `de_DE.UTF-8` is Django's `de-de`, which falls back to `de`; none the site offers gives its
    LANGUAGE_CODE, as a request without Accept-Language would.
    """
    environ = os.environ if environ is None else environ
    locale = next((environ[name] for name in LOCALE_NAMES if environ.get(name)), "C")
    if _bare(locale) in ("", "C", "POSIX"):
        return settings.LANGUAGE_CODE
    for candidate in [*environ.get("LANGUAGE", "").split(":"), locale]:
        if not _bare(candidate):
            continue
        try:
            return translation.get_supported_language_variant(translation.to_language(_bare(candidate)))
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


def _bare(locale: str) -> str:
    """`de_DE` of `de_DE.UTF-8@euro`."""
    return locale.split(".")[0].split("@")[0]
