#!/usr/bin/env python3
"""Reference trajectories of torch.optim for tests/optim.test.cpp, printed as JSON.

The problem, defined identically in the C++ test (double precision):
  x[k]  = sin(0.7 k + 0.3), shape [4, 3]     (input)
  t[k]  = cos(1.1 k),        shape [4, 2]     (input)
  W[k]  = 0.5 sin(1.3 k + 1) "fc.weight" [2, 3]
  b[k]  = 0.2 cos(k + 0.5)   "fc.bias" [2]
  s     = [1.5, 1.0]         "scale" [2]      (a param without gradient: never updated)
  loss  = mean((tanh(x W^T + b) * s - t)^2)
k is the row-major flat index. Each configuration runs 10 steps from the same start and
records W and b (flattened) after each step, and the gradient norm before clipping.

Output: {"optim": {config: {"fc.weight": [[...] * 10], "fc.bias": [...], "norm": [...]}},
         "schedules": {name: [lr at step 0, 1, ...]}}
"""
import json
import math

import torch

torch.set_default_dtype(torch.float64)


def values(n, f):
    return torch.tensor([f(k) for k in range(n)], dtype=torch.float64)


def problem():
    x = values(12, lambda k: math.sin(0.7 * k + 0.3)).reshape(4, 3)
    t = values(8, lambda k: math.cos(1.1 * k)).reshape(4, 2)
    W = values(6, lambda k: 0.5 * math.sin(1.3 * k + 1.0)).reshape(2, 3).requires_grad_()
    b = values(2, lambda k: 0.2 * math.cos(k + 0.5)).requires_grad_()
    s = torch.tensor([1.5, 1.0])
    return x, t, W, b, s


CONFIGS = {
    "sgd": (torch.optim.SGD, dict(lr=0.1), None),
    "sgd_momentum": (torch.optim.SGD, dict(lr=0.05, momentum=0.9), None),
    "sgd_nesterov": (torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True), None),
    "sgd_weight_decay": (torch.optim.SGD, dict(lr=0.1, momentum=0.5, dampening=0.1, weight_decay=0.01), None),
    "sgd_momentum_clip": (torch.optim.SGD, dict(lr=0.05, momentum=0.9), 0.05),
    "adam": (torch.optim.Adam, dict(lr=0.01), None),
    "adam_l2_amsgrad": (torch.optim.Adam, dict(lr=0.01, weight_decay=0.1, amsgrad=True), None),
    "adam_clip": (torch.optim.Adam, dict(lr=0.01), 0.05),
    "adamw": (torch.optim.AdamW, dict(lr=0.01), None),
    "adamw_clip_amsgrad": (torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1, amsgrad=True), 0.05),
}


def trajectory(cls, kwargs, max_norm, steps=10):
    x, t, W, b, s = problem()
    opt = cls([W, b], **kwargs)
    rec = {"fc.weight": [], "fc.bias": [], "norm": []}
    for _ in range(steps):
        opt.zero_grad()
        loss = ((torch.tanh(x @ W.T + b) * s - t) ** 2).mean()
        loss.backward()
        if max_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_([W, b], max_norm)
        else:
            norm = torch.sqrt(W.grad.pow(2).sum() + b.grad.pow(2).sum())
        opt.step()
        rec["fc.weight"].append(W.detach().flatten().tolist())
        rec["fc.bias"].append(b.detach().tolist())
        rec["norm"].append(float(norm))
    return rec


def schedule(make, steps):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    sched = make(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def main():
    out = {"optim": {name: trajectory(*cfg) for name, cfg in CONFIGS.items()}}
    lr = torch.optim.lr_scheduler
    out["schedules"] = {
        # StepLR(step_size=3, gamma=0.5) from lr 0.5
        "step_lr": schedule(lambda o: lr.StepLR(o, step_size=3, gamma=0.5), 12),
        # CosineAnnealingLR(T_max=10, eta_min=0.05) from lr 0.5: the part of
        # cosine_warmup_lr{.lr = 0.5, .warmup_steps = 4, .total_steps = 14, .min_lr = 0.05} after warm-up
        "cosine": schedule(lambda o: lr.CosineAnnealingLR(o, T_max=10, eta_min=0.05), 11),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
