"""Data access: profiles, immutable versions, the ``active`` alias. Synchronous (run it in a
worker thread from async code); every public call is one transaction.

Weights are safetensors blobs stored once per content in ``blobs`` (keyed by sha256; a
version names its blob), so version 1 of every profile, the shipped model, is one shared row.
Each load checks the bytes against the version's sha256: a corrupt blob raises
:class:`CorruptWeights` and never reaches a model.

Quotas (profiles, versions per profile, total blob bytes) are checked inside the write
transaction before anything is added: :class:`QuotaExceeded`.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, exists, func, select
from sqlalchemy.exc import IntegrityError

from .db import session
from .models import Alias, Blob, Profile, Version

ACTIVE = "active"
# the ``rule`` of a version no learning rule made, by what it changed
DETECTOR_RULE = "detector"  # only the detector settings (the same weights blob)
WORD_THRESHOLD_RULE = "word-threshold"  # a word of the user's own got another threshold
WORD_REMOVED_RULE = "word-removed"  # a word of the user's own was dropped (label: the word)


class StoreError(Exception):
    pass


class UnknownProfile(StoreError):
    pass


class UnknownVersion(StoreError):
    pass


class ProfileExists(StoreError):
    pass


class VersionConflict(StoreError):
    """The active version is no longer the parent an adaptation started from."""


class IdempotentReplay(StoreError):
    """A version with this Idempotency-Key already exists: ``info`` (nothing was added)."""

    def __init__(self, info: VersionInfo) -> None:
        super().__init__(f"{info.profile} version {info.number} has this idempotency key")
        self.info = info


class QuotaExceeded(StoreError):
    """A profile, version or storage quota would be exceeded; nothing was written."""

    def __init__(self, quota: str, limit: int, detail: str) -> None:
        super().__init__(detail)
        self.quota, self.limit = quota, limit


@dataclass(frozen=True)
class Quotas:
    """Limits checked before a write (0: none)."""

    max_profiles: int = 0
    max_versions_per_profile: int = 0
    max_storage_bytes: int = 0


class CorruptWeights(StoreError):
    def __init__(self, profile: str, number: int, expected: str, actual: str) -> None:
        super().__init__(f"the stored weights of {profile} version {number} fail their sha256 "
                         f"check (expected {expected[:12]}…, found {actual[:12]}…)")
        self.profile, self.number = profile, number


@dataclass(frozen=True)
class VersionInfo:
    profile: str
    number: int
    parent: int | None
    created_at: datetime
    rule: str
    label: str | None
    hyperparameters: dict[str, Any]
    clips: int
    labels: list[str]
    metrics: dict[str, Any]
    sha256: str
    size: int
    tags: dict[str, Any] = field(default_factory=dict)
    id: int = 0
    # this version's own detector settings (DetectorSettings JSON), None: its model's
    detector: dict[str, Any] | None = None

    def public(self, active: int | None = None) -> dict[str, Any]:
        d = asdict(self)
        d.pop("id")
        d["id"] = d["version"] = d.pop("number")
        d["created_at"] = self.created_at.isoformat()
        if active is not None:
            d["active"] = self.number == active
        return d


@dataclass(frozen=True)
class ProfileInfo:
    name: str
    created_at: datetime
    store_audio: bool
    active: int
    versions: int
    rule: str | None = None

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "created_at": self.created_at.isoformat(),
                "store_audio": self.store_audio, "active_version": self.active,
                "versions": self.versions, "rule": self.rule, "read_only": False}


def _utc(t: datetime) -> datetime:
    """SQLite returns naive datetimes; every time stored here is UTC."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _info(v: Version) -> VersionInfo:
    return VersionInfo(v.profile, v.number, v.parent, _utc(v.created_at), v.rule, v.label,
                       dict(v.hyperparameters or {}), v.clips, list(v.labels or []),
                       dict(v.metrics or {}), v.sha256, v.size, dict(v.tags or {}), v.id,
                       v.detector)


_VERSION_COLS = [c for c in Version.__table__.c if c.name != "blob"]


class Store:
    """Profiles and versions in one database. ``base`` is the shipped model's safetensors
    bytes: a new profile's version 1 (one shared blob)."""

    def __init__(self, engine: Engine, base: bytes, base_labels: list[str],
                 quotas: Quotas | None = None) -> None:
        self.engine = engine
        self.base, self.base_sha = base, sha256(base)
        self.base_labels = list(base_labels)
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.quotas = quotas or Quotas()

    # ---- blobs ---------------------------------------------------------------------------
    def _put_blob(self, s, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` unless that blob exists (one row per content; a
        concurrent writer of the same bytes is not an error). An existing blob whose bytes
        differ (corrupted on disk) is rewritten: the versions sharing it are good again."""
        if self.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        done = s.execute(insert(Blob).values(sha256=key, size=len(data), data=data)
                         .on_conflict_do_nothing(index_elements=["sha256"])).rowcount
        if done != 1:
            old = s.execute(select(Blob.data).where(Blob.sha256 == key)).scalar()
            if old is None or bytes(old) != data:
                s.execute(Blob.__table__.update().where(Blob.sha256 == key)
                          .values(size=len(data), data=data))

    def _has_blob(self, s, key: str) -> bool:
        return s.execute(select(exists().where(Blob.sha256 == key))).scalar()

    def storage_bytes(self) -> int:
        """Bytes of weights stored (each distinct blob once)."""
        with session(self.engine) as s:
            return self._storage(s)

    @staticmethod
    def _storage(s) -> int:
        return s.execute(select(func.coalesce(func.sum(Blob.size), 0))).scalar_one()

    def _check_storage(self, s, key: str, size: int) -> None:
        limit = self.quotas.max_storage_bytes
        if limit and not self._has_blob(s, key):
            used = self._storage(s)
            if used + size > limit:
                raise QuotaExceeded("storage", limit, f"storing {size} more bytes of weights "
                                    f"would exceed the storage quota ({used} of {limit} bytes "
                                    "used); delete a profile to free space")

    # ---- profiles ------------------------------------------------------------------------
    def _profile_info(self, s, p: Profile) -> ProfileInfo:
        active = s.execute(select(Version.number).join(Alias, Alias.version_id == Version.id)
                           .where(Alias.profile == p.name, Alias.name == ACTIVE)).scalar_one()
        n = s.execute(select(func.count()).select_from(Version)
                      .where(Version.profile == p.name)).scalar_one()
        return ProfileInfo(p.name, _utc(p.created_at), p.store_audio, active, n, p.rule)

    def list_profiles(self) -> list[ProfileInfo]:
        with session(self.engine) as s:
            return [self._profile_info(s, p)
                    for p in s.scalars(select(Profile).order_by(Profile.name))]

    def get_profile(self, name: str) -> ProfileInfo:
        with session(self.engine) as s:
            p = s.get(Profile, name)
            if p is None:
                raise UnknownProfile(name)
            return self._profile_info(s, p)

    def _create(self, s, name: str, store_audio: bool, rule: str | None = None) -> Profile:
        limit = self.quotas.max_profiles
        if limit and s.execute(select(func.count()).select_from(Profile)).scalar_one() >= limit:
            raise QuotaExceeded("profiles", limit, f"the service holds its maximum of {limit} "
                                "profiles (TRACEKWS_MAX_PROFILES); delete one first")
        self._check_storage(s, self.base_sha, len(self.base))
        self._put_blob(s, self.base_sha, self.base)
        p = Profile(name=name, store_audio=store_audio, rule=rule)
        s.add(p)
        v = Version(profile=name, number=1, parent=None, rule="pretrained", label=None,
                    hyperparameters={}, clips=0, labels=self.base_labels, metrics={},
                    sha256=self.base_sha, size=len(self.base), blob=self.base_sha,
                    tags={"source": "shipped model"})
        s.add(v)
        s.flush()
        s.add(Alias(profile=name, name=ACTIVE, version_id=v.id))
        s.flush()
        return p

    def create_profile(self, name: str, store_audio: bool = False, rule: str | None = None
                       ) -> ProfileInfo:
        """Create a profile whose version 1 is the shipped model."""
        try:
            with session(self.engine, write=True) as s:
                if s.get(Profile, name) is not None:
                    raise ProfileExists(name)
                return self._profile_info(s, self._create(s, name, store_audio, rule))
        except IntegrityError:  # created concurrently by another process
            raise ProfileExists(name) from None

    def delete_profile(self, name: str) -> None:
        with session(self.engine, write=True) as s:
            if s.get(Profile, name) is None:
                raise UnknownProfile(name)
            blobs = set(s.scalars(select(Version.blob).where(Version.profile == name)))
            s.execute(delete(Alias).where(Alias.profile == name))
            # children before parents (the parent foreign key), newest first
            s.execute(delete(Version).where(Version.profile == name))
            s.execute(delete(Profile).where(Profile.name == name))
            # blobs no other version uses (the shipped model's stays: every create needs it)
            blobs.discard(self.base_sha)
            blobs.discard(None)
            if blobs:
                s.execute(delete(Blob).where(Blob.sha256.in_(blobs), ~exists().where(
                    Version.blob == Blob.sha256)))

    # ---- versions ------------------------------------------------------------------------
    def versions(self, name: str) -> tuple[list[VersionInfo], int]:
        """All versions of a profile (oldest first) and the active version number."""
        with session(self.engine) as s:
            if s.get(Profile, name) is None:
                raise UnknownProfile(name)
            rows = s.execute(select(*_VERSION_COLS).where(Version.profile == name)
                             .order_by(Version.number)).all()
            active = self._active_number(s, name)
            return [self._row_info(r) for r in rows], active

    @staticmethod
    def _row_info(r) -> VersionInfo:
        m = r._mapping
        return VersionInfo(m["profile"], m["number"], m["parent"], _utc(m["created_at"]),
                           m["rule"], m["label"], dict(m["hyperparameters"] or {}), m["clips"],
                           list(m["labels"] or []), dict(m["metrics"] or {}), m["sha256"],
                           m["size"], dict(m["tags"] or {}), m["id"], m["detector"])

    def _active_number(self, s, name: str) -> int:
        return s.execute(select(Version.number).join(Alias, Alias.version_id == Version.id)
                         .where(Alias.profile == name, Alias.name == ACTIVE)).scalar_one()

    def version(self, name: str, number: int | None = None) -> VersionInfo:
        """One version (default: the active one)."""
        with session(self.engine) as s:
            q = select(*_VERSION_COLS).where(Version.profile == name)
            if number is None:
                q = q.join(Alias, Alias.version_id == Version.id).where(
                    Alias.profile == name, Alias.name == ACTIVE)
            else:
                q = q.where(Version.number == number)
            row = s.execute(q).first()
            if row is None:
                if s.get(Profile, name) is None:
                    raise UnknownProfile(name)
                raise UnknownVersion(f"{name} has no version {number}")
            return self._row_info(row)

    def by_idempotency_key(self, name: str, key: str) -> VersionInfo | None:
        with session(self.engine) as s:
            row = s.execute(select(*_VERSION_COLS).where(
                Version.profile == name, Version.idempotency_key == key)).first()
            return None if row is None else self._row_info(row)

    def weights(self, info: VersionInfo) -> bytes:
        """The version's safetensors bytes, sha256-checked."""
        with session(self.engine) as s:
            blob = s.execute(select(Blob.data).join(Version, Version.blob == Blob.sha256)
                             .where(Version.id == info.id)).scalar()
        if blob is None:
            raise UnknownVersion(f"{info.profile} has no version {info.number}")
        actual = sha256(blob)
        if actual != info.sha256:
            raise CorruptWeights(info.profile, info.number, info.sha256, actual)
        return bytes(blob)

    def commit_version(self, name: str, parent: int, weights: bytes, rule: str, label: str,
                       hyperparameters: dict, clips: int, labels: list[str],
                       metrics: dict, tags: dict | None = None,
                       create: bool = False, idempotency_key: str | None = None,
                       detector: dict | None = None) -> VersionInfo:
        """Add a version as the new active version, in one transaction, if ``parent`` is
        still the active version (else :class:`VersionConflict`: no lost update).

        ``detector``: the version's own detector settings (an adaptation passes its parent's,
        so thresholds a user set survive teaching the profile another word).

        ``create``: a profile that does not exist yet is created in the same transaction
        (version 1 = the shipped model, which must then be ``parent``), so a failed first
        /adapt leaves nothing behind.

        ``idempotency_key``: stored with the version; if the profile already has a version
        with it, :class:`IdempotentReplay` (carrying that version) and nothing is added.
        """
        try:
            return self._commit(name, parent, weights, rule, label, hyperparameters, clips,
                                labels, metrics, tags, create, idempotency_key, detector)
        except IntegrityError as exc:  # a concurrent writer in another process won
            if idempotency_key is not None:
                done = self.by_idempotency_key(name, idempotency_key)
                if done is not None:
                    raise IdempotentReplay(done) from None
            raise VersionConflict(f"{name}: another version was committed concurrently"
                                  ) from exc

    def _commit(self, name, parent, weights, rule, label, hyperparameters, clips, labels,
                metrics, tags, create, idempotency_key=None, detector=None) -> VersionInfo:
        with session(self.engine, write=True) as s:
            alias = s.execute(select(Alias).where(Alias.profile == name, Alias.name == ACTIVE)
                              .with_for_update()).scalar_one_or_none()
            if idempotency_key is not None and alias is not None:
                row = s.execute(select(*_VERSION_COLS).where(
                    Version.profile == name, Version.idempotency_key == idempotency_key)
                ).first()
                if row is not None:
                    raise IdempotentReplay(self._row_info(row))
            if alias is None:
                if not create or s.get(Profile, name) is not None:
                    raise UnknownProfile(name)
                self._create(s, name, store_audio=False)
                alias = s.execute(select(Alias).where(Alias.profile == name,
                                                      Alias.name == ACTIVE)).scalar_one()
            active = s.execute(select(Version.number).where(Version.id == alias.version_id)
                               ).scalar_one()
            if active != parent:
                raise VersionConflict(f"{name}: the active version is {active}, this "
                                      f"adaptation started from {parent}")
            number = self._next_number(s, name)
            key = sha256(weights)
            self._check_storage(s, key, len(weights))
            self._put_blob(s, key, weights)
            v = Version(profile=name, number=number, parent=parent, rule=rule, label=label,
                        hyperparameters=hyperparameters, clips=clips, labels=labels,
                        metrics=metrics, sha256=key, size=len(weights), blob=key,
                        tags=tags or {}, idempotency_key=idempotency_key, detector=detector)
            s.add(v)
            s.flush()
            alias.version_id = v.id
            s.flush()
            return _info(v)

    def _next_number(self, s, name: str) -> int:
        """The number a new version of ``name`` gets (:class:`QuotaExceeded` past the
        version quota)."""
        number = s.execute(select(func.max(Version.number))
                           .where(Version.profile == name)).scalar_one() + 1
        limit = self.quotas.max_versions_per_profile
        if limit and number > limit:
            raise QuotaExceeded("versions", limit, f"{name} holds its maximum of {limit} "
                                "versions (TRACEKWS_MAX_VERSIONS_PER_PROFILE); delete the "
                                "profile or start a new one")
        return number

    def commit_detector(self, name: str, parent: int, detector: dict[str, Any]
                        ) -> tuple[VersionInfo, bool]:
        """Give ``name`` a new active version that is its active version ``parent``'s weights
        (the same blob: nothing is copied) with ``detector`` as its own detector settings, in
        one transaction; :class:`VersionConflict` if ``parent`` (whose keywords the settings
        were checked against) is no longer active. Versions stay immutable, so the settings
        roll back with the alias.

        Setting what the active version already has adds nothing (a retried PUT is not a new
        version): returns (the version, whether it is new). ``rule`` is ``detector``: no
        learning rule made this version."""
        with session(self.engine, write=True) as s:
            alias = s.execute(select(Alias).where(Alias.profile == name, Alias.name == ACTIVE)
                              .with_for_update()).scalar_one_or_none()
            if alias is None:
                raise UnknownProfile(name)
            active = s.get(Version, alias.version_id)
            if active.number != parent:
                raise VersionConflict(f"{name}: the active version is {active.number}, the "
                                      f"settings were checked against {parent}")
            if active.detector == detector:
                return _info(active), False
            v = Version(profile=name, number=self._next_number(s, name), parent=active.number,
                        rule=DETECTOR_RULE, label=None, hyperparameters={}, clips=0,
                        labels=list(active.labels or []), metrics={}, sha256=active.sha256,
                        size=active.size, blob=active.blob, tags={}, detector=detector)
            s.add(v)
            s.flush()
            alias.version_id = v.id
            s.flush()
            return _info(v), True

    def activate(self, name: str, number: int) -> tuple[int, VersionInfo]:
        """Move ``active`` to ``number`` (its weights are checked first). Returns (previous,
        new active)."""
        target = self.version(name, number)
        self.weights(target)  # raises CorruptWeights: never activate a corrupt version
        with session(self.engine, write=True) as s:
            alias = s.execute(select(Alias).where(Alias.profile == name, Alias.name == ACTIVE)
                              .with_for_update()).scalar_one_or_none()
            if alias is None:
                raise UnknownProfile(name)
            previous = s.execute(select(Version.number).where(Version.id == alias.version_id)
                                 ).scalar_one()
            alias.version_id = target.id
            s.flush()
        return previous, target
