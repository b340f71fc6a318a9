"""The canonical walk of a file tree (docs/manifest.md, "Walk").

Yields regular files (and symlinks, when allowed) as POSIX relative paths in
code-point order of the full path, streaming: memory is bounded by the depth
times the widest directory, never by the number of files. Policy:

* names must be valid UTF-8 (refused otherwise: a manifest path must be text);
* any entry whose name starts with ``.git`` (``.git/``, ``.gitattributes``,
  ``.github/``, ``.gitmodules``...) is skipped, at every depth;
* symlinks are refused unless ``allow_symlinks``; then they are recorded as
  links (their target text) and never followed;
* sockets, FIFOs and devices are refused; empty directories are not recorded;
* a walk that yields nothing is refused (empty input).

Order: within a directory, entries are sorted by name, with ``/`` appended to
directory names, so a depth-first walk emits full paths in code-point order
(``a-b`` < ``a/x`` because ``-`` < ``/``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from client.core.manifest.errors import WalkError
from client.core.manifest.model import check_relpath

GIT_PREFIX = ".git"


@dataclass(frozen=True)
class WalkPolicy:
    allow_symlinks: bool = False


class WalkItem(NamedTuple):
    """One entry of the walk. ``abspath`` is where to read it; ``path`` is what the manifest records."""

    path: str
    abspath: str
    is_symlink: bool = False
    target: str = ""


def _check_name(name: str, parent: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(name)
        raise WalkError(f"file name is not valid UTF-8 under {parent or '.'!r}: {raw!r}") from None


def _link(abspath: str, rel: str) -> WalkItem:
    target = os.readlink(abspath)
    try:
        target.encode("utf-8")
    except UnicodeEncodeError:
        raise WalkError(f"symlink target of {rel!r} is not valid UTF-8") from None
    return WalkItem(path=rel, abspath=abspath, is_symlink=True, target=target)


def _listing(abs_dir: str, rel_dir: str, on_skip: Callable[[str], None] | None) -> list[tuple[str, str, str, int]]:
    """(sort key, relpath, abspath, st_mode) of a directory's entries, skipped names removed."""
    out: list[tuple[str, str, str, int]] = []
    try:
        with os.scandir(abs_dir) as it:
            for de in it:
                rel = f"{rel_dir}/{de.name}" if rel_dir else de.name
                _check_name(de.name, rel_dir)
                if de.name.startswith(GIT_PREFIX):
                    if on_skip is not None:
                        on_skip(rel)
                    continue
                # d_type from the directory listing: no stat per entry (hashing fstats what it opens).
                if de.is_symlink():
                    mode = stat.S_IFLNK
                elif de.is_dir(follow_symlinks=False):
                    mode = stat.S_IFDIR
                elif de.is_file(follow_symlinks=False):
                    mode = stat.S_IFREG
                else:
                    mode = de.stat(follow_symlinks=False).st_mode
                key = de.name + "/" if mode == stat.S_IFDIR else de.name
                out.append((key, rel, de.path, mode))
    except OSError as e:
        raise WalkError(f"cannot list {abs_dir!r}: {e.strerror}") from e
    out.sort()
    return out


def walk(
    root: str, policy: WalkPolicy = WalkPolicy(), on_skip: Callable[[str], None] | None = None
) -> Iterator[WalkItem]:
    """Walk ``root`` (a directory, or a single file recorded under its base name).

    ``on_skip`` is called with the relative path of every skipped ``.git*`` entry.
    Raises WalkError for a refused entry or an empty result.
    """
    try:
        st = os.lstat(root)
    except OSError as e:
        raise WalkError(f"cannot read {root!r}: {e.strerror}") from e
    if stat.S_ISLNK(st.st_mode):
        raise WalkError(f"{root!r} is a symlink; pass the path it points to")
    if stat.S_ISREG(st.st_mode):
        name = os.path.basename(os.path.normpath(root))
        _check_name(name, "")
        check_relpath(name)
        yield WalkItem(path=name, abspath=root)
        return
    if not stat.S_ISDIR(st.st_mode):
        raise WalkError(f"{root!r} is neither a regular file nor a directory")
    count = 0
    stack: list[Iterator[tuple[str, str, str, int]]] = [iter(_listing(root, "", on_skip))]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        _key, rel, abspath, mode = item
        if stat.S_ISDIR(mode):
            stack.append(iter(_listing(abspath, rel, on_skip)))
        elif stat.S_ISREG(mode):
            count += 1
            yield WalkItem(path=rel, abspath=abspath)
        elif stat.S_ISLNK(mode):
            if not policy.allow_symlinks:
                raise WalkError(f"{rel!r} is a symlink; symlinks are refused unless allowed (--allow-symlinks)")
            count += 1
            yield _link(abspath, rel)
        else:
            raise WalkError(f"{rel!r} is not a regular file, directory or symlink")
    if count == 0:
        raise WalkError(f"{root!r} holds no files to hash (empty input)")
