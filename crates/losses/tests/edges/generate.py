"""Conformance cases at the edges (#25): inputs exactly on each loss's kinks,
and logits of extreme magnitude.

Every input is a dyadic rational, so the corner is hit exactly in both f64 and
f32 arithmetic (e.g. margin_ranking's 0.5 - 1 * (1.5 - 1.0) = 0 with no
rounding). Expected values and gradients come from PyTorch in float64: its own
loss where one exists (F.l1_loss, F.huber_loss, ...), else the formula of
LOSSES.md written with PyTorch primitives and the subgradient 0 at the corner
(LOSSES.md, "Conventions"). Same format as ../conformance/ (see its README).

The magnitude cases (kl_logits with logits near 1e4) take their expected
values from mpmath at 60 significant digits, from the formulas of LOSSES.md,
and check them against PyTorch's float64 autograd first: PyTorch's own float64
result carries rounding errors near 1e-12 there (logits of 1e4 times a few
ulp), as large as the f64 tolerance, so it cannot serve as the reference
itself.

Run from this folder with PyTorch installed (pip install torch; mpmath comes
with it):
    python generate.py
"""
import json

import mpmath
import torch
import torch.nn.functional as F

D = torch.float64
GEN = f"PyTorch {torch.__version__} in float64 (tests/edges/generate.py)"


def t(data, shape=None):
    x = torch.tensor(data, dtype=D)
    return x if shape is None else x.reshape(shape)


def enc(x, integer=False):
    out = {"shape": list(x.shape), "data": x.reshape(-1).tolist()}
    if integer:
        out["dtype"] = "i64"
        out["data"] = [int(v) for v in out["data"]]
    return out


def case(op, cid, fn, inputs, options, grad_inputs, ints=(), grad_output=None):
    """Run `fn(**inputs)` in PyTorch, backpropagate `grad_output` (a seeded
    dyadic cotangent when None) and record the gradients of `grad_inputs`."""
    leaves = {}
    for name, value in inputs.items():
        if name in grad_inputs:
            value = value.clone().requires_grad_(True)
        leaves[name] = value
    out = fn(**leaves)
    if grad_output is None:
        n = out.numel()
        grad_output = t([0.75 + 0.25 * (i % 3) for i in range(n)], out.shape)
    out.backward(grad_output)
    return {
        "id": f"{op}/kink_{cid}",
        "op": op,
        "options": options,
        "inputs": {n: enc(v, n in ints) for n, v in inputs.items()},
        "grad_output": enc(grad_output),
        "expected": {
            "output": enc(out.detach()),
            "grads": {n: enc(leaves[n].grad) for n in grad_inputs},
        },
        "dtypes": ["f64", "f32"],
    }


def reduce(x, reduction):
    return {"none": x, "sum": x.sum(), "mean": x.mean()}[reduction]


def where_pos(x):
    """max(0, x) with the subgradient 0 at x = 0 (no PyTorch twin)."""
    return torch.where(x > 0, x, torch.zeros_like(x))


def files():
    out = {}
    # r = 0 at items 0 and 2; |r| = 1 = delta at items 1 and 3
    pred = t([0.5, -0.25, 2.0, 1.75, -3.0, 0.125])
    target = t([0.5, 0.75, 2.0, 0.75, -1.5, 0.0])
    pt = {"pred": pred, "target": target}
    both = ["pred", "target"]

    out["mae"] = [
        case("mae", f"zero_{r}", lambda pred, target, r=r: F.l1_loss(pred, target, reduction=r),
             pt, {"reduction": r}, both)
        for r in ["mean", "sum", "none"]
    ]
    out["huber"] = [
        case("huber", f"delta{d}_{r}",
             lambda pred, target, d=d, r=r: F.huber_loss(pred, target, delta=d, reduction=r),
             pt, {"delta": d, "reduction": r}, both)
        for d, r in [(1.0, "mean"), (1.0, "none"), (0.25, "sum"), (1.5, "none")]
    ]
    out["smooth_l1"] = [
        case("smooth_l1", f"beta{b}_{r}",
             lambda pred, target, b=b, r=r: F.smooth_l1_loss(pred, target, beta=b, reduction=r),
             pt, {"beta": b, "reduction": r}, both)
        for b, r in [(1.0, "mean"), (1.0, "none"), (0.0, "none"), (1.5, "sum")]
    ]

    def pinball(pred, target, tau, r):
        u = target - pred
        slope_free = torch.where(u >= 0, tau * u, (tau - 1) * u)
        # the value is PyTorch's; the gradient at u = 0 is the subgradient 0:
        # build it so by masking the corner out of the graph
        corner = u == 0
        return reduce(torch.where(corner, u.detach() * 0, slope_free), r)

    out["quantile"] = [
        case("quantile", f"tau{tau}_{r}", lambda pred, target, tau=tau, r=r: pinball(pred, target, tau, r),
             pt, {"tau": tau, "reduction": r}, both)
        for tau, r in [(0.5, "mean"), (0.25, "none"), (0.875, "sum")]
    ]

    # hinge: y * s = margin at items 0, 1 and 3
    scores = t([1.0, -1.0, 0.5, 2.0, -0.25])
    ys = t([1.0, -1.0, 1.0, 1.0, -1.0])
    out["hinge"] = [
        case("hinge", f"margin{m}_{r}",
             lambda scores, target, m=m, r=r: reduce(where_pos(m - target * scores), r),
             {"scores": scores * m, "target": ys}, {"margin": m, "reduction": r}, ["scores"])
        for m, r in [(1.0, "mean"), (2.0, "none")]
    ]

    # multi_margin: margin - s_y + s_j = 0 for j = 1 in row 0, j = 2 in row 1
    s = t([1.5, 0.5, -1.0, 0.0,
           0.25, -2.0, 1.25, 0.25,
           0.0, 0.0, 0.0, 0.0], [3, 4])
    y = torch.tensor([0, 3, 2])
    w = t([1.0, 0.5, 2.0, 0.75])
    mm = []
    for p, m, weight, r in [(1, 1.0, None, "mean"), (2, 1.0, None, "none"), (1, 0.0, None, "sum"), (1, 1.0, w, "none")]:
        opts = {"p": p, "margin": m, "reduction": r}
        if weight is not None:
            opts["weight"] = enc(weight)
        mm.append(case("multi_margin", f"p{p}_m{m}_{'w' if weight is not None else 'nw'}_{r}",
                       lambda scores, target, p=p, m=m, weight=weight, r=r:
                       F.multi_margin_loss(scores, target, p=p, margin=m, weight=weight, reduction=r),
                       {"scores": s, "target": y}, opts, ["scores"], ints={"target"}))
    out["multi_margin"] = mm

    # margin_ranking: m - y(a - b) = 0 at items 0 and 2 (margin 0.5), at 1 and 3 (margin 0)
    a = t([1.5, 0.0, 1.0, -2.0, 3.0])
    b = t([1.0, 0.0, 1.5, -2.0, -1.0])
    yr = t([1.0, 1.0, -1.0, -1.0, 1.0])
    out["margin_ranking"] = [
        case("margin_ranking", f"margin{m}_{r}",
             lambda a, b, target, m=m, r=r: F.margin_ranking_loss(a, b, target, margin=m, reduction=r),
             {"a": a, "b": b, "target": yr}, {"margin": m, "reduction": r}, ["a", "b", "target"])
        for m, r in [(0.5, "mean"), (0.0, "none"), (0.5, "sum")]
    ]

    # contrastive: d = 0 (rows 0, 1), d = margin exactly (row 2: a 3-4-5 triangle)
    u = t([0.5, -1.0, 0.5, -1.0, 3.0, 4.0, 1.0, 1.0], [4, 2])
    v = t([0.5, -1.0, 0.5, -1.0, 0.0, 0.0, 0.0, 0.0], [4, 2])
    sim = t([0.0, 1.0, 0.0, 0.0])

    def contrastive(u, v, similar, m, r):
        d = torch.linalg.vector_norm(u - v, dim=1)
        return reduce(similar * d**2 + (1 - similar) * where_pos(m - d) ** 2, r)

    out["contrastive"] = [
        case("contrastive", f"margin{m}_{r}",
             lambda u, v, similar, m=m, r=r: contrastive(u, v, similar, m, r),
             {"u": u, "v": v, "similar": sim}, {"margin": m, "reduction": r}, ["u", "v"])
        for m, r in [(5.0, "none"), (1.0, "mean")]
    ]

    # triplet, squared: d+ - d- + margin = 0 in row 0 at margin 1 (1 - 2 + 1)
    # and in row 1 at margin 0 (positive == negative). The Euclidean form
    # follows below.
    anc = t([0.0, 0.0, 0.5, -1.0, 0.0, 0.0], [3, 2])
    pos = t([1.0, 0.0, 1.5, -1.0, 0.0, 0.0], [3, 2])
    neg = t([1.0, 1.0, 1.5, -1.0, 0.0, 0.0], [3, 2])
    trip = {"anchor": anc, "positive": pos, "negative": neg}
    all3 = ["anchor", "positive", "negative"]

    def triplet_sq(anchor, positive, negative, m, r):
        dp = ((anchor - positive) ** 2).sum(1)
        dn = ((anchor - negative) ** 2).sum(1)
        return reduce(where_pos(dp - dn + m), r)

    out["triplet"] = [
        case("triplet", f"squared_m{m}_{r}",
             lambda anchor, positive, negative, m=m, r=r: triplet_sq(anchor, positive, negative, m, r),
             trip, {"margin": m, "squared": True, "reduction": r}, all3)
        for m, r in [(0.0, "none"), (1.0, "none"), (1.0, "sum")]
    ]

    # triplet, Euclidean: eps = 1e-6 inside each norm keeps a dyadic input
    # off the corner d+ - d- + m = 0 for m > 0, but where positive ==
    # negative the two distances are equal in any arithmetic, so at margin 0
    # (which this project accepts and PyTorch refuses) rows 0 and 1 sit
    # exactly on the corner; row 2 is inside the margin, row 3 outside
    anc_e = t([0.0, 0.0, 0.5, -1.0, 1.0, 2.0, 0.0, 0.0], [4, 2])
    pos_e = t([1.0, 0.5, 0.5, -1.0, 1.5, 2.0, 2.0, 1.0], [4, 2])
    neg_e = t([1.0, 0.5, 0.5, -1.0, 3.0, 2.0, 0.25, 0.0], [4, 2])

    def triplet_euclid(anchor, positive, negative, m, r):
        dp = F.pairwise_distance(anchor, positive, eps=1e-6)
        dn = F.pairwise_distance(anchor, negative, eps=1e-6)
        return reduce(where_pos(dp - dn + m), r)

    out["triplet"] += [
        case("triplet", f"euclidean_m{m}_{r}",
             lambda anchor, positive, negative, m=m, r=r: triplet_euclid(anchor, positive, negative, m, r),
             {"anchor": anc_e, "positive": pos_e, "negative": neg_e},
             {"margin": m, "squared": False, "reduction": r}, all3)
        for m, r in [(0.0, "none"), (0.0, "mean")]
    ]
    # away from the corner the primitives above are PyTorch's own loss
    a_, p_, n_ = anc_e[2:], pos_e[2:], neg_e[2:]
    assert torch.allclose(triplet_euclid(a_, p_, n_, 1.0, "none"),
                          F.triplet_margin_loss(a_, p_, n_, margin=1.0, reduction="none"))

    # dpo hinge: h = (pc - rc) - (pr - rr) = 1/beta at items 0 and 2
    pc, pr = t([-1.0, -2.0, -0.5, -4.0]), t([-4.0, -2.0, -3.5, -1.0])
    rc, rr = t([-4.0, -2.0, -1.5, -2.0]), t([-5.0, -2.0, -2.5, -3.0])

    def dpo_hinge(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, r):
        h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
        return reduce(where_pos(1 - beta * h), r)

    names4 = ["policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected"]
    out["dpo"] = [
        case("dpo", f"hinge_beta{beta}_{r}",
             lambda beta=beta, r=r, **kw: dpo_hinge(**kw, beta=beta, r=r),
             dict(zip(names4, [pc, pr, rc, rr])), {"variant": "hinge", "beta": beta, "reduction": r}, names4)
        for beta, r in [(0.5, "none"), (0.5, "mean")]
    ]

    # bce: probabilities at exactly 0 and 1, where a log is clamped at -100
    probs = t([0.0, 1.0, 0.0, 1.0, 0.5, 0.0])
    ybce = t([0.0, 1.0, 1.0, 0.0, 0.5, 0.5])
    out["bce"] = [
        case("bce", f"edges_{r}", lambda probs, target, r=r: F.binary_cross_entropy(probs, target, reduction=r),
             {"probs": probs, "target": ybce}, {"reduction": r}, ["probs"])
        for r in ["none", "mean"]
    ]
    out["kl_logits"] = kl_logits_magnitudes()
    return out


def kl_logits_magnitudes():
    """Teacher and student logits near +-1e4 (exact in f32), where forming
    log q as t/T - lse(t/T) loses the precision of the teacher gradient."""
    s = t([10000.0, 9999.0, 0.0, -10000.0, 5000.0,
           -9000.5, 10000.0, 9000.0, 1.5, -2.0,
           3.0, -1.0, 0.5, 2.0, 0.0], [3, 5])
    te = t([9998.5, 10000.0, 9990.0, 9950.0, -10000.0,
            10000.0, -10000.0, 9999.75, 9999.5, 0.0,
            10000.0, 9997.0, -3.0, 0.25, 9999.0], [3, 5])
    cases = []
    for temp, red in [(1.0, "none"), (2.5, "mean"), (0.5, "sum")]:
        rows = s.shape[0]
        g = t([0.75 + 0.25 * (i % 3) for i in range(rows)]) if red == "none" else t(1.25)
        want_out, want_ds, want_dt = kl_logits_mp(s, te, temp, red, g)
        # PyTorch float64 autograd on the same inputs: must agree to its own
        # rounding (1e-12 relative to the logits' size of 1e4)
        sv, tv = s.clone().requires_grad_(True), te.clone().requires_grad_(True)
        kl = F.kl_div(F.log_softmax(sv / temp, -1), F.log_softmax(tv / temp, -1),
                      reduction="none", log_target=True).sum(-1) * temp**2
        reduce(kl, red).backward(g)
        for a, b in [(reduce(kl, red).detach(), want_out), (sv.grad, want_ds), (tv.grad, want_dt)]:
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-7), (a, b)
        cases.append({
            "id": f"kl_logits/magnitude_1e4_T{temp}_{red}",
            "op": "kl_logits",
            "options": {"temperature": temp, "reduction": red},
            "inputs": {"student": enc(s), "teacher": enc(te)},
            "grad_output": enc(g),
            "expected": {"output": enc(want_out),
                         "grads": {"student": enc(want_ds), "teacher": enc(want_dt)}},
            "dtypes": ["f64", "f32"],
        })
    return cases


def kl_logits_mp(s, te, temp, red, g):
    """Loss and gradients of kl_logits at 60 digits: per row q = softmax(t/T),
    p = softmax(s/T), KL = sum q (log q - log p), loss T^2 KL; with upstream
    u per row, d/ds = u T (p - q), d/dt = u T q (log q - log p - KL)."""
    mpmath.mp.dps = 60
    rows, c = s.shape
    T = mpmath.mpf(temp)
    losses, ds, dt = [], [], []
    for r in range(rows):
        a = [mpmath.mpf(float(x)) / T for x in te[r]]
        b = [mpmath.mpf(float(x)) / T for x in s[r]]
        lq = [x - mpmath.log(mpmath.fsum(mpmath.exp(y) for y in a)) for x in a]
        lp = [x - mpmath.log(mpmath.fsum(mpmath.exp(y) for y in b)) for x in b]
        q, p = [mpmath.exp(x) for x in lq], [mpmath.exp(x) for x in lp]
        kl = mpmath.fsum(qi * (x - y) for qi, x, y in zip(q, lq, lp))
        losses.append(T * T * kl)
        u = mpmath.mpf(float(g[r] if red == "none" else g)) / (rows if red == "mean" else 1)
        ds.append([u * T * (pi - qi) for pi, qi in zip(p, q)])
        dt.append([u * T * qi * (x - y - kl) for qi, x, y in zip(q, lq, lp)])
    fl = lambda xs: t([float(x) for x in xs])
    loss = fl(losses)
    out = {"none": loss, "sum": t(float(mpmath.fsum(losses))),
           "mean": t(float(mpmath.fsum(losses) / rows))}[red]
    return out, fl(sum(ds, [])).reshape(rows, c), fl(sum(dt, [])).reshape(rows, c)


if __name__ == "__main__":
    for op, cases in files().items():
        with open(f"{op}.json", "w") as f:
            json.dump({"op": op, "generated_by": GEN, "cases": cases}, f, indent=None)
            f.write("\n")
        print(op, len(cases))
