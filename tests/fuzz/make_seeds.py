#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/checkpoint_fuzz.cpp: small safetensors files, valid
and invalid, whose tensors are the ones the target loads ("w" F32 [2, 3], "b" F64 [3], "n"
I32 [], "e" F32 [0, 4]), plus others the target does not know.

    tests/fuzz/make_seeds.py [OUT_DIR]   # default: tests/fuzz/corpus/checkpoint

The files are committed; run this again after changing it. Regression inputs (crashes the
fuzzer found) live in the same folder under names starting with "regression-" and are not
touched here.
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def safetensors(header, data=b"", length=None, pad=True):
    """An 8-byte little-endian length, the header (a dict or raw text), then the data."""
    text = header if isinstance(header, (str, bytes)) else json.dumps(header, separators=(",", ":"))
    if isinstance(text, str):
        text = text.encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


W = struct.pack("<6f", 1.0, -2.0, 0.5, float("inf"), -0.0, 3.25)
B = struct.pack("<3d", 0.1, -1e300, float("nan"))
N = struct.pack("<i", -7)
ALL = {"w": entry("F32", [2, 3], 0, 24), "b": entry("F64", [3], 24, 48), "n": entry("I32", [], 48, 52),
       "e": entry("F32", [0, 4], 52, 52)}


def with_(**changes):
    h = {k: dict(v) for k, v in ALL.items()}
    for name, v in changes.items():
        if v is None:
            del h[name]
        else:
            h[name] = v
    return h


SEEDS = {
    # Valid files.
    "valid-all": safetensors({"__metadata__": {"format": "pt", "epoch": "7"}, **ALL}, W + B + N),
    "valid-all-no-metadata": safetensors(ALL, W + B + N),
    "valid-reordered": safetensors({"n": entry("I32", [], 0, 4), "e": entry("F32", [0, 4], 4, 4),
                                    "b": entry("F64", [3], 4, 28), "w": entry("F32", [2, 3], 28, 52)}, N + B + W),
    "valid-extra-tensors": safetensors({**ALL, "h": entry("BF16", [2], 52, 56),
                                        "optimizer.w.exp_avg": entry("F32", [2, 3], 56, 80),
                                        "optimizer.w.step": entry("F32", [], 80, 84)},
                                       W + B + N + b"abcd" + W + b"\0\0\x80?"),
    "valid-w-only": safetensors({"w": entry("F32", [2, 3], 0, 24)}, W),
    "valid-metadata-only": safetensors({"__metadata__": {"k": "v", "": "\u00e9\\\""}}),
    "valid-empty-header": safetensors("{}"),
    "valid-unpadded-gap": safetensors(with_(b=entry("F64", [3], 32, 56), n=entry("I32", [], 60, 64),
                                            e=entry("F32", [0, 4], 64, 64)),
                                      W + b"gapgapga" + B + b"zzzz" + N, pad=False),
    # Invalid files, one problem each.
    "bad-empty-file": b"",
    "bad-short-length": b"\x10\0\0",
    "bad-length-past-end": safetensors(ALL, W + B + N, length=4096),
    "bad-length-huge": safetensors(ALL, W + B + N, length=0xFFFFFFFFFFFFFFF0),
    "bad-json-truncated": safetensors('{"w":{"dtype":"F32",', W),
    "bad-json-array": safetensors("[1,2]"),
    "bad-json-nul": safetensors(b'{"w":\0}'),
    "bad-entry-not-object": safetensors({"w": 3}),
    "bad-no-dtype": safetensors(with_(w={"shape": [2, 3], "data_offsets": [0, 24]}), W + B + N),
    "bad-unknown-dtype": safetensors(with_(w=entry("Q7", [2, 3], 0, 24)), W + B + N),
    "bad-other-dtype": safetensors(with_(w=entry("F64", [3], 0, 24)), W + B + N),
    "bad-other-shape": safetensors(with_(w=entry("F32", [3, 2], 0, 24)), W + B + N),
    "bad-no-shape": safetensors(with_(w={"dtype": "F32", "data_offsets": [0, 24]}), W + B + N),
    "bad-negative-dim": safetensors(with_(w=entry("F32", [-2, -3], 0, 24)), W + B + N),
    "bad-float-dim": safetensors(with_(w=entry("F32", [2.0, 3], 0, 24)), W + B + N),
    "bad-nested-dim": safetensors(with_(w=entry("F32", [[[2]], 3], 0, 24)), W + B + N),
    "bad-shape-overflow": safetensors(with_(w=entry("F32", [4294967296, 4294967296, 4], 0, 24)), W + B + N),
    "bad-offsets-one": safetensors(with_(w={"dtype": "F32", "shape": [2, 3], "data_offsets": [0]}), W + B + N),
    "bad-offsets-reversed": safetensors(with_(w=entry("F32", [2, 3], 24, 0)), W + B + N),
    "bad-offsets-past-end": safetensors(with_(n=entry("I32", [], 48, 56)), W + B + N),
    "bad-offsets-huge": safetensors(with_(n=entry("I32", [], 18446744073709551612, 18446744073709551615)),
                                    W + B + N),
    "bad-byte-count": safetensors(with_(w=entry("F32", [2, 3], 0, 20)), W + B + N),
    "bad-overlap": safetensors(with_(b=entry("F64", [3], 20, 44)), W + B + N),
    "bad-truncated-data": safetensors(ALL, (W + B + N)[:40]),
    "bad-missing-tensor": safetensors(with_(n=None), W + B),
    "bad-metadata-not-object": safetensors({"__metadata__": ["a"], **ALL}, W + B + N),
    "bad-metadata-not-string": safetensors({"__metadata__": {"epoch": 7}, **ALL}, W + B + N),
    "bad-deep-shape": safetensors(with_(w=entry("F32", [[[[[[[[[[2]]]]]]]]], 3], 0, 24)), W + B + N),
    "bad-deep-unknown-field": safetensors(with_(w={**entry("F32", [2, 3], 0, 24), "x": [[[[[[[[{"a": [[[1]]]}]]]]]]]]}),
                                          W + B + N),
    "bad-duplicate-key": safetensors('{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},'
                                     '"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,4]}}', W),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus", "checkpoint")
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        if not name.startswith("regression-"):
            os.remove(os.path.join(out, name))
    for name, data in SEEDS.items():
        with open(os.path.join(out, name + ".safetensors"), "wb") as f:
            f.write(data)
    total = sum(len(d) for d in SEEDS.values())
    print(f"{len(SEEDS)} seeds, {total} bytes, in {out}")


if __name__ == "__main__":
    main()
