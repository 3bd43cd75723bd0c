"""The file format of saved replay buffers (:meth:`pymbrl.replay.ReplayBuffer.save`,
:meth:`pymbrl.replay.GameBuffer.save`): a checksummed JSON header (class, format version, config,
scalars and the array table) followed by the arrays, little-endian, each padded to 8 bytes.

:func:`write_file` writes one atomically; :func:`read_file` checks every section before using it.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from pymbrl._files import atomic_write

MAGIC = b"PYMBRLRB"
FORMAT_VERSION = 2
# magic, uint32 version, uint64 header length, then the uint32 CRC-32 of those 20 bytes and the header
_PREFIX = struct.Struct("<8sIQI")
_MAX_HEADER_BYTES = 1 << 24
# The dtypes an array of a file may have (little-endian; what write_file writes).
FILE_DTYPES = frozenset({"|b1", "|i1", "|u1", "<i2", "<u2", "<f2", "<i4", "<u4", "<f4", "<i8", "<u8", "<f8"})


def write_file(path: str | os.PathLike, class_name: str, config: dict[str, Any], scalars: dict[str, Any],
               arrays: Mapping[str, np.ndarray]) -> None:
    """Write a saved buffer in the format :meth:`pymbrl.replay.ReplayBuffer.save` describes,
    atomically (:func:`pymbrl._files.atomic_write`)."""
    path = os.fspath(path)
    # Little-endian whatever the machine, so files move between machines.
    arrays = [(k, np.ascontiguousarray(v, dtype=np.asarray(v).dtype.newbyteorder("<"))) for k, v in arrays.items()]
    entries, offset = [], 0
    for name, a in arrays:
        data = memoryview(a.reshape(-1).view(np.uint8))
        entries.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "offset": offset,
                        "nbytes": a.nbytes, "crc32": zlib.crc32(data)})
        offset += (a.nbytes + 7) // 8 * 8
    header = json.dumps({"class": class_name, "format": FORMAT_VERSION, "config": config,
                         "scalars": scalars, "arrays": entries}, allow_nan=False).encode()
    start = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header), 0)[:20]
    prefix = start + struct.pack("<I", zlib.crc32(header, zlib.crc32(start))) + header
    prefix += b"\0" * (-len(prefix) % 8)

    def write(f: Any) -> None:
        f.write(prefix)
        for (_, a), entry in zip(arrays, entries):
            f.write(memoryview(a.reshape(-1).view(np.uint8)))
            f.write(b"\0" * (-entry["nbytes"] % 8))

    atomic_write(path, write)


class _Corrupt(ValueError):
    """What is wrong with a file, before the file's name is put in front."""


def _refuse_constant(name: str) -> None:
    raise _Corrupt(f"the header holds {name}, which no pymbrl file contains")


def is_int(v: Any) -> bool:
    """Whether ``v`` is an int and not a bool (JSON integers of a header)."""
    return isinstance(v, int) and not isinstance(v, bool)


def _array_entries(header: dict[str, Any], scalars: dict[str, Any]) -> list[tuple[str, np.dtype, tuple[int, ...], int, int]]:
    """(name, dtype, shape, nbytes, crc) of each array the header lists, checked to tile the data
    section in order: each at the running offset, padded to 8 bytes."""
    entries = header["arrays"]
    if not isinstance(entries, list):
        raise _Corrupt(f"header 'arrays': expected a list, got {type(entries).__name__}")
    out, offset = [], 0
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"name", "dtype", "shape", "offset", "nbytes", "crc32"}:
            raise _Corrupt(f"header 'arrays': expected entries with name, dtype, shape, offset, nbytes and crc32, got {entry!r:.200}")
        name, dtype, shape = entry["name"], entry["dtype"], entry["shape"]
        if not isinstance(name, str) or name in scalars or any(name == o[0] for o in out):
            raise _Corrupt(f"header 'arrays': expected distinct array names, got {name!r:.100}")
        if not isinstance(dtype, str) or dtype not in FILE_DTYPES:
            raise _Corrupt(f"array {name!r}: expected a dtype in {sorted(FILE_DTYPES)}, got {dtype!r:.100}")
        if not isinstance(shape, list) or len(shape) > 32 or not all(is_int(d) and 0 <= d <= 2**40 for d in shape):
            raise _Corrupt(f"array {name!r}: expected a shape of integers >= 0, got {shape!r:.100}")
        dt = np.dtype(dtype)
        nbytes = math.prod(shape) * dt.itemsize
        if entry["nbytes"] != nbytes or not is_int(entry["nbytes"]):
            raise _Corrupt(f"array {name!r}: expected nbytes {nbytes} (dtype x shape), got {entry['nbytes']!r:.100}")
        if entry["offset"] != offset or not is_int(entry["offset"]):
            raise _Corrupt(f"array {name!r}: expected offset {offset}, got {entry['offset']!r:.100}")
        crc = entry["crc32"]
        if not is_int(crc) or not 0 <= crc < 2**32:
            raise _Corrupt(f"array {name!r}: expected a CRC-32 in [0, 2^32), got {crc!r:.100}")
        out.append((name, dt, tuple(shape), nbytes, crc))
        offset += (nbytes + 7) // 8 * 8
    return out


def read_file(path: str | os.PathLike, class_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, state) of a file written by :func:`write_file` for ``class_name``; the state holds
    the scalars and arrays.

    Every section is checked before it is used: the header against its CRC-32 and its structure
    (types of every entry, arrays that tile the rest of the file exactly), each array against its
    CRC-32; no array is allocated before the file is known to hold it. A file of another class or
    format version (version 1 files carry no checksums and are refused), or a corrupt or truncated
    file, raises ``ValueError`` naming the file and what is wrong. The caller validates the config
    and scalars' values.
    """
    path = os.fspath(path)
    try:
        return _read_sections(path, class_name)
    except _Corrupt as e:
        raise ValueError(f"path: {path!r}: {e}") from None


def _read_sections(path: str, class_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(_PREFIX.size)
        if len(head) < 12 or head[:8] != MAGIC:
            raise _Corrupt("not a pymbrl replay buffer file (no PYMBRLRB magic)")
        (version,) = struct.unpack("<I", head[8:12])
        if version == 1:
            raise _Corrupt("format version 1 has no checksums and is no longer read (this pymbrl reads version 2); "
                           "re-create the buffer")
        if version != FORMAT_VERSION:
            raise _Corrupt(f"format version {version} is not supported (this pymbrl reads {FORMAT_VERSION})")
        if len(head) < _PREFIX.size:
            raise _Corrupt(f"truncated: {size} bytes, shorter than the {_PREFIX.size}-byte prefix")
        _, _, header_len, header_crc = _PREFIX.unpack(head)
        if header_len > min(size - _PREFIX.size, _MAX_HEADER_BYTES):
            raise _Corrupt(f"header length {header_len} exceeds the file ({size} bytes) or the limit of {_MAX_HEADER_BYTES}")
        raw = f.read(header_len)
        if zlib.crc32(raw, zlib.crc32(head[:20])) != header_crc:
            raise _Corrupt("the header fails its checksum")
        try:
            header = json.loads(raw, parse_constant=_refuse_constant)
        except _Corrupt:
            raise
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise _Corrupt(f"the header is not valid JSON ({type(e).__name__})") from None
        if not isinstance(header, dict) or set(header) != {"class", "format", "config", "scalars", "arrays"}:
            raise _Corrupt("header: expected an object with class, format, config, scalars and arrays")
        if header["class"] != class_name:
            raise _Corrupt(f"holds a {header['class']!s:.100}, not a {class_name}")
        if header["format"] != FORMAT_VERSION or not is_int(header["format"]):
            raise _Corrupt(f"header 'format': expected {FORMAT_VERSION}, got {header['format']!r:.100}")
        config, scalars = header["config"], header["scalars"]
        if not isinstance(config, dict):
            raise _Corrupt(f"header 'config': expected an object, got {type(config).__name__}")
        if not isinstance(scalars, dict) or not all(isinstance(v, (int, float, str)) for v in scalars.values()):
            raise _Corrupt("header 'scalars': expected an object of numbers and strings")
        entries = _array_entries(header, scalars)
        base = _PREFIX.size + header_len + (-(_PREFIX.size + header_len) % 8)
        end = base + sum((e[3] + 7) // 8 * 8 for e in entries)
        if end != size:
            raise _Corrupt(f"expected {end} bytes (header and arrays), got {size}: truncated or extended")
        pad = f.read(base - _PREFIX.size - header_len)
        if pad.strip(b"\0"):
            raise _Corrupt("the padding after the header is not zero")
        state: dict[str, Any] = dict(scalars)
        for name, dt, shape, nbytes, crc in entries:
            a = np.empty(shape, dtype=dt)
            if f.readinto(memoryview(a.reshape(-1).view(np.uint8))) != nbytes:
                raise _Corrupt(f"array {name!r} is truncated")
            if zlib.crc32(memoryview(a.reshape(-1).view(np.uint8))) != crc:
                raise _Corrupt(f"array {name!r} fails its checksum")
            if f.read(-nbytes % 8).strip(b"\0"):
                raise _Corrupt(f"the padding after array {name!r} is not zero")
            state[name] = a.astype(dt.newbyteorder("="), copy=False)
    return config, state
