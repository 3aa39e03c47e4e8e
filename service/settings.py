"""Service settings from environment variables (prefix ``TRACEKWS_``), validated at startup.

Unsafe or nonsensical values are refused with a clear message instead of being clamped:
the service does not start with a 1 TB upload limit, a 4-character API key or a database URL
it cannot speak to.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from tracekws.model.rules import NAMES as RULES
from tracekws.model.rules import check_hyperparameters

PROFILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEY_RE = re.compile(r"^[A-Za-z0-9._~+/=-]{16,256}$")
DEFAULT_PROFILE = "default"


@dataclass(frozen=True)
class ApiKey:
    """One API key; ``profiles`` None means every profile."""

    key: str
    profiles: frozenset[str] | None = None

    def allows(self, profile: str) -> bool:
        return self.profiles is None or profile in self.profiles


def parse_api_keys(value: Any) -> list[ApiKey]:
    """``"k1;k2:alice,bob"`` (or whitespace/newline separated) or a JSON list of such strings
    or of ``{"key": ..., "profiles": [...]}`` objects."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        items: list[Any] = json.loads(text) if text.startswith("[") else \
            [p for p in re.split(r"[;\s]+", text) if p]
    else:
        items = list(value)
    keys: list[ApiKey] = []
    for item in items:
        if isinstance(item, ApiKey):
            keys.append(item)
            continue
        if isinstance(item, dict):
            key, profiles = str(item.get("key", "")), item.get("profiles")
        else:
            key, _, rest = str(item).partition(":")
            profiles = [p for p in rest.split(",") if p] if rest else None
        if not KEY_RE.match(key):
            raise ValueError("each API key must be 16-256 characters of [A-Za-z0-9._~+/=-]")
        if profiles is not None:
            bad = [p for p in profiles if not PROFILE_RE.match(p)]
            if bad or not profiles:
                raise ValueError(f"invalid profile names in an API key restriction: {bad}")
            profiles = frozenset(profiles)
        keys.append(ApiKey(key, profiles))
    if len({k.key for k in keys}) != len(keys):
        raise ValueError("duplicate API keys")
    return keys


# field -> (lowest, highest, lowest excluded, message): every numeric setting's range, checked
# by one validator
RANGES: dict[str, tuple[float, float, bool, str]] = {
    **{f: (0, float("inf"), False, "quotas must be >= 0 (0: no limit)")
       for f in ("max_profiles", "max_versions_per_profile", "max_storage_bytes")},
    "max_upload_bytes": (1024, 1024**3, False,
                         "max_upload_bytes must be between 1 KiB and 1 GiB"),
    **{f: (1.0, 3600.0, False, "audio duration limits must be between 1 s and 3600 s")
       for f in ("max_adapt_seconds", "max_predict_seconds")},
    "max_concurrent_decodes": (1, 1024, False,
                               "max_concurrent_decodes must be between 1 and 1024"),
    **{f: (0.1, 3600, False, "upload timeouts must be between 0.1 and 3600 s")
       for f in ("upload_idle_timeout_s", "upload_timeout_s")},
    "model_cache_size": (1, 1024, False, "model_cache_size must be between 1 and 1024"),
    "predict_max_batch": (1, 256, False, "predict_max_batch must be between 1 and 256"),
    **{f: (0, 256, False, "thread counts must be between 0 and 256")
       for f in ("compute_threads", "adapt_threads", "torch_threads")},
    "adapt_yield_ms": (0, 1000, False,
                       "adapt_yield_ms must be between 0 (no yielding) and 1000"),
    "adapt_slice_seconds": (0.01, 10, False, "adapt_slice_seconds must be between 0.01 and 10"),
    "stream_threshold": (0.0, 1.0, True, "stream_threshold must be in (0, 1]"),
    "stream_max_message_bytes": (1024, 64 * 1024 * 1024, False,
                                 "stream_max_message_bytes must be between 1 KiB and 64 MiB"),
    **{f: (0.1, 3600, False, "stream and header timeouts must be between 0.1 and 3600 s")
       for f in ("stream_idle_timeout_s", "http_header_timeout_s")},
    "http_max_connections": (1, 100_000, False,
                             "http_max_connections must be between 1 and 100000"),
    "db_busy_timeout_ms": (100, 600_000, False,
                           "db_busy_timeout_ms must be between 100 and 600000"),
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRACEKWS_", extra="ignore",
                                      protected_namespaces=(), hide_input_in_errors=True)

    data_dir: Path = Path("./data")
    database_url: str | None = None  # default: sqlite:///<data_dir>/tracekws.db
    model_path: Path | None = None  # default: the shipped model (model.pipeline.PRETRAINED)
    api_keys: Annotated[list[ApiKey], NoDecode] = Field(default_factory=list)
    # web origins (scheme://host[:port]) besides the service's own that may send POST/PUT/
    # PATCH/DELETE and open /stream from a browser (a reverse proxy's public URL, say)
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    predict_requires_key: bool = False  # also applies to reads (listing, weights export, stream)
    max_upload_bytes: int = 16 * 1024 * 1024
    max_adapt_seconds: float = 60.0
    max_predict_seconds: float = 10.0
    max_concurrent_decodes: int = 16  # /predict bodies decoded at once (others wait, then 503)
    upload_idle_timeout_s: float = 30.0  # a body that stalls this long is answered 408
    upload_timeout_s: float = 300.0  # a whole upload that takes longer is answered 408
    adapt_rule: str = "tp"
    adapt_hyperparameters: dict[str, Any] = Field(default_factory=dict)
    model_cache_size: int = 16
    predict_max_batch: int = 8  # concurrent /predict calls batched per model (1: off)
    compute_threads: int = 0  # prediction pool: concurrent /predict batches and /stream
    #                           steps (0: the cores not given to adaptation, at least 1)
    adapt_threads: int = 0  # adaptation pool: concurrent /adapt steps (0: cores // 4, >= 1)
    adapt_yield_ms: float = 50.0  # an adaptation waits at most this long for predictions
    adapt_slice_seconds: float = 0.25  # audio learned between two such waits
    torch_threads: int = 1  # intra-op threads per job (capped so the pools fit the cores)
    stream_threshold: float = 0.5
    stream_max_message_bytes: int = 1024 * 1024
    stream_idle_timeout_s: float = 60.0  # a /stream that receives nothing this long is closed
    http_header_timeout_s: float = 10.0  # uvicorn_config(): request line + headers deadline
    http_max_connections: int = 1000  # uvicorn_config(): limit_concurrency (then 503)
    db_busy_timeout_ms: int = 10_000
    # quotas, checked before a write (507 quota-exceeded); 0: no limit
    max_profiles: int = 100
    max_versions_per_profile: int = 100
    max_storage_bytes: int = 1024**3  # weight blobs in the database, each distinct one once

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, v: Any) -> list[ApiKey]:
        return parse_api_keys(v)

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, v: Any) -> list[str]:
        from .security import normalise_origin

        if v is None or v == "":
            return []
        if isinstance(v, str):
            text = v.strip()
            v = json.loads(text) if text.startswith("[") else \
                [p for p in re.split(r"[,;\s]+", text) if p]
        out = []
        for o in v:
            if not isinstance(o, str) or normalise_origin(o) is None \
                    or not o.lower().startswith(("http://", "https://")):
                raise ValueError(f"allowed_origins: {o!r} is not an origin like "
                                 "https://host[:port] (no path)")
            out.append(o.strip())
        return out

    def model_file(self) -> Path:
        """The model file ``default`` serves: ``model_path`` (a file, or a folder holding the
        shipped file name), else the shipped model."""
        from tracekws.model.pipeline import PRETRAINED

        path = Path(self.model_path or PRETRAINED)
        return path / PRETRAINED.name if path.is_dir() else path

    @field_validator(*RANGES)
    @classmethod
    def _in_range(cls, v: float, info: ValidationInfo) -> float:
        lo, hi, low_open, message = RANGES[info.field_name]
        if not ((lo < v) if low_open else (lo <= v)) or not v <= hi:
            raise ValueError(message)
        return v

    @field_validator("adapt_rule")
    @classmethod
    def _rule(cls, v: str) -> str:
        if v not in RULES:
            raise ValueError(f"adapt_rule must be one of {RULES}")
        return v

    @model_validator(mode="after")
    def _paths(self) -> Settings:
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise ValueError(f"data_dir {self.data_dir} exists and is not a directory")
        if self.database_url is None:
            self.database_url = f"sqlite:///{(self.data_dir / 'tracekws.db').resolve()}"
        scheme = self.database_url.split(":", 1)[0]
        if not (scheme.startswith("sqlite") or scheme.startswith("postgresql")):
            raise ValueError("database_url must be a sqlite:// or postgresql:// URL")
        if self.database_url in ("sqlite://", "sqlite:///:memory:"):
            raise ValueError("an in-memory database would lose every version; use a file")
        check_hyperparameters(self.adapt_rule, self.adapt_hyperparameters)
        return self

    @property
    def is_sqlite(self) -> bool:
        return str(self.database_url).startswith("sqlite")

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @property
    def adapt_pool_threads(self) -> int:
        return self.adapt_threads or max(1, (os.cpu_count() or 1) // 4)

    @property
    def predict_pool_threads(self) -> int:
        """Threads of the prediction pool (``compute_threads``, default: the cores left
        after adaptation's, at least 1)."""
        return self.compute_threads or max(1, (os.cpu_count() or 1) - self.adapt_pool_threads)

    @property
    def workers(self) -> int:  # older name
        return self.predict_pool_threads

    @property
    def effective_torch_threads(self) -> int:
        """``torch_threads``, capped so that every pool thread running torch at once does
        not oversubscribe the cores (at least 1)."""
        cores = os.cpu_count() or 1
        jobs = self.predict_pool_threads + self.adapt_pool_threads
        return max(1, min(self.torch_threads or 1, cores // jobs))

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def audio_dir(self) -> Path:
        return self.data_dir / "audio"
