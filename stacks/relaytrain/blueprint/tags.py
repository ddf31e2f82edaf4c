"""AWS tag rules (Tagging AWS resources, "Tag naming limits and requirements"): at most 50 tags per
resource; a key is 1-128 characters and must not start with `aws:` (reserved for AWS); a value is 0-256
characters; both only letters, numbers and spaces (any language) and `_ . : / = + - @`."""

from __future__ import annotations

import unicodedata

MAX_TAGS = 50
MAX_KEY = 128
MAX_VALUE = 256
ALLOWED_PUNCTUATION = frozenset("_.:/=+-@")
ALLOWED = "letters, digits, spaces and _ . : / = + - @"


def _bad_chars(text: str) -> list[str]:
    """Characters of `text` outside AWS's tag character set (Unicode letters \\p{L}, numbers \\p{N},
    separators \\p{Z}, and the punctuation above), in order of first appearance."""
    bad = []
    for ch in text:
        if ch in ALLOWED_PUNCTUATION or unicodedata.category(ch)[0] in "LNZ":
            continue
        if ch not in bad:
            bad.append(ch)
    return bad


def aws_tag_problems(tags: dict[str, str]) -> list[tuple[tuple, str]]:
    """Every problem of `tags` as (field path, message), the limit in each message."""
    problems: list[tuple[tuple, str]] = []
    if len(tags) > MAX_TAGS:
        problems.append((("tags",), f"AWS allows {MAX_TAGS} tags per resource, got {len(tags)}"))
    for key, value in tags.items():
        path = ("tags", key)
        if not 1 <= len(key) <= MAX_KEY or key.lower().startswith("aws:"):
            problems.append((path, f"AWS tag keys are 1-{MAX_KEY} characters not starting with 'aws:', "
                                   f"got {len(key)} characters"))
        if len(value) > MAX_VALUE:
            problems.append((path, f"AWS tag values are at most {MAX_VALUE} characters, got {len(value)}"))
        for what, text in (("key", key), ("value", value)):
            bad = _bad_chars(text)
            if bad:
                shown = " ".join(repr(c) for c in bad[:5])
                problems.append((path, f"AWS tag {what}s take only {ALLOWED}; {shown} is not allowed"))
    return problems
