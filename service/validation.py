"""Names the API accepts: profiles (path-safe) and labels (what a user calls a keyword)."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from fastapi import Depends, Path, Query

from .problems import Problem
from .settings import PROFILE_RE

PROFILE_PATTERN = PROFILE_RE.pattern
MAX_LABEL = 64

ProfileQuery = Annotated[str, Query(pattern=PROFILE_PATTERN, description="profile name")]
ProfilePath = Annotated[str, Path(pattern=PROFILE_PATTERN, description="profile name")]
VersionPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="version number")]
# what the schema says of a label (/adapt's ``label``, a word in a path); the checks that
# decide are validate_label's, whose answer is the documented 422 ``invalid-label``
LABEL_SCHEMA = {"minLength": 1, "maxLength": MAX_LABEL, "pattern": r"^\S(.*\S)?$"}


def validate_label(label: str) -> str:
    """1-64 characters, no control/format characters, no surrounding whitespace; returned
    in Unicode NFC, so a composed and a decomposed spelling are one label."""
    label = unicodedata.normalize("NFC", label)
    if not label:
        raise Problem("invalid-label", "the label is empty")
    if len(label) > MAX_LABEL:
        raise Problem("invalid-label", f"the label is longer than {MAX_LABEL} characters")
    bad = [c for c in label if unicodedata.category(c)[0] == "C"]
    if bad:
        raise Problem("invalid-label", "the label contains control characters "
                      f"({', '.join(f'U+{ord(c):04X}' for c in bad[:5])})")
    if label != label.strip():
        raise Problem("invalid-label", "the label has leading or trailing whitespace")
    return label


def word_path(word: str = Path(max_length=1024, description="a word of the user's own: "
                               "1-64 characters, no control characters or surrounding "
                               "whitespace; compared in Unicode NFC",
                               json_schema_extra=LABEL_SCHEMA)) -> str:
    """A word named in a path, checked and normalised like an /adapt label, so the word a
    user enrolled as ``café`` is found whichever way the client spelled it."""
    return validate_label(word)


WordPath = Annotated[str, Depends(word_path)]
