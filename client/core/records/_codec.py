"""Byte-level primitives of the record encoding (docs/records.md section 2). Pure.

Every value has exactly one encoding: unsigned integers are minimal LEB128
varints, strings are a varint length then UTF-8, fixed-size byte strings are
raw. :class:`Reader` refuses anything non-canonical or out of bounds with a
:class:`~client.errors.FormatError` that names the field.
"""

from __future__ import annotations

from client.errors import FormatError

MAX_UINT = (1 << 63) - 1
"""Largest integer a record may hold (fits a signed 64-bit int, as in protobuf and JSON consumers)."""


def put_uvarint(out: bytearray, value: int) -> None:
    """Append ``value`` (0 <= value <= MAX_UINT) as a minimal LEB128 varint."""
    if not 0 <= value <= MAX_UINT:
        raise FormatError(f"integer {value} is outside 0..{MAX_UINT}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def put_bytes(out: bytearray, value: bytes) -> None:
    """Append a varint length then the bytes."""
    put_uvarint(out, len(value))
    out += value


def put_str(out: bytearray, value: str) -> None:
    """Append a varint length then the UTF-8 bytes."""
    put_bytes(out, value.encode("utf-8"))


class Reader:
    """A strict cursor over one encoded record. Every read names the field it reads."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def fixed(self, n: int, field: str) -> bytes:
        """Exactly ``n`` raw bytes."""
        end = self._pos + n
        if end > len(self._data):
            raise FormatError(f"record ends inside {field} (needs {n} bytes, {self.remaining} left)")
        value = self._data[self._pos : end]
        self._pos = end
        return value

    def byte(self, field: str) -> int:
        if self._pos >= len(self._data):
            raise FormatError(f"record ends before {field}")
        value = self._data[self._pos]
        self._pos += 1
        return value

    def uvarint(self, field: str, maximum: int = MAX_UINT) -> int:
        """A minimal LEB128 varint no larger than ``maximum``."""
        value = 0
        shift = 0
        data, pos = self._data, self._pos
        while True:
            if pos >= len(data):
                raise FormatError(f"record ends inside integer {field}")
            b = data[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                if b == 0 and shift:
                    raise FormatError(f"integer {field} is not minimally encoded")
                break
            shift += 7
            if shift > 63:
                raise FormatError(f"integer {field} is longer than 9 bytes")
        self._pos = pos
        if value > maximum:
            raise FormatError(f"{field} is {value}, more than the limit {maximum}")
        return value

    def blob(self, field: str, max_len: int) -> bytes:
        """A varint length (at most ``max_len``) then that many bytes."""
        n = self.uvarint(f"length of {field}", max_len)
        return self.fixed(n, field)

    def text(self, field: str, max_len: int) -> str:
        """A length-prefixed UTF-8 string of at most ``max_len`` bytes, without NUL."""
        raw = self.blob(field, max_len)
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise FormatError(f"{field} is not valid UTF-8") from err
        if "\x00" in value:
            raise FormatError(f"{field} contains a NUL character")
        return value

    def end(self) -> None:
        """Refuse trailing bytes."""
        if self._pos != len(self._data):
            raise FormatError(f"{self.remaining} unexpected bytes after the record")
