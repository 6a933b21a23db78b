#!/usr/bin/env python3
"""Reads a safetensors file written by ctgraph (tests/checkpoint.test.cpp) with plain
python (json, struct, torch.frombuffer: the `safetensors` package may be absent), checks
its values, and writes back a modified state_dict (every value v -> 2 v + 1) in the
safetensors format, with its own layout: keys sorted, data in reverse key order, no padding.

usage: safetensors_roundtrip.py IN OUT       prints "ok" on success, exits 1 otherwise
"""
import json
import math
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32}
CODES = {v: k for k, v in DTYPES.items()}


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    data = blob[8 + n :]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        raw = bytearray(data[begin:end])
        t = torch.frombuffer(raw, dtype=DTYPES[e["dtype"]]) if raw else torch.empty(0, dtype=DTYPES[e["dtype"]])
        tensors[name] = t.reshape(e["shape"]).clone()
    return tensors, meta


def write_safetensors(path, tensors, meta):
    header = {"__metadata__": meta}
    chunks, offset = [], 0
    for name in sorted(tensors, reverse=True):
        t = tensors[name].contiguous()
        raw = t.flatten().view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": CODES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(dict(sorted(header.items()))).encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


def expected():
    return {
        "fc1.weight": torch.tensor([k * 0.25 - 1.5 for k in range(12)], dtype=torch.float32).reshape(3, 4),
        "fc1.bias": torch.tensor([-k * 0.125 for k in range(3)], dtype=torch.float32),
        "head.weight": torch.tensor([math.sin(k + 1) / 3 for k in range(6)], dtype=torch.float64).reshape(2, 3),
        "scale": torch.tensor(2.5, dtype=torch.float64),
    }


def main():
    tensors, meta = read_safetensors(sys.argv[1])
    want = expected()
    ok = True
    if sorted(tensors) != sorted(want):
        print(f"names: {sorted(tensors)} != {sorted(want)}")
        ok = False
    for name, w in want.items():
        t = tensors.get(name)
        if t is None or t.dtype != w.dtype or t.shape != w.shape or not torch.equal(t, w):
            print(f"{name}: got {t}, expected {w}")
            ok = False
    if meta != {"format": "pt", "written_by": "ctgraph"}:
        print(f"metadata: {meta}")
        ok = False
    if not ok:
        sys.exit(1)
    write_safetensors(sys.argv[2], {n: t * 2 + 1 for n, t in tensors.items()}, {"format": "pt", "from": "torch"})
    print("ok")


if __name__ == "__main__":
    main()
