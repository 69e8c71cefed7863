"""The safetensors format, read and written without the `safetensors` package.

A file is an 8-byte little-endian header length N, N bytes of JSON (padded with spaces to a
multiple of 8, as ember and the Python safetensors writer do), then the raw little-endian
tensors back to back. The JSON maps each tensor name to {"dtype", "shape", "data_offsets"}
(byte offsets into the data region) and holds string metadata under "__metadata__". Only F32
tensors are read and written: ember's checkpoints hold nothing else (docs/formats.md).
"""
import json
import os
import struct

import numpy as np

HEADER_MAX = 100 << 20  # the Python safetensors reader's cap, and ember's


class FormatError(ValueError):
    """A file that is not a readable F32 safetensors file; the message names the problem."""


def write(path, tensors, metadata):
    """Writes tensors (a list of (name, array) in file order) and metadata ({str: str})
    atomically: a temporary file in the target's directory, fsync, rename, fsync of the
    directory, so that emberd watching the directory never sees half a file."""
    header, offset, blobs = {"__metadata__": dict(metadata)}, 0, []
    for name, a in tensors:
        a = np.ascontiguousarray(np.asarray(a, dtype="<f4"))
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    for k, v in header["__metadata__"].items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("safetensors metadata must map str to str, got %r: %r" % (k, v))
    js = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    js += b" " * (-len(js) % 8)
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, ".%s.tmp.%d" % (os.path.basename(path), os.getpid()))
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(js)))
            f.write(js)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path):
    """(tensors {name: float32 ndarray}, metadata {str: str}) of an F32 safetensors file.
    Checks the header length, the JSON, dtypes, shapes against offsets, and that the tensors
    cover the data region exactly once."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise FormatError("%s: %d bytes, shorter than the 8-byte header length" % (path, len(data)))
    (n,) = struct.unpack("<Q", data[:8])
    if n > HEADER_MAX or 8 + n > len(data):
        raise FormatError("%s: header length %d is past the end of the file or over %d bytes"
                          % (path, n, HEADER_MAX))
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"),
                            object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError("%s: the header is not valid JSON: %s" % (path, e)) from None
    if not isinstance(header, dict):
        raise FormatError("%s: the header is not a JSON object" % path)
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise FormatError("%s: __metadata__ must map strings to strings" % path)
    body = memoryview(data)[8 + n:]
    spans, out = [], {}
    for name, d in header.items():
        if not isinstance(d, dict) or d.get("dtype") != "F32":
            raise FormatError("%s: tensor %r is %s; only F32 is read" % (path, name, d.get("dtype") if isinstance(d, dict) else d))
        b, e = d["data_offsets"]
        shape = [int(s) for s in d["shape"]]
        if not (0 <= b <= e <= len(body)) or (e - b) != 4 * int(np.prod(shape, dtype=np.int64)):
            raise FormatError("%s: tensor %r: offsets [%d, %d] do not fit shape %s in %d bytes of data"
                              % (path, name, b, e, shape, len(body)))
        spans.append((b, e, name))
        out[name] = np.frombuffer(body[b:e], dtype="<f4").reshape(shape).astype(np.float32)
    at = 0
    for b, e, name in sorted(spans):
        if b != at:
            raise FormatError("%s: tensor %r starts at byte %d of the data, expected %d (a gap or an overlap)"
                              % (path, name, b, at))
        at = e
    if at != len(body):
        raise FormatError("%s: %d bytes of data after the last tensor" % (path, len(body) - at))
    return out, meta


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key in %s" % sorted(k for k in keys if keys.count(k) > 1))
    return dict(pairs)
