"""FastAPI dependencies the routes declare: the app's profiles, and access to a
profile named in the path (authorization, and the read-only ``default`` for writes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .auth import authorize
from .profiles import Profiles, profiles
from .validation import ProfilePath

ProfilesDep = Annotated[Profiles, Depends(profiles)]


def readable_profile(request: Request, profile: ProfilePath) -> str:
    """The path's profile, if this caller may read it (else 401/403)."""
    authorize(request, profile, write=False)
    return profile


def writable_profile(request: Request, profile: ProfilePath) -> str:
    """The path's profile, if it can be written (not ``default``: 403 read-only-profile) and
    this caller may write it (else 401/403)."""
    Profiles.check_writable(profile)
    authorize(request, profile, write=True)
    return profile


ReadableProfile = Annotated[str, Depends(readable_profile)]
WritableProfile = Annotated[str, Depends(writable_profile)]
