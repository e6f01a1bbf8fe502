"""The release format on disk: weight shards, curve files, the metadata table, release info and manifest.

See docs/format.md for the layout. Every file is written atomically (temp name, then rename); readers
memory-map the safetensors shards and read only the rows they need.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import torch
from safetensors.torch import save_file

from .errors import CorruptFileError
from .layout import INFO_PATH
from .manifest import atomic_path, cache_entry_path, open_regular
from .model import PARAM_NAMES
from .task import CURVES

FORMAT_VERSION = "rnn-stm-zoo/1"
HEADER_KEY = "rnn-stm-zoo"


# ---------------------------------------------------------------- weights
def write_weights(path: str | os.PathLike, weights: dict[str, torch.Tensor], net_ids: Sequence[str]) -> None:
    """Write stacked weights (name -> (K, ...)) of ``net_ids`` as one float32 safetensors file."""
    tensors = {n: weights[n].detach().to(torch.float32).contiguous().cpu() for n in PARAM_NAMES}
    # one header key: safetensors writes several keys in a random order, and the bytes must be reproducible
    meta = {HEADER_KEY: json.dumps({"format": FORMAT_VERSION, "net_ids": list(net_ids)})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


#: bytes per element of the safetensors dtypes (a header naming another dtype is rejected)
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
                "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit
_MAX_JSON = 64 * 1024 * 1024


def _bad(path, field: str, problem: str):
    return CorruptFileError(path, field, problem)


def read_header(path: str | os.PathLike, f=None) -> tuple[dict, int]:
    """The validated header of a safetensors shard and the offset where its data begins.

    Checked before any tensor is touched: the header length fits in the file; the header is a JSON object;
    every tensor has a known dtype, a shape of non-negative integers and ``data_offsets`` inside the data;
    the tensors tile the data contiguously from 0 to the end of the file; ``prod(shape) * itemsize`` equals
    each tensor's length; the six weight tensors are present, float32, with one leading size K; the
    ``rnn-stm-zoo`` metadata (if present) lists K net ids. Any violation raises :class:`CorruptFileError`
    naming the file and the field, so nothing outside the file is ever read.
    """
    own = f is None
    if own:
        f = open_regular(path)  # closed below
    try:
        size = os.fstat(f.fileno()).st_size
        f.seek(0)
        if size < 8:
            raise _bad(path, "header length", f"the file has {size} bytes, fewer than the 8-byte header length")
        n = int.from_bytes(f.read(8), "little")
        if n < 2 or n > _MAX_HEADER or 8 + n > size:
            raise _bad(path, "header length", f"{n} bytes, but the file has {size} bytes")
        raw = f.read(n)
    finally:
        if own:
            f.close()
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise _bad(path, "header", f"not JSON ({e})") from None
    if not isinstance(header, dict):
        raise _bad(path, "header", "not a JSON object (not a safetensors file)")
    data_len = size - 8 - n
    spans = []
    for name, h in header.items():
        if name == "__metadata__":
            if not isinstance(h, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in h.items()):
                raise _bad(path, "__metadata__", "not a map of strings")
            continue
        if not isinstance(h, dict):
            raise _bad(path, f"tensor {name!r}", "its entry is not an object")
        dtype, shape, offs = h.get("dtype"), h.get("shape"), h.get("data_offsets")
        if dtype not in _DTYPE_BYTES:
            raise _bad(path, f"dtype of {name!r}", f"{dtype!r} is not a safetensors dtype")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)):
            raise _bad(path, f"shape of {name!r}", f"{shape!r} is not a list of non-negative integers")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
                or not 0 <= offs[0] <= offs[1] <= data_len):
            raise _bad(path, f"data_offsets of {name!r}", f"{offs!r} is not inside the {data_len} data bytes")
        want = int(np.prod(shape, dtype=np.int64)) * _DTYPE_BYTES[dtype]
        if offs[1] - offs[0] != want:
            raise _bad(path, f"data_offsets of {name!r}", f"{offs[1] - offs[0]} bytes, but shape {shape} x "
                       f"{_DTYPE_BYTES[dtype]} bytes = {want}")
        spans.append((offs[0], offs[1], name))
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise _bad(path, f"data_offsets of {name!r}", f"starts at {begin}, expected {pos} (tensors must tile the "
                       "data without gaps or overlaps)")
        pos = end
    if pos != data_len:
        raise _bad(path, "data length", f"the tensors cover {pos} bytes, the file holds {data_len}")
    k = None
    for name in PARAM_NAMES:
        h = header.get(name)
        if h is None:
            raise _bad(path, f"tensor {name!r}", "missing")
        if h["dtype"] != "F32":
            raise _bad(path, f"dtype of {name!r}", f"{h['dtype']}, the release format stores F32")
        if not h["shape"] or (k is not None and h["shape"][0] != k):
            raise _bad(path, f"shape of {name!r}", f"{h['shape']}: every tensor must have the same first size "
                       f"(the networks of the shard; {k} here)")
        k = h["shape"][0]
    ids = _header_ids(path, header)
    if ids is not None and len(ids) != k:
        raise _bad(path, "net_ids", f"{len(ids)} ids for {k} networks")
    return header, 8 + n


def read_parts(path: str | os.PathLike) -> tuple[dict, bytes]:
    """(validated header, raw tensor bytes) of a safetensors shard (:func:`read_header`), to compare files: their
    headers parsed, since the safetensors writer stores its metadata map in random key order."""
    with open_regular(path) as f:
        header, offset = read_header(path, f)
        f.seek(offset)
        return header, f.read()


def _header_ids(path, header: dict) -> list[str] | None:
    meta = header.get("__metadata__") or {}
    key = HEADER_KEY if HEADER_KEY in meta else "net_ids" if "net_ids" in meta else None  # or separate keys
    if key is None:
        return None
    try:
        raw = json.loads(meta[key])
        raw = raw.get("net_ids") if key == HEADER_KEY else raw
    except (ValueError, AttributeError):
        return None
    if not isinstance(raw, list) or not all(isinstance(i, str) for i in raw):
        raise _bad(path, "net_ids", "not a list of strings")
    return raw


def read_weights(path: str | os.PathLike, indices: Sequence[int] | None = None,
                 net_ids: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Stacked weights of the rows ``indices`` (all if None, in the given order) of a shard.

    The header is validated first (:func:`read_header`); an index outside the shard raises
    :class:`CorruptFileError`, and with ``net_ids`` (the ids the caller expects at ``indices``) a row that holds
    another network does too. The file is memory-mapped and each tensor gathered with one NumPy fancy index,
    so only the pages of those rows are read (1,000 networks from 186 shards: ~0.1 s; per-row ``safe_open``
    slices took ~10x longer). The safetensors layout is read directly: an 8-byte little-endian header length,
    the JSON header, the data.
    """
    path = str(path)
    with open_regular(path) as f:
        header, start = read_header(path, f)
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    k = header[PARAM_NAMES[0]]["shape"][0]
    idx = None if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx is not None and len(idx) and (idx.min() < 0 or idx.max() >= k):
        bad = int(idx[(idx < 0) | (idx >= k)][0])
        raise _bad(path, "weights_index", f"row {bad} requested, the shard holds rows 0..{k - 1} (the metadata "
                   "table's weights_index is wrong)")
    if net_ids is not None:
        ids = _header_ids(path, header)
        rows = range(k) if idx is None else idx.tolist()
        if ids is not None:
            for i, want in zip(rows, net_ids, strict=True):
                if ids[i] != want:
                    raise _bad(path, "weights_index", f"row {i} holds network {ids[i]!r}, the metadata table "
                               f"says {want!r}")
    mm = np.frombuffer(m, dtype=np.uint8)  # a plain ndarray (np.memmap's subclass costs ~40 us per slice)
    arrays = {}
    for n in PARAM_NAMES:
        h = header[n]
        begin, end = (start + int(o) for o in h["data_offsets"])
        arrays[n] = arr = mm[begin:end].view(np.float32).reshape(h["shape"])
        if idx is not None and len(idx) and hasattr(m, "madvise"):  # queue the rows' reads (cold cache)
            row = arr[0].nbytes
            for i in np.unique(idx):
                lo = (begin + int(i) * row) // mmap.PAGESIZE * mmap.PAGESIZE
                m.madvise(mmap.MADV_WILLNEED, lo, min(begin + (int(i) + 1) * row, len(m)) - lo)
    return {n: torch.from_numpy(np.array(a) if idx is None else a[idx]) for n, a in arrays.items()}


def read_weight_ids(path: str | os.PathLike) -> list[str]:
    """The net ids a shard's header lists (validated, see :func:`read_header`)."""
    header, _ = read_header(path)
    ids = _header_ids(path, header)
    if ids is None:
        raise _bad(path, "net_ids", f"the header metadata has no {HEADER_KEY!r} key")
    return ids


# ---------------------------------------------------------------- curves
def write_curves(path: str | os.PathLike, net_ids: Sequence[str], curves: dict[str, Sequence[np.ndarray]]) -> None:
    cols = {"net_id": pa.array(list(net_ids), pa.string())}
    for c in CURVES:
        cols[c] = pa.array([np.asarray(v, dtype=np.float32) for v in curves[c]], pa.list_(pa.float32()))
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(cols), tmp, compression="zstd")


def _parquet(path, data: bytes | None) -> pa.Table:
    if data is not None:  # the bytes the caller has already read (and verified) from ``path``
        return pq.read_table(pa.BufferReader(data))
    with open_regular(path) as f:
        return pq.read_table(f)


def _read_parquet(path, columns: dict | None = None, data: bytes | None = None) -> pa.Table:
    """A parquet file (or ``data``, its bytes) as an Arrow table; a damaged file or a missing/mistyped column
    (``columns``: name -> predicate on the Arrow type) raises :class:`CorruptFileError` naming the file and the
    field."""
    try:
        table = _parquet(path, data)
    except (pa.ArrowException, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _bad(path, "parquet data", f"unreadable ({first})") from None
    for col, ok in (columns or {}).items():
        if col not in table.column_names:
            raise _bad(path, f"column {col!r}", "missing")
        if not ok(table.schema.field(col).type):
            raise _bad(path, f"column {col!r}", f"has type {table.schema.field(col).type}")
    return table


def _is_float_list(t) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_floating(t.value_type)


def read_curves(path: str | os.PathLike, net_ids: Sequence[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """``{net_id: {curve name: (epochs_run,) float32}}`` for the given networks (all if None)."""
    table = _read_parquet(path, {"net_id": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
                                 **dict.fromkeys(CURVES, _is_float_list)})
    ids = table.column("net_id").to_pylist()
    want = set(ids if net_ids is None else net_ids)
    cols = {c: table.column(c) for c in CURVES}
    return {nid: {c: np.asarray(cols[c][i].values.to_numpy(zero_copy_only=False)) for c in CURVES}
            for i, nid in enumerate(ids) if nid in want}


# ---------------------------------------------------------------- tables
def write_table(path: str | os.PathLike, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False, compression="zstd")


def read_table(path: str | os.PathLike, data: bytes | None = None) -> pd.DataFrame:
    """A parquet table of a release (from ``data``, its bytes already read, if given)."""
    return _read_parquet(path, data=data).to_pandas()


def read_table_cached(path: str | os.PathLike, cache_path: str | os.PathLike | None,
                      data: bytes | None = None) -> pd.DataFrame:
    """``read_table(path)`` through an uncompressed Arrow (feather) copy at ``cache_path``, written on first use.

    The copy reads without decompression (the 81,500-row metadata table: ~20 ms instead of ~200 ms). The caller
    names it after the parquet file's verified sha256, so a changed table never meets a stale copy; other
    copies in the same folder with the same prefix are removed. Any problem with the copy (unwritable folder,
    damaged file) falls back to the parquet file.
    """
    if cache_path is not None:
        cache_path = Path(cache_path)
        try:
            if not cache_path.exists():
                table = _parquet(path, data)
                with cache_entry_path(cache_path) as tmp:
                    feather.write_feather(table, str(tmp), compression="uncompressed")
                prefix = cache_path.name.rsplit("-", 1)[0]
                for old in cache_path.parent.glob(f"{prefix}-*{cache_path.suffix}"):
                    if old != cache_path:
                        old.unlink(missing_ok=True)
            return pd.read_feather(cache_path)
        except (OSError, ValueError, pa.ArrowException):
            pass
    return read_table(path, data)


def read_json(path: str | os.PathLike, data: bytes | None = None) -> dict:
    """A JSON object file of a release (or ``data``, its bytes); malformed content raises
    :class:`CorruptFileError` naming it."""
    if data is None:
        with open_regular(path) as f:
            data = f.read(_MAX_JSON + 1)
    raw = data
    if len(raw) > _MAX_JSON:
        raise _bad(path, "size", f"over {_MAX_JSON} bytes: not a zoo.json")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise _bad(path, "JSON", f"unreadable ({e})") from None
    if not isinstance(data, dict):
        raise _bad(path, "JSON", "not an object")
    return data


def read_info(folder: str | os.PathLike) -> dict:
    return read_json(Path(folder) / INFO_PATH)
