#!/usr/bin/env python3
"""PyTorch reference data for the LSTM, GRU and Linear parity tests: one safetensors file per case.

usage: rnn_reference.py OUT_FILE CASE    writes one case
       rnn_reference.py --all OUT_DIR    writes every case as OUT_DIR/<case>.safetensors, then reads each back
       rnn_reference.py --list           prints the case names

Every case builds its torch layer in float64 from a fixed seed (crc32 of the case name), with random
inputs, and stores (see tests/torch/README.md):
  - the layer's params under its state_dict names (weight_ih_l0, ..., bias_hh_l1_reverse; weight_ih, ... for cells);
  - the inputs: x, h0 (and c0 for LSTMs), and lengths (I32) for padded cases;
  - the outputs: output, h_n (and c_n) for layers; h_1 (and c_1) for cells; output for linear;
  - the loss's weights w_out, w_h (and w_c), fixed random tensors shaped like output, h_n (h_1), c_n (c_1):
      loss = sum(output * w_out) + sum(h_n * w_h) [+ sum(c_n * w_c)]   (cells: without the output term)
    so that the gradient flows back through every output (linear: loss = sum(output * w_out), x [T, B, In]);
  - "grad." + the name of every param and input (grad.weight_ih_l0, grad.x, grad.h0, grad.c0).
Padded cases run x through torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False) and
back through pad_packed_sequence(total_length=T): output is zero at the padded steps t >= lengths[b], h_n and
c_n hold each sequence's state after its own last step (the reverse direction's after step 0), and grad.x is
zero at the padded steps; x holds random values there, which a correct implementation ignores.
Tensors are F64 (lengths I32, which ctgraph's load_tensors reads); "__metadata__" records the case's sizes.
The safetensors format is written by hand (struct + json): the `safetensors` package may be absent.
"""
import json
import os
import struct
import sys
import zlib

import torch

T, B, IN, H = 5, 3, 4, 6
LENGTHS = [5, 2, 4]  # unsorted on purpose (enforce_sorted=False); the longest is T

# name: (kind, layers, bidirectional, padded); kind is lstm_cell, gru_cell, lstm or gru.
CASES = {
    "linear": ("linear", 1, False, False),
    "lstm_cell": ("lstm_cell", 1, False, False),
    "gru_cell": ("gru_cell", 1, False, False),
    "lstm_l1": ("lstm", 1, False, False),
    "lstm_l2": ("lstm", 2, False, False),
    "lstm_l1_bidir": ("lstm", 1, True, False),
    "lstm_l2_bidir": ("lstm", 2, True, False),
    "gru_l1": ("gru", 1, False, False),
    "gru_l2_bidir": ("gru", 2, True, False),
    "lstm_l1_padded": ("lstm", 1, False, True),
    "lstm_l2_padded": ("lstm", 2, False, True),
    "lstm_l1_bidir_padded": ("lstm", 1, True, True),
    "lstm_l2_bidir_padded": ("lstm", 2, True, True),
    "gru_l1_padded": ("gru", 1, False, True),
    "gru_l2_bidir_padded": ("gru", 2, True, True),
}

DTYPES = {"F64": torch.float64, "F32": torch.float32, "I64": torch.int64, "I32": torch.int32}
CODES = {v: k for k, v in DTYPES.items()}


def write_safetensors(path, tensors, meta):
    """8-byte little-endian header length, JSON header (padded with spaces to 8 bytes), then the data."""
    header, chunks, offset = {"__metadata__": meta}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        raw = t.flatten().view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": CODES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


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
        dtype = DTYPES[e["dtype"]]
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(e["shape"]).clone()
    return tensors, meta


def build(case):
    """The layer, its inputs, and a function running it: run(layer, inputs) -> dict of outputs."""
    kind, layers, bidir, padded = CASES[case]
    torch.manual_seed(zlib.crc32(case.encode()))
    dirs = 2 if bidir else 1
    if kind == "linear":  # torch.nn.Linear(IN, H) over leading axes [T, B]
        layer = torch.nn.Linear(IN, H)
        inputs = {"x": torch.randn(T, B, IN)}
    elif kind == "lstm_cell":
        layer = torch.nn.LSTMCell(IN, H)
        inputs = {"x": torch.randn(B, IN), "h0": torch.randn(B, H) * 0.5, "c0": torch.randn(B, H) * 0.5}
    elif kind == "gru_cell":
        layer = torch.nn.GRUCell(IN, H)
        inputs = {"x": torch.randn(B, IN), "h0": torch.randn(B, H) * 0.5}
    else:
        cls = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
        layer = cls(IN, H, num_layers=layers, bidirectional=bidir)
        inputs = {"x": torch.randn(T, B, IN), "h0": torch.randn(layers * dirs, B, H) * 0.5}
        if kind == "lstm":
            inputs["c0"] = torch.randn(layers * dirs, B, H) * 0.5
    lengths = torch.tensor(LENGTHS, dtype=torch.int64) if padded else None

    def run(layer, inputs):
        if kind == "linear":
            return {"output": layer(inputs["x"])}
        x, h0, c0 = inputs["x"], inputs["h0"], inputs.get("c0")
        if kind == "lstm_cell":
            h1, c1 = layer(x, (h0, c0))
            return {"h_1": h1, "c_1": c1}
        if kind == "gru_cell":
            return {"h_1": layer(x, h0)}
        state = (h0, c0) if kind == "lstm" else h0
        if padded:
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
            out, hn = layer(packed, state)
            output, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
        else:
            output, hn = layer(x, state)
        if kind == "lstm":
            return {"output": output, "h_n": hn[0], "c_n": hn[1]}
        return {"output": output, "h_n": hn}

    meta = {"case": case, "kind": kind, "T": str(T), "B": str(B), "input_size": str(IN), "hidden_size": str(H),
            "num_layers": str(layers), "bidirectional": str(bidir).lower(), "padded": str(padded).lower(),
            "torch": torch.__version__}
    if padded:
        meta["lengths"] = json.dumps(LENGTHS)
    return layer, inputs, lengths, run, meta


LOSS_WEIGHTS = {"output": "w_out", "h_n": "w_h", "c_n": "w_c", "h_1": "w_h", "c_1": "w_c"}


def reference(case):
    torch.set_default_dtype(torch.float64)
    layer, inputs, lengths, run, meta = build(case)
    for t in inputs.values():
        t.requires_grad_(True)
    outputs = run(layer, inputs)
    weights = {LOSS_WEIGHTS[name]: torch.randn(out.shape) for name, out in outputs.items()}
    loss = sum((out * weights[LOSS_WEIGHTS[name]]).sum() for name, out in outputs.items())
    loss.backward()
    tensors = {}
    for name, p in layer.state_dict().items():
        tensors[name] = p
    for name, p in layer.named_parameters():
        tensors["grad." + name] = p.grad
    for name, t in inputs.items():
        tensors[name] = t
        tensors["grad." + name] = t.grad
    tensors.update(outputs)
    tensors.update(weights)
    if lengths is not None:
        tensors["lengths"] = lengths.to(torch.int32)
    meta["loss"] = repr(loss.item())
    return tensors, meta


def verify(path, case):
    """Reads the file back: the same tensors as computed now, and the saved params and inputs reproduce the
    saved outputs through a fresh layer."""
    want, _ = reference(case)
    got, meta = read_safetensors(path)
    if sorted(got) != sorted(want):
        raise SystemExit(f"{path}: names {sorted(got)} != {sorted(want)}")
    for name, w in want.items():
        g = got[name]
        if g.dtype != w.dtype or g.shape != w.shape or not torch.equal(g, w.detach()):
            raise SystemExit(f"{path}: {name} differs from the reference")
    layer, inputs, _, run, _ = build(case)
    layer.load_state_dict({n: got[n] for n in layer.state_dict()})
    with torch.no_grad():
        outputs = run(layer, {n: got[n] for n in inputs})
    for name, out in outputs.items():
        if not torch.allclose(out, got[name], rtol=0, atol=1e-15):
            raise SystemExit(f"{path}: {name} not reproduced from the saved params and inputs")
    if meta.get("case") != case:
        raise SystemExit(f"{path}: metadata {meta}")
    if CASES[case][3]:  # padded: zero output at and after each sequence's length
        for b, n in enumerate(LENGTHS):
            if got["output"][n:, b].count_nonzero() or got["grad.x"][n:, b].count_nonzero():
                raise SystemExit(f"{path}: padded steps of sequence {b} are not zero")


def write(path, case):
    tensors, meta = reference(case)
    write_safetensors(path, tensors, meta)


def main(argv):
    if len(argv) == 2 and argv[1] == "--list":
        print("\n".join(CASES))
    elif len(argv) == 3 and argv[1] == "--all":
        os.makedirs(argv[2], exist_ok=True)
        for case in CASES:
            path = os.path.join(argv[2], case + ".safetensors")
            write(path, case)
            verify(path, case)
        print(f"ok: {len(CASES)} cases in {argv[2]}")
    elif len(argv) == 3 and argv[2] in CASES:
        write(argv[1], argv[2])
    else:
        sys.stderr.write(__doc__.split("\n\n")[1] + "\ncases: " + " ".join(CASES) + "\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
