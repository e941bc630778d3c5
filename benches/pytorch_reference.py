"""PyTorch CPU reference for `lossgraph bench`: the same ops at the same
sizes, f32, forward + `loss.backward()`, default `mean` reduction, two threads.

Only the inputs that `lossgraph bench` differentiates require a gradient
(logits, predictions, and for linear_cross_entropy hidden, weight and bias);
targets are data. Median of `--reps` timed runs after two warm-ups.

    python benches/pytorch_reference.py --json torch.json

Needs only `torch` (any recent CPU build).
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

M4 = (4096, 1024)  # 4M elements, as in src/bench_cases.rs


def step(params, loss):
    """One forward + backward into fresh gradients (`.grad` is reset first,
    so that backward allocates and writes them rather than adding into the
    last run's, as lossgraph's fresh tape does)."""

    def run():
        for p in params:
            p.grad = None
        loss().backward()

    return run


def cross_entropy(n, c):
    z = torch.randn(n, c, requires_grad=True)
    y = torch.randint(0, c, (n,))
    return step([z], lambda: F.cross_entropy(z, y))


def elementwise(fn, make_target=torch.randn):
    x = torch.randn(*M4, requires_grad=True)
    t = make_target(*M4)
    return step([x], lambda: fn(x, t))


def linear_cross_entropy(n, h, v):
    hid = torch.randn(n, h, requires_grad=True)
    w = (torch.randn(v, h) * h**-0.5).requires_grad_()
    b = torch.zeros(v, requires_grad=True)
    y = torch.randint(0, v, (n,))
    return step([hid, w, b], lambda: F.cross_entropy(F.linear(hid, w, b), y))


def cases():
    return [
        ("cross_entropy", "[1024, 32000]", lambda: cross_entropy(1024, 32000), None),
        ("cross_entropy", "[8192, 1000]", lambda: cross_entropy(8192, 1000), None),
        ("cross_entropy", "[65536, 10]", lambda: cross_entropy(65536, 10), None),
        ("mse", "[4096, 1024]", lambda: elementwise(F.mse_loss), None),
        ("mae", "[4096, 1024]", lambda: elementwise(F.l1_loss), None),
        ("huber", "[4096, 1024]", lambda: elementwise(F.huber_loss), None),
        ("smooth_l1", "[4096, 1024]", lambda: elementwise(F.smooth_l1_loss), None),
        (
            "bce_with_logits",
            "[4096, 1024]",
            lambda: elementwise(F.binary_cross_entropy_with_logits, torch.rand),
            None,
        ),
        (
            "linear_cross_entropy",
            "[1024, 1024]x[32000, 1024]",
            lambda: linear_cross_entropy(1024, 1024, 32000),
            3,
        ),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for op, shape, make, reps in cases():
        run = make()
        for _ in range(2):
            run()
        times = []
        for _ in range(reps or args.reps):
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) * 1e3)
        row = {
            "op": op,
            "shape": shape,
            "torch_ms": statistics.median(times),
            "torch_min_ms": min(times),
        }
        rows.append(row)
        print(f"{op:22} {shape:28} {row['torch_ms']:9.2f} ms (min {row['torch_min_ms']:.2f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": args.threads, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
