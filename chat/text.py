"""Text the databases can store: what neither SQLite nor PostgreSQL accepts is kept out.

PostgreSQL refuses U+0000 in text (`DataError`) and both refuse a lone surrogate (it has no
UTF-8 form), which JSON can carry (`"\\ud800"`). A person's input with either is refused with
a sentence; a model's output is cleaned where it enters the engine, so that what streams and
what is stored are the same text.
"""

import re

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Python's JSON decoder joins a valid surrogate pair into one code point, so any surrogate
# left in a str is unpaired.
_SURROGATE = re.compile("[\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """Why `text` cannot be stored, as a phrase, or None if it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character (U+0000)"
    return f"contains an unpaired surrogate (U+{ord(found.group()):04X})"


def clean_model_text(text: str) -> str:
    """A model's delta as it will be stored: U+0000 dropped, lone surrogates as U+FFFD."""
    if _UNSTORABLE.search(text) is None:  # the usual case: one scan, no copy
        return text
    return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))
