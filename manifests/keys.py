"""Example keys: the names that tie a shard's members, its manifest row and its metadata together.

A key names one example inside a WebDataset shard; its members are stored as ``KEY.EXT``. WebDataset
splits a member name at the *first* dot, so a key must not contain one; keys are also used in file
names and URLs, so they are restricted to lowercase ASCII letters, digits and '-'.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["KEY_PATTERN", "ManifestError", "slugify", "stable_digest", "validate_key"]

#: What a key must fully match: lowercase letters, digits and '-', starting with a letter or digit.
KEY_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*")

_NOT_KEY_CHARS = re.compile(r"[^a-z0-9]+")


class ManifestError(ValueError):
    """A file of the on-disk contract (shard, manifest, checksums, dataset.json) is missing or malformed.

    The message always starts with the file (or key) at fault.
    """


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it fully matches :data:`KEY_PATTERN`; else raise :class:`ManifestError`."""
    if not isinstance(key, str) or KEY_PATTERN.fullmatch(key) is None:
        dotted = isinstance(key, str) and "." in key
        hint = " (no dots: WebDataset splits member names at the first dot)" if dotted else ""
        raise ManifestError(f"invalid key {key!r}: keys must match [a-z0-9][a-z0-9-]*{hint}")
    return key


def slugify(text: str) -> str:
    """Turn text (e.g. a source path) into a valid key part: ``"Band A/Take 1.wav"`` -> ``"band-a-take-1-wav"``.

    Lowercases, maps every run of characters outside ``[a-z0-9]`` to one '-', strips '-' at both ends.
    Never empty: text with no usable character gives ``"x"``. Different texts may give the same slug;
    add :func:`stable_digest` of the original text where keys must be unique.
    """
    slug = _NOT_KEY_CHARS.sub("-", text.lower()).strip("-")
    return slug or "x"


def stable_digest(text: str, length: int = 8) -> str:
    """The first ``length`` hex characters of blake2b(text as UTF-8).

    Unlike Python's ``hash()``, this is the same in every interpreter and on every machine, so it can
    name files and seed random generators.
    """
    if not 1 <= length <= 128:
        raise ValueError(f"length must be in [1, 128] hex characters, got {length}")
    return hashlib.blake2b(text.encode("utf-8")).hexdigest()[:length]
