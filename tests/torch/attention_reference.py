#!/usr/bin/env python3
"""PyTorch reference data for the additive (Bahdanau) attention parity test: one safetensors file per case.

usage: attention_reference.py --all OUT_DIR    writes every case as OUT_DIR/<case>.safetensors, then reads each back

The layer is the formula written with torch.nn.Linear modules named as ctgraph's nn::additive_attention names
its params (Wh without bias, Ws, v without bias), in float64 from a fixed seed (crc32 of the case name):
  e[j, b] = v(tanh(Wh(keys[j, b]) + Ws(q[b]))),  weights = softmax over j (padded j: weight 0),
  context[b] = sum_j weights[j, b] keys[j, b]
over q [B, Hq] and keys [S, B, Hk]; the masked case masks the positions j >= lengths[b] (masked_fill with -inf
before the softmax). Stored: the params (Wh.weight, Ws.weight, Ws.bias, v.weight), the inputs q, keys (and
lengths, I32), the outputs context [B, Hk] and weights [B, S], the loss's weights w_context and w_weights
(loss = sum(context * w_context) + sum(weights * w_weights)), and "grad." + every param and input.
"""
import os
import sys
import zlib

import torch

from rnn_reference import read_safetensors, write_safetensors

S, B, HQ, HK, A = 5, 3, 4, 6, 7
LENGTHS = [5, 2, 4]
CASES = {"additive": False, "additive_masked": True}


class Additive(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.Wh = torch.nn.Linear(HK, A, bias=False)
        self.Ws = torch.nn.Linear(HQ, A)
        self.v = torch.nn.Linear(A, 1, bias=False)

    def forward(self, q, keys, lengths=None):
        e = self.v(torch.tanh(self.Wh(keys) + self.Ws(q).unsqueeze(0))).squeeze(-1)  # [S, B]
        if lengths is not None:
            pad = torch.arange(S).unsqueeze(1) >= lengths.unsqueeze(0)  # [S, B]
            e = e.masked_fill(pad, float("-inf"))
        a = torch.softmax(e, dim=0)
        return (a.unsqueeze(-1) * keys).sum(0), a.t()


def reference(case):
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(zlib.crc32(case.encode()))
    layer = Additive()
    q = torch.randn(B, HQ, requires_grad=True)
    keys = torch.randn(S, B, HK, requires_grad=True)
    lengths = torch.tensor(LENGTHS, dtype=torch.int64) if CASES[case] else None
    context, weights = layer(q, keys, lengths)
    w_context, w_weights = torch.randn(context.shape), torch.randn(weights.shape)
    loss = (context * w_context).sum() + (weights * w_weights).sum()
    loss.backward()
    tensors = dict(layer.state_dict())
    for name, p in layer.named_parameters():
        tensors["grad." + name] = p.grad
    tensors.update({"q": q, "keys": keys, "grad.q": q.grad, "grad.keys": keys.grad, "context": context,
                    "weights": weights, "w_context": w_context, "w_weights": w_weights})
    if lengths is not None:
        tensors["lengths"] = lengths.to(torch.int32)
    meta = {"case": case, "S": str(S), "B": str(B), "Hq": str(HQ), "Hk": str(HK), "A": str(A),
            "loss": repr(loss.item()), "torch": torch.__version__}
    return tensors, meta


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "--all":
        raise SystemExit(__doc__)
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for case in CASES:
        path = os.path.join(out, case + ".safetensors")
        tensors, meta = reference(case)
        write_safetensors(path, tensors, meta)
        got, _ = read_safetensors(path)
        for name, t in tensors.items():
            if not torch.equal(got[name], t.detach()):
                raise SystemExit(f"{path}: {name} does not read back")
        if CASES[case] and got["weights"][1, LENGTHS[1]:].count_nonzero():
            raise SystemExit(f"{path}: padded weights are not zero")
    print(f"wrote {len(CASES)} cases to {out}")


if __name__ == "__main__":
    main()
