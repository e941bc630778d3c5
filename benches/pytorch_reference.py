"""PyTorch CPU reference for `lossgraph bench`: the same ops at the same
sizes, f32, forward + `loss.backward()`, default `mean` reduction, two threads.

Only the inputs that `lossgraph bench` differentiates require a gradient
(logits, predictions, and for linear_cross_entropy hidden, weight and bias);
targets are data. Median of `--reps` timed runs after two warm-ups.

    python benches/pytorch_reference.py --json torch.json
    python benches/pytorch_reference.py --primitives --json torch_prims.json

`--primitives` times the primitive ops of `lossgraph bench --primitives`
instead (src/bench_primitives.rs: the same names, shapes and inputs' ranges),
each forward alone and the forward + backward chains; pass its JSON to
`lossgraph bench --primitives --torch FILE` to see the two side by side.

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


def primitive_cases():
    """The cases of src/bench_primitives.rs, by the same names."""
    a = torch.randn(*M4)
    b = torch.randn(*M4)
    pos = torch.rand(*M4) + 0.5
    row = torch.randn(1024)
    col = torch.randn(4096, 1)
    z = torch.randn(1024, 32000) * 3.0
    w = torch.randn(1024, 32000)
    rows = (torch.arange(4096) * 2654435761) % 4096
    ids = ((torch.arange(1024) * 40503) % 32000).unsqueeze(1)

    def fwd(f, *xs):
        # leaves that require a gradient, as on lossgraph's tape; the
        # output is dropped after each run
        leaves = [x.clone().requires_grad_() for x in xs]
        return lambda: f(*leaves)

    def chain(f, *xs):
        leaves = [x.clone().requires_grad_() for x in xs]
        return step(leaves, lambda: f(*leaves))

    return [
        ("neg", fwd(torch.neg, a)),
        ("abs", fwd(torch.abs, a)),
        ("sign", fwd(torch.sign, a)),
        ("relu", fwd(torch.relu, a)),
        ("square", fwd(torch.square, a)),
        ("exp", fwd(torch.exp, a)),
        ("expm1", fwd(torch.expm1, a)),
        ("log", fwd(torch.log, pos)),
        ("log1p", fwd(torch.log1p, pos)),
        ("sqrt", fwd(torch.sqrt, pos)),
        ("powf", fwd(lambda x: x.pow(1.5), pos)),
        ("tanh", fwd(torch.tanh, a)),
        ("sigmoid", fwd(torch.sigmoid, a)),
        ("clamp", fwd(lambda x: x.clamp(-1.0, 1.0), a)),
        ("add", fwd(torch.add, a, b)),
        ("sub", fwd(torch.sub, a, b)),
        ("mul", fwd(torch.mul, a, b)),
        ("div", fwd(torch.div, a, pos)),
        ("maximum", fwd(torch.maximum, a, b)),
        ("gt", fwd(lambda x, y: (x > y).float(), a, b)),
        ("add_row_broadcast", fwd(torch.add, a, row)),
        ("add_col_broadcast", fwd(torch.add, a, col)),
        ("sum_all", fwd(torch.sum, a)),
        ("mean_all", fwd(torch.mean, a)),
        ("sum_axis0", fwd(lambda x: x.sum(0), a)),
        ("sum_axis1", fwd(lambda x: x.sum(1), a)),
        ("max_axis1", fwd(lambda x: x.max(1).values, a)),
        ("logsumexp_axis1", fwd(lambda x: x.logsumexp(1), a)),
        ("argmax_axis1", fwd(lambda x: x.argmax(1), a)),
        ("softmax", fwd(lambda x: x.softmax(1), z)),
        ("log_softmax", fwd(lambda x: x.log_softmax(1), z)),
        ("index_select_rows", fwd(lambda x: x.index_select(0, rows), a)),
        ("gather_class", fwd(lambda x: x.gather(1, ids), z)),
        ("exp(a)*b sum, fwd+bwd", chain(lambda x, y: (x.exp() * y).sum(), a, b)),
        ("tanh(a)^2 mean, fwd+bwd", chain(lambda x: x.tanh().square().mean(), a)),
        ("log_softmax sum, fwd+bwd", chain(lambda x: x.log_softmax(1).sum(), z)),
        ("gather_class sum, fwd+bwd", chain(lambda x: x.gather(1, ids).sum(), z)),
        ("softmax*w sum, fwd+bwd", chain(lambda x, y: (x.softmax(1) * y).sum(), z, w)),
        ("mlp_step", mlp_step()),
    ]


def mlp_step():
    """One training step of the 784-512-512-10 ReLU MLP, batch 256,
    cross-entropy, Adam with its defaults (as src/bench_primitives.rs)."""
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 10),
    )
    opt = torch.optim.Adam(model.parameters())
    x = torch.randn(256, 784)
    y = (torch.arange(256) * 7) % 10

    def run():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--primitives", action="store_true", help="the primitive ops instead")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    if args.primitives:
        todo = [(op, "", lambda run=run: run, None) for op, run in primitive_cases()]
    else:
        todo = cases()
    for op, shape, make, reps in todo:
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
