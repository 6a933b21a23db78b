#!/usr/bin/env python3
"""PyTorch reference data for the transformer layers' parity tests: one safetensors file per case.

usage: transformer_reference.py --all OUT_DIR    writes every case as OUT_DIR/<case>.safetensors, then reads each back

Each case is a torch module in float64 from a fixed seed (crc32 of the case name), its params drawn again from
N(0, 0.3^2) so that no bias is zero and no LayerNorm weight one (a gradient of a param left at its init value
tests less): torch.nn.LayerNorm, MultiheadAttention (self- and cross-attention, causal and key padding masks),
TransformerEncoderLayer and TransformerDecoderLayer (dropout 0; post-norm and norm_first; relu and gelu), on
x [L, B, E] (and memory [S, B, E]). Stored: the state_dict under torch's names, the inputs x (mem), the
lengths (I32) that the key padding masks come from (key j of sequence b is padded when j >= lengths[b]), the
output "out", the loss's weights w (loss = sum(out * w)), and "grad." + every param and input.
"""
import os
import sys
import zlib

import torch

from rnn_reference import read_safetensors, write_safetensors

L, S, B, E, H, FF = 5, 7, 3, 12, 3, 16
X_LENGTHS = [5, 3, 4]  # of x's keys (self-attention)
MEM_LENGTHS = [7, 2, 5]  # of the memory's keys (cross-attention)

# case -> (module kind, options)
CASES = {
    "layer_norm": ("layer_norm", {}),
    "mha_self_causal_padded": ("mha_self", {"causal": True, "padded": True}),
    "mha_cross_padded": ("mha_cross", {"padded": True}),
    "encoder_post_relu": ("encoder", {}),
    "encoder_post_relu_causal": ("encoder", {"causal": True}),
    "encoder_pre_gelu_padded": ("encoder", {"norm_first": True, "activation": "gelu", "padded": True}),
    "decoder_post_relu_causal_padded": ("decoder", {"causal": True, "padded": True}),
    "decoder_pre_gelu": ("decoder", {"norm_first": True, "activation": "gelu"}),
}


def padding(lengths, n):
    return torch.arange(n).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)  # [B, n], True at padded keys


def reference(case):
    kind, o = CASES[case]
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(zlib.crc32(case.encode()))
    causal = torch.nn.Transformer.generate_square_subsequent_mask(L) if o.get("causal") else None
    x = torch.randn(L, B, E, requires_grad=True)
    mem = torch.randn(S, B, E, requires_grad=True)
    inputs = {"x": x}
    if kind == "layer_norm":
        m = torch.nn.LayerNorm(E)
        run = lambda: m(x)
    elif kind == "mha_self":
        m = torch.nn.MultiheadAttention(E, H)
        kpm = padding(X_LENGTHS, L) if o.get("padded") else None
        run = lambda: m(x, x, x, key_padding_mask=kpm, attn_mask=causal, need_weights=False)[0]
    elif kind == "mha_cross":
        m = torch.nn.MultiheadAttention(E, H)
        kpm = padding(MEM_LENGTHS, S) if o.get("padded") else None
        inputs["mem"] = mem
        run = lambda: m(x, mem, mem, key_padding_mask=kpm, need_weights=False)[0]
    elif kind == "encoder":
        m = torch.nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, activation=o.get("activation", "relu"),
                                             norm_first=o.get("norm_first", False))
        kpm = padding(X_LENGTHS, L) if o.get("padded") else None
        run = lambda: m(x, src_mask=causal, src_key_padding_mask=kpm)
    else:
        m = torch.nn.TransformerDecoderLayer(E, H, FF, dropout=0.0, activation=o.get("activation", "relu"),
                                             norm_first=o.get("norm_first", False))
        kpm = padding(MEM_LENGTHS, S) if o.get("padded") else None
        inputs["mem"] = mem
        run = lambda: m(x, mem, tgt_mask=causal, memory_key_padding_mask=kpm)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.3 * torch.randn(p.shape))
    out = run()
    w = torch.randn(out.shape)
    loss = (out * w).sum()
    loss.backward()
    tensors = {name: t.detach().clone() for name, t in m.state_dict().items()}
    for name, p in m.named_parameters():
        tensors["grad." + name] = p.grad
    for name, t in inputs.items():
        tensors[name] = t.detach()
        tensors["grad." + name] = t.grad
    tensors.update({"out": out.detach(), "w": w})
    tensors["x_lengths"] = torch.tensor(X_LENGTHS, dtype=torch.int32)
    tensors["mem_lengths"] = torch.tensor(MEM_LENGTHS, dtype=torch.int32)
    meta = {"case": case, "L": str(L), "S": str(S), "B": str(B), "E": str(E), "H": str(H), "FF": str(FF),
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
        if not torch.isfinite(tensors["out"]).all():
            raise SystemExit(f"{case}: torch's output is not finite")
        write_safetensors(path, tensors, meta)
        got, _ = read_safetensors(path)
        for name, t in tensors.items():
            if not torch.equal(got[name], t.detach()):
                raise SystemExit(f"{path}: {name} does not read back")
    print(f"wrote {len(CASES)} cases to {out}")


if __name__ == "__main__":
    main()
