"""The format-pluggable tensor layer: where the tensors of a file live.

A tensor format (safetensors here; ONNX, PyTorch, GGUF, npz in ``client/readers``)
implements :class:`TensorFormat`: given the file's name and first bytes it says
whether it claims the file, and given a bounded random-access reader it returns
one :class:`TensorRegion` per tensor. Parsing is pure (the reader is the only
I/O, supplied by the caller); hashing the regions is done by
:mod:`client.hashing.hashing`, which computes BLAKE3 of each tensor's raw
little-endian bytes so the digest does not depend on layout or metadata.

To add a format::

    from client.hashing.tensors import REGISTRY, TensorRegion
    class GGUFFormat:
        name = "gguf"
        def claims(self, filename: str, head: bytes) -> bool: return head[:4] == b"GGUF"
        def regions(self, read_at, size): ...
    REGISTRY.register(GGUFFormat())

The format ``name`` is recorded in manifests (``tensor_format``) and so is part
of what a manifest digest commits to: never rename a registered format.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from client.errors import InvalidInputError

log = logging.getLogger(__name__)

#: How many leading bytes of a file :meth:`TensorFormat.claims` is shown.
HEAD_BYTES = 64

#: ``read_at(offset, length)`` returns exactly ``length`` bytes at ``offset`` or raises.
ReadAt = Callable[[int, int], bytes]

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}\Z")


@dataclass(frozen=True)
class TensorRegion:
    """A tensor's bytes in a file: ``[start, end)`` holds its elements, densely, in ``dtype``.

    ``byteswap`` is 0 when the stored bytes are already little-endian; otherwise
    the element size in bytes to reverse (a big-endian source) before hashing,
    so the digest is always of raw little-endian bytes.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int
    byteswap: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise InvalidInputError(f"tensor {self.name!r}: bad byte range [{self.start}, {self.end})")
        if self.byteswap not in (0, 2, 4, 8, 16) or (self.byteswap and (self.end - self.start) % self.byteswap):
            raise InvalidInputError(f"tensor {self.name!r}: bad byteswap {self.byteswap}")


class TensorFormat(Protocol):
    """A tensor container format. Implementations must be stateless and thread-safe.

    ``regions`` must be strict: it validates the container against its
    specification with bounds on every count and size and raises
    :class:`client.core.manifest.errors.TensorFormatError` on any violation. Regions
    must lie within ``[0, size)``; names must be unique.
    """

    name: str

    def claims(self, filename: str, head: bytes) -> bool:
        """Whether this format handles the file (by name and/or the first HEAD_BYTES bytes)."""
        ...

    def regions(self, read_at: ReadAt, size: int) -> Sequence[TensorRegion]:
        """The tensor regions of a file of ``size`` bytes read through ``read_at``."""
        ...


class FormatRegistry:
    """Registered tensor formats, tried in registration order."""

    def __init__(self) -> None:
        self._formats: dict[str, TensorFormat] = {}

    def register(self, fmt: TensorFormat) -> None:
        """Add a format. Requires a unique lowercase name (it is recorded in manifests)."""
        if not _NAME.match(fmt.name):
            raise InvalidInputError(f"bad tensor format name {fmt.name!r}")
        if fmt.name in self._formats and self._formats[fmt.name] is not fmt:
            raise InvalidInputError(f"tensor format {fmt.name!r} is already registered")
        self._formats[fmt.name] = fmt

    def names(self) -> tuple[str, ...]:
        return tuple(self._formats)

    def get(self, name: str) -> TensorFormat:
        try:
            return self._formats[name]
        except KeyError:
            raise InvalidInputError(f"unknown tensor format {name!r}") from None

    def detect(self, filename: str, head: bytes) -> TensorFormat | None:
        """The first registered format that claims the file, if any."""
        for fmt in self._formats.values():
            if fmt.claims(filename, head):
                return fmt
        return None


#: The process-wide registry; safetensors registers itself on import of client.hashing.
REGISTRY = FormatRegistry()


def load_plugins(modules: Sequence[str] = ("client.formats",)) -> None:
    """Import optional modules that register more formats (e.g. the readers package), if present."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            log.debug("tensor plugin module %s not present", name)
