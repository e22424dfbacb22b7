"""Image paths as a manifest stores them: relative to the dataset root, with no name that may be a patient's.

In layouts whose folder or file names may hold patients' names (GE, MF_MODEL) each such part of a path is
stored as a token, ``@`` + its pseudonym: the layout's prefix and the first 10 hex digits of the sha256
of the name, upper case, the same pseudonym the layout gives the patient (``@GE1A2B3C4D5E/L_CC_LE.dcm``
for the folder ``Jane_Doe_1970``). Parts the layout itself names (``L_CC_LE.dcm``, ``masks``) and ids that
are pseudonyms already stay as they are. ``PathResolver`` turns a stored path back into the file: for a
token it lists the folder it stands in and finds the entry whose name hashes to it, so the manifest needs
no mapping to find its files; the private mapping ``private/paths.csv`` is for the user alone. A path
without tokens (the public releases, the synthetic cohort, every manifest written before) is used as it is.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

TOKEN = re.compile(r"^@(?P<prefix>[A-Z]{1,8})(?P<digest>[0-9A-F]{10})$")


def pseudonym(name: str, prefix: str) -> str:
    """`prefix` + the first 10 hex digits (upper case) of the sha256 of `name`."""
    return prefix + hashlib.sha256(name.encode("utf-8")).hexdigest()[:10].upper()


def tokenise(rel: str, prefix: str, keep: Callable[[str], bool]) -> str:
    """`rel` (forward slashes) with each part `keep` refuses replaced by its token (``@`` + pseudonym)."""
    if not rel:
        return rel
    return "/".join(part if keep(part) and not TOKEN.match(part) else "@" + pseudonym(part, prefix)
                    for part in rel.split("/"))


def shared_resolver(root: str | os.PathLike) -> PathResolver:
    """The process's resolver of a dataset root (manifests of one root, and their subsets, share it)."""
    return _resolver_of(Path(root))


@functools.lru_cache(maxsize=16)
def _resolver_of(root: Path) -> PathResolver:
    return PathResolver(root)


class PathResolver:
    """Stored paths of one dataset root back to files; folder listings are read once and remembered."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._listings: dict[Path, dict[str, str]] = {}
        self._resolved: dict[str, Path] = {}

    def resolve(self, stored: str) -> Path:
        """The file a stored path names (a path that does not exist when a token matches no entry)."""
        if stored in self._resolved:
            return self._resolved[stored]
        path, found = self._resolve(stored)
        if found:  # a miss is not remembered: the file may appear later
            self._resolved[stored] = path
        return path

    def _resolve(self, stored: str) -> tuple[Path, bool]:
        if "@" not in stored:
            return self.root / stored, True
        path, found = self.root, True
        for part in stored.split("/"):
            match = TOKEN.match(part)
            if match is not None:
                entries = self._entries(path)
                if match["digest"] in entries:
                    part = entries[match["digest"]]
                else:
                    self._listings.pop(path, None)
                    found = False
            path = path / part
        return path, found

    def _entries(self, folder: Path) -> dict[str, str]:
        """First 10 hex digits of each entry name's sha256 -> the name (memoised per folder)."""
        if folder not in self._listings:
            try:
                names = os.listdir(folder)
            except OSError:
                names = []
            self._listings[folder] = {pseudonym(name, "")[:10]: name for name in names}
        return self._listings[folder]


def store_paths(frames: list[tuple[pd.DataFrame, tuple[str, ...]]], stored: Callable[[str], str]
                ) -> dict[str, str]:
    """Replace the on-disk paths in the named columns of each frame by their stored form (in place);
    returns stored path -> on-disk path for every path that changed."""
    mapping: dict[str, str] = {}

    def store(path: str) -> str:
        text = stored(path) if path else path
        if text != path:
            mapping[text] = path
        return text

    for frame, columns in frames:
        for column in columns:
            frame[column] = frame[column].map(store)
    return mapping
