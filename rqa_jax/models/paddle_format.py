"""Paddle's per-variable tensor files, read with numpy alone (no PaddlePaddle).

``fluid.io.save_params`` / ``save_persistables`` / ``save_vars`` without ``filename`` write
each variable to ``<dir>/<variable name>`` as one LoDTensor record (little-endian):

====== ======== ======================================================================
offset size     field
====== ======== ======================================================================
0      4        uint32 LoDTensor format version (0)
4      8        uint64 number of LoD levels ``n``; then per level a uint64 byte count
                and that many bytes of offsets (parameters have none)
+0     4        uint32 tensor format version (0)
+4     4        int32 ``desc_len``: byte length of the ``TensorDesc`` protobuf message
+8     desc_len ``message TensorDesc { required Type data_type = 1; repeated int64 dims = 2; }``
...    numel·k  the data, C order
====== ======== ======================================================================

and nothing after the data. The message is decoded by :func:`parse_tensor_desc`, a small
protobuf wire-format reader (varints, both packed and unpacked ``dims``).
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np

from rqa_jax.errors import UserInputError

# VarType.Type -> numpy dtype (little-endian). BF16 has no numpy type: read as uint16 bits.
DTYPES: dict[int, str] = {
    0: "|b1",  # BOOL
    1: "<i2",  # INT16
    2: "<i4",  # INT32
    3: "<i8",  # INT64
    4: "<f2",  # FP16
    5: "<f4",  # FP32
    6: "<f8",  # FP64
    20: "|u1",  # UINT8
    21: "|i1",  # INT8
    22: "<u2",  # BF16 (converted to float32 on read)
}
BF16 = 22
_WIRE_VARINT, _WIRE_FIXED64, _WIRE_LEN, _WIRE_FIXED32 = 0, 1, 2, 5


class PaddleFormatError(UserInputError):
    """A file is not a Paddle LoDTensor record this reader understands (names the file)."""


@dataclasses.dataclass(frozen=True)
class TensorDesc:
    data_type: int
    dims: tuple[int, ...]


def _varint(buf: bytes, i: int, source: str) -> tuple[int, int]:
    """(value, next index) of the base-128 varint at ``buf[i]``."""
    value = shift = 0
    while True:
        if i >= len(buf):
            raise PaddleFormatError(f"{source}: TensorDesc ends inside a varint")
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i
        if shift > 63:
            raise PaddleFormatError(f"{source}: TensorDesc has a varint longer than 10 bytes")


def _int64(value: int) -> int:
    """A varint-decoded uint64 read as the two's-complement int64 protobuf stores."""
    return value - (1 << 64) if value >= 1 << 63 else value


def parse_tensor_desc(buf: bytes, source: str = "TensorDesc") -> TensorDesc:
    """Decodes the protobuf wire format of Paddle's ``VarType.TensorDesc``; unknown fields
    are skipped, as protobuf readers do."""
    i, data_type, dims = 0, None, []
    while i < len(buf):
        key, i = _varint(buf, i, source)
        field, wire = key >> 3, key & 7
        if wire == _WIRE_VARINT:
            value, i = _varint(buf, i, source)
            if field == 1:
                data_type = value
            elif field == 2:
                dims.append(_int64(value))
        elif wire == _WIRE_LEN:
            length, i = _varint(buf, i, source)
            if i + length > len(buf):
                raise PaddleFormatError(f"{source}: TensorDesc field {field} runs past its end")
            if field == 2:  # packed repeated int64
                j, end = i, i + length
                while j < end:
                    value, j = _varint(buf[:end], j, source)
                    dims.append(_int64(value))
            i += length
        elif wire in (_WIRE_FIXED64, _WIRE_FIXED32):
            i += 8 if wire == _WIRE_FIXED64 else 4
        else:
            raise PaddleFormatError(f"{source}: TensorDesc has unsupported wire type {wire}")
    if i != len(buf):
        raise PaddleFormatError(f"{source}: TensorDesc runs past its declared length")
    if data_type is None:
        raise PaddleFormatError(f"{source}: TensorDesc has no data_type")
    return TensorDesc(data_type, tuple(dims))


def read_tensor(path: str | Path) -> np.ndarray:
    """One variable file → numpy array (float types as float32, BF16 widened to float32)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: parameter file does not exist")
    buf = path.read_bytes()
    src = str(path)

    def unpack(fmt: str, off: int, what: str) -> int:
        size = struct.calcsize(fmt)
        if off + size > len(buf):
            raise PaddleFormatError(
                f"{src}: {len(buf)} bytes, too short for a Paddle tensor file ({what})"
            )
        return struct.unpack_from(fmt, buf, off)[0]

    version = unpack("<I", 0, "LoDTensor version")
    if version != 0:
        raise PaddleFormatError(
            f"{src}: not a Paddle LoDTensor file (format version {version}, expected 0); "
            "a combined __params__ file or a .pdparams pickle is a different layout"
        )
    n_lod = unpack("<Q", 4, "LoD level count")
    off = 12
    if n_lod > 64:
        raise PaddleFormatError(f"{src}: implausible LoD level count {n_lod}")
    for _ in range(n_lod):
        off += 8 + unpack("<Q", off, "LoD level size")
    tensor_version = unpack("<I", off, "tensor version")
    if tensor_version != 0:
        raise PaddleFormatError(f"{src}: unknown tensor format version {tensor_version}")
    desc_len = unpack("<i", off + 4, "TensorDesc length")
    off += 8
    if desc_len < 0 or off + desc_len > len(buf):
        raise PaddleFormatError(f"{src}: TensorDesc length {desc_len} does not fit the file")
    desc = parse_tensor_desc(buf[off : off + desc_len], src)
    off += desc_len
    if desc.data_type not in DTYPES:
        raise PaddleFormatError(f"{src}: unsupported Paddle data type {desc.data_type}")
    if any(d < 0 for d in desc.dims):
        raise PaddleFormatError(f"{src}: dims {list(desc.dims)} have an unknown (-1) size")
    dtype = np.dtype(DTYPES[desc.data_type])
    numel = int(np.prod(desc.dims, dtype=np.int64))
    expected = off + numel * dtype.itemsize
    if len(buf) != expected:
        raise PaddleFormatError(
            f"{src}: {len(buf)} bytes, but a {list(desc.dims)} tensor of "
            f"{DTYPES[desc.data_type]} needs {expected} (truncated, or a combined file)"
        )
    data = np.frombuffer(buf, dtype, numel, off).reshape(desc.dims)
    if desc.data_type == BF16:
        return (data.astype(np.uint32) << 16).view(np.float32)
    if data.dtype.kind == "f":
        return data.astype(np.float32)
    return data.copy()


def write_tensor(path: str | Path, array: np.ndarray) -> None:
    """Writes ``array`` as Paddle's ``save`` operator does (for tests and round trips)."""
    codes = {np.dtype(v).newbyteorder("<"): k for k, v in DTYPES.items() if k != BF16}
    arr = np.ascontiguousarray(array)
    dtype = arr.dtype.newbyteorder("<")
    if dtype not in codes:
        raise ValueError(f"no Paddle data type for numpy dtype {arr.dtype}")

    def varint(v: int) -> bytes:
        v &= (1 << 64) - 1
        out = bytearray()
        while True:
            out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
            v >>= 7
            if not v:
                return bytes(out)

    desc = b"\x08" + varint(codes[dtype]) + b"".join(b"\x10" + varint(d) for d in arr.shape)
    header = struct.pack("<IQIi", 0, 0, 0, len(desc))
    Path(path).write_bytes(header + desc + arr.astype(dtype).tobytes())
