"""Extreme-magnitude conformance cases (#25 section 2), one file per op.

Every op of LOSSES.md is run on inputs scaled over the magnitudes that make
sense for each input: regression residuals at 1e-30 ... 1e30, logits up to
+-1e4 and tiny ones, probabilities at exactly 0, 1, one f32 ulp from them and
at 1e-30 ... 1e-3, temperatures down to 1e-3, variances and log-variances
across their ranges, very negative log-probabilities. All inputs are rounded
through float32 first, so they are exactly representable in f32.

Each case is a normal conformance case (../conformance/README.md) with
`expected` from the float64 reference, plus

    "pytorch_f32_error": {"output": e, "grads": {"name": e, ...}}

PyTorch's own float32 error on the same inputs: the same reference code run
in float32 (PyTorch's own F.* loss where LOSSES.md names one, else the
LOSSES.md formula written with PyTorch primitives in its numerically careful
form), measured against the float64 reference with `norm_error` below. The
runner holds lossgraph's f32 result to max(K * that, FLOOR) and its f64 result
to 1e-9 with the same metric (see README.md).

References are PyTorch float64, except where PyTorch's own float64 result is
not accurate enough at these magnitudes (its error would exceed the f64
bound): log_cosh, gaussian_kl and kl_logits take their expected values from
mpmath at 60 digits (formulas of LOSSES.md), each checked against PyTorch's
float64 result at a loose tolerance first.

Run from this folder: /tmp/tvenv/bin/python generate.py [--check]
(--check also reruns every reference on the vendored ../conformance cases and
reports how many reproduce their stored outputs and gradients.)
"""
import json
import math
import sys

import mpmath
import numpy as np
import torch
import torch.nn.functional as F

D = torch.float64
S = torch.float32
GEN = f"PyTorch {torch.__version__} (tests/magnitudes/generate.py)"
F32_MIN_POSITIVE = float(np.finfo(np.float32).tiny)  # 2^-126
ULP0 = float(np.nextafter(np.float32(0), np.float32(1)))  # 2^-149, subnormal
ULP1 = float(np.nextafter(np.float32(1), np.float32(0)))  # 1 - 2^-24
SCALES = [1e-30, 1e-10, 1e-3, 1.0, 1e3, 1e10, 1e30]
LOGIT_SCALES = [1e-30, 1e-3, 1.0, 30.0, 1e3, 1e4]
GEN_SEED = 2025


# ---------------------------------------------------------------- the metric

def norm_error(x, r, dtype="f32"):
    """Norm-wise relative error of result `x` against the f64 reference `r`.

    rr = r rounded to the run's dtype (f32: overflow -> +-inf, underflow -> 0;
    f64: r itself). An element with x == rr exactly (matching infinities and
    0 = 0 included) contributes 0; a NaN, or an infinity where rr is finite,
    contributes +inf; any other contributes |x - r| / scale, scale = the
    largest |r| over the elements whose rr is finite (f32::MIN_POSITIVE when
    that is 0). The tensor's error is the largest contribution (0 if empty).
    Same definition as `norm_error` in src/conformance.rs.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    r = np.asarray(r, dtype=np.float64).reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        rr = r.astype(np.float32).astype(np.float64) if dtype == "f32" else r
    fin = np.isfinite(rr)
    scale = float(np.max(np.abs(r[fin]))) if fin.any() else 0.0
    if scale == 0.0:
        scale = F32_MIN_POSITIVE
    worst = 0.0
    for xi, ri, rri in zip(x, r, rr):
        if xi == rri:
            continue
        if math.isnan(xi) or (math.isinf(xi) and math.isfinite(rri)):
            return math.inf
        e = abs(xi - ri) / scale
        worst = max(worst, e if not math.isnan(e) else math.inf)
    return worst


# ---------------------------------------------------------------- helpers

def f32(x):
    """float64 tensor of `x` rounded through float32."""
    return torch.as_tensor(x, dtype=D).to(S).to(D)


def enc(x, integer=False):
    data = x.detach().reshape(-1).tolist()
    if integer:
        return {"shape": list(x.shape), "dtype": "i64", "data": [int(v) for v in data]}
    return {"shape": list(x.shape), "data": [v if math.isfinite(v) else str(v) for v in data]}


def num(e):
    return e if math.isfinite(e) else "inf"


def reduce(x, reduction):
    return {"none": x, "sum": x.sum(), "mean": x.mean()}[reduction]


def where_pos(x):
    """max(0, x) with the subgradient 0 at x = 0 (no PyTorch twin)."""
    return torch.where(x > 0, x, torch.zeros_like(x))


class Rng:
    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def normal(self, *shape):
        return torch.randn(*shape, generator=self.g, dtype=D)

    def uniform(self, lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=self.g, dtype=D)

    def ids(self, c, *shape):
        return torch.randint(0, c, shape, generator=self.g)

    def signs(self, *shape):
        return torch.randint(0, 2, shape, generator=self.g).to(D) * 2 - 1

    def binary(self, *shape):
        return torch.randint(0, 2, shape, generator=self.g).to(D)


def span(n, rng, lo=-30, hi=30):
    """n values whose magnitudes run over 10^lo ... 10^hi, random signs."""
    mags = torch.logspace(lo, hi, n, dtype=D)
    return f32(mags * rng.signs(n) * rng.uniform(0.5, 1.5, n))


def cotangent(shape):
    n = int(np.prod(shape)) if len(shape) else 1
    return torch.tensor([0.75 + 0.25 * (i % 3) for i in range(n)], dtype=D).reshape(shape)


def run_ref(ref, inputs, options, grads, dtype, grad_output):
    """Run `ref(x, o)` in `dtype`; returns (output, {name: grad}) as float64."""
    x = {}
    for k, v in inputs.items():
        if v.is_floating_point():
            v = v.to(dtype)
            if k in grads:
                v = v.clone().requires_grad_(True)
        x[k] = v
    o = {k: (v.to(dtype) if torch.is_tensor(v) else v) for k, v in options.items()}
    out = ref(x, o)
    if grads:
        out.backward(grad_output.to(dtype))
    return out.detach().to(D), {k: x[k].grad.to(D) for k in grads}


# ---------------------------------------------------------------- references

def r_mse(x, o):
    return F.mse_loss(x["pred"], x["target"], reduction=o.get("reduction", "mean"))


def r_mae(x, o):
    return F.l1_loss(x["pred"], x["target"], reduction=o.get("reduction", "mean"))


def r_huber(x, o):
    return F.huber_loss(x["pred"], x["target"], delta=o.get("delta", 1.0), reduction=o.get("reduction", "mean"))


def r_smooth_l1(x, o):
    return F.smooth_l1_loss(x["pred"], x["target"], beta=o.get("beta", 1.0), reduction=o.get("reduction", "mean"))


def r_log_cosh(x, o):
    a = (x["pred"] - x["target"]).abs()
    return reduce(a + torch.log1p(torch.exp(-2 * a)) - math.log(2.0), o.get("reduction", "mean"))


def r_quantile(x, o):
    pred, target = x["pred"], x["target"]
    if "taus" in o:
        tau = torch.tensor(o["taus"], dtype=pred.dtype)
        target = target[:, None]
    else:
        tau = o.get("tau", 0.5)
    u = target - pred
    return reduce(torch.maximum(tau * u, (tau - 1) * u), o.get("reduction", "mean"))


def r_gaussian_nll(x, o):
    return F.gaussian_nll_loss(x["pred"], x["target"], x["var"], full=o.get("full", False),
                               eps=o.get("eps", 1e-6), reduction=o.get("reduction", "mean"))


def r_poisson_nll(x, o):
    return F.poisson_nll_loss(x["pred"], x["target"], log_input=o.get("log_input", True),
                              full=o.get("full", False), eps=o.get("eps", 1e-8),
                              reduction=o.get("reduction", "mean"))


def r_bce(x, o):
    return F.binary_cross_entropy(x["probs"], x["target"], weight=o.get("weight"),
                                  reduction=o.get("reduction", "mean"))


def r_bce_with_logits(x, o):
    return F.binary_cross_entropy_with_logits(x["logits"], x["target"], weight=o.get("weight"),
                                              pos_weight=o.get("pos_weight"),
                                              reduction=o.get("reduction", "mean"))


def r_cross_entropy(x, o):
    """F.cross_entropy with the class axis moved last, and a mean over no
    items (all ignored) of 0 (LOSSES.md, where PyTorch gives NaN)."""
    z, y = x["logits"], x["target"]
    red, ig = o.get("reduction", "mean"), o.get("ignore_index", -100)
    if z.dim() > 2:
        z = z.movedim(-1, 1)
        y = y.movedim(-1, 1) if y.is_floating_point() else y
    if red == "mean" and not y.is_floating_point() and bool((y == ig).all()):
        return z.sum() * 0
    return F.cross_entropy(z, y, weight=o.get("weight"), ignore_index=ig,
                           label_smoothing=o.get("label_smoothing", 0.0), reduction=red)


def r_nll(x, o):
    return F.nll_loss(x["log_probs"], x["target"], weight=o.get("weight"),
                      ignore_index=o.get("ignore_index", -100), reduction=o.get("reduction", "mean"))


def r_hinge(x, o):
    return reduce(where_pos(o.get("margin", 1.0) - x["target"] * x["scores"]), o.get("reduction", "mean"))


def r_multi_margin(x, o):
    return F.multi_margin_loss(x["scores"], x["target"], p=o.get("p", 1), margin=o.get("margin", 1.0),
                               weight=o.get("weight"), reduction=o.get("reduction", "mean"))


def r_sigmoid_focal(x, o):
    """torchvision's sigmoid_focal_loss, with 1 - p_t formed without
    cancellation: 1 - p_t = sigma(-z) y + sigma(z) (1 - y)."""
    z, y = x["logits"], x["target"]
    alpha, gamma = o.get("alpha", 0.25), o.get("gamma", 2.0)
    ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    one_minus_pt = torch.sigmoid(-z) * y + torch.sigmoid(z) * (1 - y)
    loss = ce * one_minus_pt ** gamma
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return reduce(loss, o.get("reduction", "mean"))


def r_sigmoid_focal_torchvision(x, o):
    """torchvision.ops.sigmoid_focal_loss verbatim (used by --check only)."""
    z, y = x["logits"], x["target"]
    alpha, gamma = o.get("alpha", 0.25), o.get("gamma", 2.0)
    p = torch.sigmoid(z)
    ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return reduce(loss, o.get("reduction", "mean"))


def masked_item_mean(loss, keep, reduction):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    n = keep.sum()
    return loss.sum() / n if n > 0 else loss.sum() * 0


def r_softmax_focal(x, o):
    z, y = x["logits"], x["target"]
    ig = o.get("ignore_index", -100)
    keep = y != ig
    ys = torch.where(keep, y, torch.zeros_like(y))
    lp = F.log_softmax(z, -1).gather(-1, ys[..., None])[..., 0]
    loss = -(-torch.expm1(lp)) ** o.get("gamma", 2.0) * lp
    if o.get("alpha") is not None:
        loss = o["alpha"][ys] * loss
    loss = torch.where(keep, loss, torch.zeros_like(loss))
    return masked_item_mean(loss, keep, o.get("reduction", "mean"))


def r_brier(x, o):
    z, y = x["logits"], x["target"]
    p = F.softmax(z, -1)
    loss = ((p - F.one_hot(y, z.shape[-1]).to(z.dtype)) ** 2).sum(-1)
    return reduce(loss, o.get("reduction", "mean"))


def r_kl_div(x, o):
    return F.kl_div(x["input"], x["target"], reduction=o.get("reduction", "mean"),
                    log_target=o.get("log_target", False))


def r_kl_logits(x, o):
    t = o.get("temperature", 1.0)
    kl = F.kl_div(F.log_softmax(x["student"] / t, -1), F.log_softmax(x["teacher"] / t, -1),
                  reduction="none", log_target=True).sum(-1) * t * t
    return reduce(kl, o.get("reduction", "mean"))


def r_gaussian_kl(x, o):
    mu, lv = x["mu"], x["logvar"]
    return reduce(0.5 * (mu * mu + (torch.expm1(lv) - lv)).sum(-1), o.get("reduction", "mean"))


def r_contrastive(x, o):
    s, diff = x["similar"], x["u"] - x["v"]
    d = torch.linalg.vector_norm(diff, dim=1)
    loss = s * (diff * diff).sum(1) + (1 - s) * where_pos(o.get("margin", 1.0) - d) ** 2
    return reduce(loss, o.get("reduction", "mean"))


def r_triplet(x, o):
    a, p, n = x["anchor"], x["positive"], x["negative"]
    m, red = o.get("margin", 1.0), o.get("reduction", "mean")
    if o.get("squared", True):
        dp, dn = ((a - p) ** 2).sum(1), ((a - n) ** 2).sum(1)
        return reduce(where_pos(dp - dn + m), red)
    return F.triplet_margin_loss(a, p, n, margin=m, p=2, eps=1e-6, swap=False, reduction=red)


def r_info_nce(x, o):
    q, k = x["query"], x["key"]
    if o.get("normalize", True):
        q, k = F.normalize(q, dim=1, eps=1e-12), F.normalize(k, dim=1, eps=1e-12)
    s = q @ k.T / o.get("temperature", 0.1)
    lab = torch.arange(q.shape[0])
    loss = F.cross_entropy(s, lab, reduction="none")
    if o.get("symmetric", False):
        loss = 0.5 * (loss + F.cross_entropy(s.T, lab, reduction="none"))
    return reduce(loss, o.get("reduction", "mean"))


def r_margin_ranking(x, o):
    return F.margin_ranking_loss(x["a"], x["b"], x["target"], margin=o.get("margin", 0.0),
                                 reduction=o.get("reduction", "mean"))


def r_bradley_terry(x, o):
    return reduce(-F.logsigmoid(x["chosen"] - x["rejected"] - o.get("margin", 0.0)), o.get("reduction", "mean"))


def r_dpo(x, o):
    h = (x["policy_chosen"] - x["ref_chosen"]) - (x["policy_rejected"] - x["ref_rejected"])
    beta, eps, var = o.get("beta", 0.1), o.get("label_smoothing", 0.0), o.get("variant", "sigmoid")
    if var == "sigmoid":
        loss = -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    elif var == "hinge":
        loss = where_pos(1 - beta * h)
    else:
        loss = (h - 1 / (2 * beta)) ** 2
    return reduce(loss, o.get("reduction", "mean"))


def r_masked_mean(x, o):
    v, m, eps = x["values"], x["mask"], o.get("eps", 0.0)
    if not o.get("per_row", False):
        den = m.sum() + eps
        return (m * v).sum() / den if den > 0 else (m * v).sum() * 0
    den = m.sum(-1) + eps
    rows = (m * v).sum(-1) / torch.where(den > 0, den, torch.ones_like(den))
    valid = m.sum(-1) > 0
    nv = valid.sum()
    return torch.where(valid, rows, torch.zeros_like(rows)).sum() / nv if nv > 0 else rows.sum() * 0


def r_weighted_mean(x, o):
    v, w = x["values"], x["weights"]
    return (w * v).sum() / (w.sum() + o.get("eps", 0.0))


def r_linear_cross_entropy(x, o):
    z = x["hidden"] @ x["weight"].T
    if "bias" in x:
        z = z + x["bias"]
    return F.cross_entropy(z, x["target"], ignore_index=o.get("ignore_index", -100),
                           label_smoothing=o.get("label_smoothing", 0.0),
                           reduction=o.get("reduction", "mean"))


REFS = {name[2:]: fn for name, fn in globals().items() if name.startswith("r_") and callable(fn)}
REFS.pop("sigmoid_focal_torchvision")


# ---------------------------------------------------------------- mpmath references

# 200 digits: a loss of 1e-60 formed from log-probabilities of size 1 (kl_logits
# at logits of 1e-30) or log cosh(1e-30) = 1 + 5e-61 needs well over 80
mpmath.mp.dps = 200


def mp_reduce(losses, shape, red):
    """Reduce a flat list of mpf losses; `shape` is the unreduced shape."""
    if red == "none":
        return [float(v) for v in losses], list(shape)
    s = mpmath.fsum(losses)
    return [float(s / len(losses) if red == "mean" else s)], []


def mp_upstream(g, red, n):
    """Per-item cotangent (mpf) of the unreduced loss."""
    if red == "none":
        return [mpmath.mpf(float(v)) for v in g.reshape(-1)]
    u = mpmath.mpf(float(g))
    return [u / n if red == "mean" else u] * n


def mp_log_cosh(inputs, o, g):
    r = [mpmath.mpf(float(a)) - mpmath.mpf(float(b)) for a, b in zip(inputs["pred"].reshape(-1), inputs["target"].reshape(-1))]
    red = o.get("reduction", "mean")
    out, shape = mp_reduce([mpmath.log(mpmath.cosh(v)) for v in r], inputs["pred"].shape, red)
    u = mp_upstream(g, red, len(r))
    dp = [ui * mpmath.tanh(v) for ui, v in zip(u, r)]
    t = lambda xs, sh: torch.tensor([float(v) for v in xs], dtype=D).reshape(sh)
    return t(out, shape), {"pred": t(dp, inputs["pred"].shape), "target": t([-v for v in dp], inputs["pred"].shape)}


def mp_gaussian_kl(inputs, o, g):
    mu, lv = inputs["mu"], inputs["logvar"]
    rows, d = mu.reshape(-1, mu.shape[-1]).shape
    red = o.get("reduction", "mean")
    m = [[mpmath.mpf(float(v)) for v in row] for row in mu.reshape(rows, d)]
    l = [[mpmath.mpf(float(v)) for v in row] for row in lv.reshape(rows, d)]
    losses = [mpmath.fsum(mi * mi + mpmath.expm1(li) - li for mi, li in zip(mr, lr)) / 2 for mr, lr in zip(m, l)]
    out, shape = mp_reduce(losses, mu.shape[:-1], red)
    u = mp_upstream(g, red, rows)
    dmu = [ui * mi for ui, mr in zip(u, m) for mi in mr]
    dlv = [ui * mpmath.expm1(li) / 2 for ui, lr in zip(u, l) for li in lr]
    t = lambda xs, sh: torch.tensor([float(v) for v in xs], dtype=D).reshape(sh)
    return t(out, shape), {"mu": t(dmu, mu.shape), "logvar": t(dlv, mu.shape)}


def mp_kl_logits(inputs, o, g):
    """Per row q = softmax(t/T), p = softmax(s/T), loss T^2 KL(q||p); with
    upstream u, d/ds = u T (p - q), d/dt = u T q (log q - log p - KL)."""
    s, te = inputs["student"], inputs["teacher"]
    c = s.shape[-1]
    s2, t2 = s.reshape(-1, c), te.reshape(-1, c)
    rows = s2.shape[0]
    T = mpmath.mpf(o.get("temperature", 1.0))
    red = o.get("reduction", "mean")
    u = mp_upstream(g, red, rows)
    losses, ds, dt = [], [], []
    for r in range(rows):
        a = [mpmath.mpf(float(v)) / T for v in t2[r]]
        b = [mpmath.mpf(float(v)) / T for v in s2[r]]
        lq = [v - mpmath.log(mpmath.fsum(mpmath.exp(w) for w in a)) for v in a]
        lp = [v - mpmath.log(mpmath.fsum(mpmath.exp(w) for w in b)) for v in b]
        q, p = [mpmath.exp(v) for v in lq], [mpmath.exp(v) for v in lp]
        kl = mpmath.fsum(qi * (x - y) for qi, x, y in zip(q, lq, lp))
        losses.append(T * T * kl)
        ds += [u[r] * T * (pi - qi) for pi, qi in zip(p, q)]
        dt += [u[r] * T * qi * (x - y - kl) for qi, x, y in zip(q, lq, lp)]
    out, shape = mp_reduce(losses, s.shape[:-1], red)
    t = lambda xs, sh: torch.tensor([float(v) for v in xs], dtype=D).reshape(sh)
    return t(out, shape), {"student": t(ds, s.shape), "teacher": t(dt, s.shape)}


def mp_brier(inputs, o, g):
    """Per row p = softmax(z), loss sum_c (p_c - onehot_c)^2; with upstream u,
    d/dz_j = u p_j (g_j - sum_c g_c p_c), g = 2 (p - onehot)."""
    z, y = inputs["logits"], inputs["target"]
    c = z.shape[-1]
    z2, y2 = z.reshape(-1, c), y.reshape(-1)
    rows = z2.shape[0]
    red = o.get("reduction", "mean")
    u = mp_upstream(g, red, rows)
    losses, dz = [], []
    for r in range(rows):
        a = [mpmath.mpf(float(v)) for v in z2[r]]
        m = max(a)
        s = mpmath.fsum(mpmath.exp(v - m) for v in a)
        p = [mpmath.exp(v - m) / s for v in a]
        e = [1 if j == int(y2[r]) else 0 for j in range(c)]
        gg = [2 * (pj - ej) for pj, ej in zip(p, e)]
        gp = mpmath.fsum(gj * pj for gj, pj in zip(gg, p))
        losses.append(mpmath.fsum((pj - ej) ** 2 for pj, ej in zip(p, e)))
        dz += [u[r] * pj * (gj - gp) for pj, gj in zip(p, gg)]
    out, shape = mp_reduce(losses, z.shape[:-1], red)
    t = lambda xs, sh: torch.tensor([float(v) for v in xs], dtype=D).reshape(sh)
    return t(out, shape), {"logits": t(dz, z.shape)}


MP_REFS = {"brier": mp_brier, "log_cosh": mp_log_cosh, "gaussian_kl": mp_gaussian_kl, "kl_logits": mp_kl_logits}


# ---------------------------------------------------------------- f32_strict ops

def mp_rows(x):
    return [[mpmath.mpf(float(v)) for v in row] for row in x.reshape(-1, x.shape[-1])]


def mp_loss_contrastive(x, o):
    m = mpmath.mpf(o.get("margin", 1.0))
    out = []
    for u, v, s in zip(mp_rows(x["u"]), mp_rows(x["v"]), x["similar"].reshape(-1).tolist()):
        d = mpmath.sqrt(mpmath.fsum((a - b) ** 2 for a, b in zip(u, v)))
        out.append(s * d * d + (1 - s) * max(m - d, 0) ** 2)
    return out, x["similar"].shape


def mp_loss_triplet(x, o):
    m, sq, e = mpmath.mpf(o.get("margin", 1.0)), o.get("squared", True), mpmath.mpf(1e-6)
    out = []
    for a, p, n in zip(mp_rows(x["anchor"]), mp_rows(x["positive"]), mp_rows(x["negative"])):
        if sq:
            dp = mpmath.fsum((i - j) ** 2 for i, j in zip(a, p))
            dn = mpmath.fsum((i - j) ** 2 for i, j in zip(a, n))
        else:
            dp = mpmath.sqrt(mpmath.fsum((i - j + e) ** 2 for i, j in zip(a, p)))
            dn = mpmath.sqrt(mpmath.fsum((i - j + e) ** 2 for i, j in zip(a, n)))
        out.append(max(dp - dn + m, 0))
    return out, x["anchor"].shape[:-1]


def mp_loss_info_nce(x, o):
    q, k = mp_rows(x["query"]), mp_rows(x["key"])
    if o.get("normalize", True):
        unit = lambda r: [v / max(mpmath.sqrt(mpmath.fsum(w * w for w in r)), mpmath.mpf(1e-12)) for v in r]
        q, k = [unit(r) for r in q], [unit(r) for r in k]
    t = mpmath.mpf(o.get("temperature", 0.1))
    n = len(q)
    S = [[mpmath.fsum(a * b for a, b in zip(qi, kj)) / t for kj in k] for qi in q]
    lse = lambda xs: mpmath.log(mpmath.fsum(mpmath.exp(v) for v in xs))
    out = [lse(S[i]) - S[i][i] for i in range(n)]
    if o.get("symmetric", False):
        out = [(out[i] + lse([S[j][i] for j in range(n)]) - S[i][i]) / 2 for i in range(n)]
    return out, (n,)


def mp_loss_weighted_mean(x, o):
    v = [mpmath.mpf(float(a)) for a in x["values"].reshape(-1)]
    w = [mpmath.mpf(float(a)) for a in x["weights"].reshape(-1)]
    return [mpmath.fsum(a * b for a, b in zip(w, v)) / (mpmath.fsum(w) + mpmath.mpf(o.get("eps", 0.0)))], None


# Ops whose magnitude cases carry "f32_strict": true (the runner then holds
# lossgraph's f32 result to FLOOR, not to K x PyTorch's error): at 1e30 (and
# where w*l overflows) PyTorch's f32 overflows to NaN/inf or loses the value
# (error 1 or inf) although the true value is finite, so its error would
# excuse the same defect in ours. Their f64 references (PyTorch float64,
# exact enough there: nothing overflows in f64) are checked against these
# 200-digit mpmath losses: output within 1e-12 norm-wise.
MP_STRICT_LOSSES = {"contrastive": mp_loss_contrastive, "triplet": mp_loss_triplet,
                    "info_nce": mp_loss_info_nce, "weighted_mean": mp_loss_weighted_mean}


# ---------------------------------------------------------------- cases

def make_case(op, cid, inputs, options=None, grads=None, ints=(), label=()):
    """One case: inputs (float64 tensors exact in f32, or int64), options
    (tensor options as float64 tensors), gradients of `grads` (default: every
    real input not in `label`)."""
    # numeric options are rounded through f32 too (a temperature of 1e-3 is
    # not an f32: the f32 run would otherwise divide by another number)
    options = {k: (f32(v).item() if isinstance(v, float) else
                   [f32(x).item() for x in v] if isinstance(v, list) else v)
               for k, v in (options or {}).items()}
    for k, v in inputs.items():
        if v.is_floating_point():
            assert torch.equal(v, f32(v)), (op, cid, k, "input not exact in f32")
    for k, v in options.items():
        if torch.is_tensor(v):
            assert torch.equal(v, f32(v)), (op, cid, k, "option not exact in f32")
    if grads is None:
        grads = [k for k, v in inputs.items() if v.is_floating_point() and k not in label]
    ref = REFS[op]
    with torch.no_grad():
        probe = ref({k: v for k, v in inputs.items()}, options)
    g = cotangent(tuple(probe.shape)) if probe.dim() else torch.tensor(1.25, dtype=D)
    out64, g64 = run_ref(ref, inputs, options, grads, D, g)
    if op in MP_REFS:
        mp_out, mp_g = MP_REFS[op](inputs, options, g)
        # PyTorch's float64 must agree with the 60-digit value to its own
        # rounding, loosely (its absolute error is what is not good enough)
        for a, b in [(out64, mp_out)] + [(g64[k], mp_g[k]) for k in grads]:
            tol = 1e-6 * max(1.0, float(b.abs().max()))
            assert float((a - b).abs().max()) <= tol, (op, cid, a, b)
        out64, g64 = mp_out, {k: mp_g[k] for k in grads}
    for k, v in [("output", out64)] + list(g64.items()):
        assert torch.isfinite(v).all(), (op, cid, k, "reference not finite in f64", v)
    if op in MP_STRICT_LOSSES:
        losses, shape = MP_STRICT_LOSSES[op](inputs, options)
        red = options.get("reduction", "mean") if op != "weighted_mean" else "sum"
        vals, _ = mp_reduce(losses, shape, red)
        e = norm_error(np.array(vals), out64.numpy().reshape(-1), "f64")
        assert e <= 1e-12, (op, cid, "f64 reference off the 200-digit value", e)
    out32, g32 = run_ref(ref, inputs, options, grads, S, g)
    err = {"output": norm_error(out32.numpy(), out64.numpy()),
           "grads": {k: norm_error(g32[k].numpy(), g64[k].numpy()) for k in grads}}
    ints = set(ints) | {k for k, v in inputs.items() if not v.is_floating_point()}
    case = {
        "id": f"{op}/mag_{cid}",
        "op": op,
        "options": {k: (enc(v) if torch.is_tensor(v) else v) for k, v in options.items()},
        "inputs": {k: enc(v, k in ints) for k, v in inputs.items()},
        "grad_output": enc(g),
        "expected": {"output": enc(out64), "grads": {k: enc(v) for k, v in g64.items()}},
        "dtypes": ["f64", "f32"],
        "pytorch_f32_error": {"output": num(err["output"]),
                              "grads": {k: num(v) for k, v in err["grads"].items()}},
    }
    if op in MP_STRICT_LOSSES:
        case["f32_strict"] = True
    return case


def sname(s):
    return f"{s:.0e}".replace("+", "").replace("e0", "e").replace("e-0", "e-") if s != 1.0 else "1"


def regression_cases(op, rng, extra=()):
    """pred/target at each scale (residuals of that size) in mean and none, a
    sum case at the extremes, and one spanning all magnitudes at once."""
    out = []
    for s in SCALES:
        for red in ["mean", "none"]:
            pred, target = f32(s * rng.normal(12)), f32(s * rng.normal(12))
            out.append(make_case(op, f"{sname(s)}_{red}", {"pred": pred, "target": target}, {"reduction": red}))
    for s in [1e-30, 1e30]:
        out.append(make_case(op, f"{sname(s)}_sum", {"pred": f32(s * rng.normal(3, 4)),
                                                      "target": f32(s * rng.normal(3, 4))}, {"reduction": "sum"}))
    for red in ["none", "mean"]:
        out.append(make_case(op, f"span_{red}", {"pred": span(16, rng), "target": f32(torch.zeros(16, dtype=D))},
                             {"reduction": red}))
        out.append(make_case(op, f"span_offset_{red}", {"pred": span(16, rng), "target": span(16, rng)},
                             {"reduction": red}))
    for cid, opts, s in extra:
        pred, target = f32(s * rng.normal(12)), f32(s * rng.normal(12))
        out.append(make_case(op, cid, {"pred": pred, "target": target}, opts))
    return out


def all_cases():
    rng = Rng(GEN_SEED)
    C = {}
    C["mse"] = regression_cases("mse", rng)
    C["mae"] = regression_cases("mae", rng)
    C["huber"] = regression_cases("huber", rng, [
        (f"delta{sname(d)}_{sname(s)}_none", {"delta": d, "reduction": "none"}, s)
        for d, s in [(1e-3, 1e-3), (1e3, 1e3), (1e10, 1e10), (1e-10, 1e-10)]])
    C["smooth_l1"] = regression_cases("smooth_l1", rng, [
        (f"beta{sname(b)}_{sname(s)}_none", {"beta": b, "reduction": "none"}, s)
        for b, s in [(1e-3, 1e-3), (1e3, 1e3), (1e10, 1e10), (0.0, 1e-30), (0.0, 1e30)]])
    C["log_cosh"] = regression_cases("log_cosh", rng)
    q = regression_cases("quantile", rng, [
        (f"tau{t}_{sname(s)}_none", {"tau": t, "reduction": "none"}, s)
        for t, s in [(0.1, 1e-30), (0.9, 1e30), (0.001, 1e10), (0.999, 1e-10)]])
    for s in [1e-30, 1.0, 1e30]:
        q.append(make_case("quantile", f"taus_{sname(s)}_none",
                           {"pred": f32(s * rng.normal(5, 3)), "target": f32(s * rng.normal(5))},
                           {"taus": [0.125, 0.5, 0.875], "reduction": "none"}))
    C["quantile"] = q

    # gaussian_nll: variances over magnitudes (below eps = 1e-6 the clamp
    # acts), residuals of the variance's own size and far from it
    g = []
    for sv in SCALES:
        for sr, tag in [(math.sqrt(sv), "rsd"), (1.0, "r1")]:
            for red in (["mean", "none"] if tag == "rsd" else ["none"]):
                pred, target = f32(sr * rng.normal(10)), f32(sr * rng.normal(10))
                var = f32(sv * rng.uniform(0.25, 4.0, 10))
                g.append(make_case("gaussian_nll", f"var{sname(sv)}_{tag}_{red}",
                                   {"pred": pred, "target": target, "var": var}, {"reduction": red}))
    for full in [True]:
        g.append(make_case("gaussian_nll", "var_span_full_none",
                           {"pred": f32(rng.normal(12)), "target": f32(rng.normal(12)),
                            "var": f32(torch.logspace(-30, 30, 12, dtype=D))},
                           {"full": full, "reduction": "none"}))
    g.append(make_case("gaussian_nll", "var_span_eps1e-30_none",
                       {"pred": f32(1e-15 * rng.normal(12)), "target": f32(1e-15 * rng.normal(12)),
                        "var": f32(torch.logspace(-30, 30, 12, dtype=D))},
                       {"eps": 1e-30, "reduction": "none"}))
    C["gaussian_nll"] = g

    # poisson_nll: log-rates up to +-80 (e^80 is finite in f32) and beyond
    # (e^100 is not), rates 1e-30 ... 1e30, counts up to 1e30
    p = []
    # PyTorch's target gradient under `full` is NaN at a count of 0 (the
    # masked Stirling term's log 0), so those cases check the pred gradient
    pgrads = lambda full: ["pred"] if full else None
    counts = f32(torch.tensor([0, 1, 2, 3, 7, 1e3, 1e10, 1e30, 0, 5, 40, 1e6], dtype=D))
    for s in [1e-30, 1e-3, 1.0, 10.0, 80.0, 100.0]:
        for full in [False, True]:
            p.append(make_case("poisson_nll", f"log_{sname(s)}_full{full}_none",
                               {"pred": f32(s * rng.uniform(-1, 1, 12)), "target": counts},
                               {"full": full, "reduction": "none"}, grads=pgrads(full)))
    p.append(make_case("poisson_nll", "log_80_mean", {"pred": f32(80 * rng.uniform(-1, 1, 12)), "target": counts},
                       {"reduction": "mean"}))
    for s in SCALES:
        for full in [False, True]:
            p.append(make_case("poisson_nll", f"rate_{sname(s)}_full{full}_none",
                               {"pred": f32(s * rng.uniform(0.1, 2.0, 12)), "target": counts},
                               {"log_input": False, "full": full, "reduction": "none"}, grads=pgrads(full)))
    p.append(make_case("poisson_nll", "rate_span_mean", {"pred": f32(torch.logspace(-30, 30, 12, dtype=D)),
                                                         "target": counts},
                       {"log_input": False, "reduction": "mean"}))
    C["poisson_nll"] = p

    # bce: probabilities exactly 0 and 1, one f32 ulp from them, and tiny
    edge = [0.0, 1.0, ULP0, ULP1, 0.5, 0.25]
    b = []
    yb = f32(torch.tensor([0, 1, 0.5, 0.25, 0.75, 1] * 2, dtype=D))
    for red in ["none", "mean"]:
        b.append(make_case("bce", f"edges_{red}",
                           {"probs": f32(torch.tensor(edge + edge[::-1], dtype=D)),
                            "target": f32(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5], dtype=D))},
                           {"reduction": red}, grads=["probs"]))
    b.append(make_case("bce", "edges_weight_none",
                       {"probs": f32(torch.tensor(edge + edge[::-1], dtype=D)), "target": yb},
                       {"reduction": "none", "weight": f32(rng.uniform(0.1, 3.0, 12))}, grads=["probs"]))
    for s in [1e-30, 1e-10, 1e-3]:
        for red in ["none", "mean"]:
            pr = f32(s * rng.uniform(0.5, 2.0, 12))
            pr = torch.cat([pr[:6], f32(1 - pr[6:])])  # tiny and one minus tiny (as f32 can)
            # 1 - 1e-10 rounds to 1 in f32: PyTorch's target gradient there is
            # the unclamped log 0 = -inf, so such cases check probs only
            at01 = bool(((pr == 0) | (pr == 1)).any())
            b.append(make_case("bce", f"p{sname(s)}_{red}", {"probs": pr, "target": yb}, {"reduction": red},
                               grads=["probs"] if at01 else None))
    C["bce"] = b

    # logits over magnitudes up to +-1e4
    def logit_sweep(op, extra_opts=(), alpha_gamma=False, **kw):
        out = []
        for s in LOGIT_SCALES:
            for red in ["mean", "none"]:
                z = f32(s * rng.uniform(-1, 1, 12))
                y = f32(torch.tensor([0, 1, 0.5, 0.25, 1, 0] * 2, dtype=D))
                out.append(make_case(op, f"z{sname(s)}_{red}", {"logits": z, "target": y}, {"reduction": red}))
        z = f32(torch.tensor([1e4, -1e4, 1e4, -1e4, 88.0, -88.0, 104.0, -104.0, 1e-30, -1e-30, 17.0, -17.0], dtype=D))
        y = f32(torch.tensor([1, 1, 0, 0, 1, 0, 0, 1, 1, 0, 1, 1], dtype=D))
        for cid, opts in [("edges_none", {"reduction": "none"})] + list(extra_opts):
            out.append(make_case(op, cid, {"logits": z, "target": y}, opts))
        return out

    C["bce_with_logits"] = logit_sweep("bce_with_logits", [
        ("edges_pw_w_none", {"reduction": "none", "weight": f32(rng.uniform(0.1, 3.0, 12)),
                             "pos_weight": f32(rng.uniform(0.1, 3.0, 12))}),
        ("edges_pw_mean", {"reduction": "mean", "pos_weight": f32(rng.uniform(0.1, 3.0, 12))})])
    C["sigmoid_focal"] = logit_sweep("sigmoid_focal", [
        ("edges_a-1_g0_none", {"reduction": "none", "alpha": -1.0, "gamma": 0.0}),
        ("edges_a0.5_g1.5_none", {"reduction": "none", "alpha": 0.5, "gamma": 1.5}),
        ("edges_a0.25_g5_mean", {"reduction": "mean", "alpha": 0.25, "gamma": 5.0})])

    # multiclass: logits [N, C] over magnitudes, random class ids
    def mc_sweep(op, option_sets, n=4, c=5, name="logits"):
        out = []
        for s in LOGIT_SCALES:
            for red in ["mean", "none"]:
                z, y = f32(s * rng.uniform(-1, 1, n, c)), rng.ids(c, n)
                out.append(make_case(op, f"z{sname(s)}_{red}", {name: z, "target": y}, {"reduction": red}))
        # a row with logits 1e4 apart, one with a near tie at 1e4, one tiny
        z = f32(torch.tensor([[1e4, -1e4, 0, 5e3, -5e3], [1e4, 1e4 - 1, 1e4 - 2, -1e4, 9999.5],
                              [1e-30, -1e-30, 0, 2e-30, 1e-3], [-1e4, 1e4, -1e4, 1e4, 0]], dtype=D))
        y = torch.tensor([0, 1, 2, 0])
        for cid, opts in option_sets:
            out.append(make_case(op, cid, {name: z, "target": y}, opts))
        return out

    w5 = f32(rng.uniform(0.1, 3.0, 5))
    ce = mc_sweep("cross_entropy", [
        ("edges_none", {"reduction": "none"}),
        ("edges_w_mean", {"reduction": "mean", "weight": w5}),
        ("edges_smooth_mean", {"reduction": "mean", "label_smoothing": 0.1}),
        ("edges_w_smooth_ignore_none", {"reduction": "none", "weight": w5, "label_smoothing": 0.2,
                                        "ignore_index": 1})])
    for s in [1e-3, 1.0, 1e4]:
        z = f32(s * rng.uniform(-1, 1, 4, 5))
        soft = f32(torch.tensor([[1, 0, 0, 0, 0], [ULP1, 0, 0, 0, 0], [0, ULP0, 0, 0.5, 0.5],
                                 [0.125, 0.25, 0.125, 0.25, 0.25]], dtype=D))
        ce.append(make_case("cross_entropy", f"soft_z{sname(s)}_none", {"logits": z, "target": soft},
                            {"reduction": "none"}))
    C["cross_entropy"] = ce
    C["softmax_focal"] = mc_sweep("softmax_focal", [
        ("edges_none", {"reduction": "none"}),
        ("edges_g0_alpha_mean", {"reduction": "mean", "gamma": 0.0, "alpha": w5}),
        ("edges_g1_ignore_none", {"reduction": "none", "gamma": 1.0, "ignore_index": 1})])
    C["brier"] = mc_sweep("brier", [("edges_none", {"reduction": "none"}), ("edges_sum", {"reduction": "sum"})])
    mm = []
    for s in SCALES:
        for red, pp in [("mean", 1), ("none", 2)]:
            z, y = f32(s * rng.normal(4, 5)), rng.ids(5, 4)
            mm.append(make_case("multi_margin", f"s{sname(s)}_p{pp}_{red}", {"scores": z, "target": y},
                                {"reduction": red, "p": pp}))
    for s in [1e-30, 1e30]:
        mm.append(make_case("multi_margin", f"s{sname(s)}_w_m{sname(s)}_none",
                            {"scores": f32(s * rng.normal(4, 5)), "target": rng.ids(5, 4)},
                            {"reduction": "none", "weight": w5, "margin": s}))
    C["multi_margin"] = mm

    # nll: log-probabilities from -1e-30 down to -1e30
    nl = []
    for s in SCALES:
        for red in ["mean", "none"]:
            lp = f32(-s * rng.uniform(0.1, 2.0, 4, 5))
            nl.append(make_case("nll", f"lp{sname(s)}_{red}", {"log_probs": lp, "target": rng.ids(5, 4)},
                                {"reduction": red}))
    nl.append(make_case("nll", "span_w_mean", {"log_probs": -span(20, rng).abs().reshape(4, 5),
                                               "target": rng.ids(5, 4)},
                        {"reduction": "mean", "weight": w5}))
    C["nll"] = nl

    # hinge / margin_ranking / bradley_terry / dpo: scores over magnitudes
    h = []
    for s in SCALES:
        for red in ["mean", "none"]:
            h.append(make_case("hinge", f"s{sname(s)}_{red}",
                               {"scores": f32(s * rng.normal(12)), "target": rng.signs(12)},
                               {"reduction": red}, label=["target"]))
    h.append(make_case("hinge", "s1e30_m1e30_none", {"scores": f32(1e30 * rng.normal(12)), "target": rng.signs(12)},
                       {"reduction": "none", "margin": 1e30}, label=["target"]))
    C["hinge"] = h
    mr = []
    for s in SCALES:
        for red, m in [("mean", 0.0), ("none", 0.5)]:
            mr.append(make_case("margin_ranking", f"s{sname(s)}_m{m}_{red}",
                                {"a": f32(s * rng.normal(10)), "b": f32(s * rng.normal(10)), "target": rng.signs(10)},
                                {"reduction": red, "margin": m}))
    C["margin_ranking"] = mr
    bt = []
    for s in [1e-30, 1e-10, 1e-3, 1.0, 30.0, 1e3, 1e4, 1e10, 1e30]:
        for red in ["mean", "none"]:
            bt.append(make_case("bradley_terry", f"s{sname(s)}_{red}",
                                {"chosen": f32(s * rng.normal(10)), "rejected": f32(s * rng.normal(10))},
                                {"reduction": red}))
    bt.append(make_case("bradley_terry", "s1e4_m1e4_none", {"chosen": f32(1e4 * rng.normal(10)),
                                                            "rejected": f32(1e4 * rng.normal(10))},
                        {"reduction": "none", "margin": 1e4}))
    C["bradley_terry"] = bt
    dp = []
    names4 = ["policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected"]
    for s in [1e-30, 1e-10, 1e-3, 1.0, 1e3, 1e4, 1e10, 1e30]:
        for var, red, beta in [("sigmoid", "mean", 0.1), ("sigmoid", "none", 0.1), ("hinge", "none", 0.1),
                               ("ipo", "none", 0.1)]:
            dp.append(make_case("dpo", f"lp{sname(s)}_{var}_{red}",
                                {k: f32(-s * rng.uniform(0.1, 2.0, 8)) for k in names4},
                                {"reduction": red, "variant": var, "beta": beta}))
    for s in [1e-3, 1e4]:
        dp.append(make_case("dpo", f"lp{sname(s)}_sigmoid_ls0.1_beta1e-3_none",
                            {k: f32(-s * rng.uniform(0.1, 2.0, 8)) for k in names4},
                            {"reduction": "none", "label_smoothing": 0.1, "beta": 1e-3}))
        dp.append(make_case("dpo", f"lp{sname(s)}_sigmoid_beta1e3_none",
                            {k: f32(-s * rng.uniform(0.1, 2.0, 8)) for k in names4},
                            {"reduction": "none", "beta": 1e3}))
    C["dpo"] = dp

    # kl_div: log-probabilities down to -1e30; targets at 0, 1, an ulp from
    # them. PyTorch's gradient for a target of exactly 0 is NaN (xlogy), so
    # cases with such targets check the input gradient only.
    kd = []
    for s in SCALES:
        for red in ["batchmean", "none"]:
            inp = f32(-s * rng.uniform(0.1, 2.0, 4, 5))
            tgt = f32(torch.softmax(rng.normal(4, 5), -1))
            kd.append(make_case("kl_div", f"in{sname(s)}_{red}", {"input": inp, "target": tgt}, {"reduction": red}))
    tedge = f32(torch.tensor([[0, 1, 0, 0, 0], [ULP0, ULP1, 0, 0, 0], [1e-30, 1e-10, 1e-3, 0.5, ULP1],
                              [0.2, 0.2, 0.2, 0.2, 0.2]], dtype=D))
    for s in [1e-30, 1.0, 1e4, 1e30]:
        inp = f32(-s * rng.uniform(0.1, 2.0, 4, 5))
        for red in ["none", "sum"]:
            kd.append(make_case("kl_div", f"in{sname(s)}_tedges_{red}", {"input": inp, "target": tedge},
                                {"reduction": red}, grads=["input"]))
    for s in [1e-3, 1.0, 30.0, 1e4]:
        kd.append(make_case("kl_div", f"log_target_t{sname(s)}_none",
                            {"input": f32(-s * rng.uniform(0.1, 2.0, 4, 5)),
                             "target": f32(-s * rng.uniform(0.1, 2.0, 4, 5))},
                            {"reduction": "none", "log_target": True}))
    C["kl_div"] = kd

    # kl_logits: logits up to +-1e4, temperatures down to 1e-3
    kl = []
    for s in LOGIT_SCALES:
        for temp in [1e-3, 1.0, 4.0]:
            red = "none" if temp != 1.0 else "mean"
            kl.append(make_case("kl_logits", f"z{sname(s)}_T{temp}_{red}",
                                {"student": f32(s * rng.uniform(-1, 1, 3, 5)),
                                 "teacher": f32(s * rng.uniform(-1, 1, 3, 5))},
                                {"temperature": temp, "reduction": red}))
    kl.append(make_case("kl_logits", "near_teacher_z1e4_T1e-3_none",
                        {"student": f32(torch.tensor([[1e4, 9999.0, 0, -1e4], [1e4, 1e4, -1e4, 5e3],
                                                      [1e-3, 0, -1e-3, 2e-3]], dtype=D)),
                         "teacher": f32(torch.tensor([[1e4, 9999.0, 1, -1e4], [1e4, 9999.5, -1e4, 5e3],
                                                      [2e-3, 0, -1e-3, 1e-3]], dtype=D))},
                        {"temperature": 1e-3, "reduction": "none"}))
    C["kl_logits"] = kl

    # gaussian_kl: mu over magnitudes, logvar from -1e30 to +80 (e^80 is
    # finite in f32, e^100 is not) and tiny
    gk = []
    for sm in SCALES:
        for red in ["mean", "none"]:
            sl = min(sm, 50.0)  # e^logvar must stay finite in f64
            gk.append(make_case("gaussian_kl", f"mu{sname(sm)}_lv{sname(sl)}_{red}",
                                {"mu": f32(sm * rng.normal(3, 4)), "logvar": f32(sl * rng.uniform(-1, 1, 3, 4))},
                                {"reduction": red}))
    for lv in [-1e30, -1e4, -30.0, 30.0, 80.0, 100.0]:
        gk.append(make_case("gaussian_kl", f"mu1_lv{sname(lv)}_none",
                            {"mu": f32(rng.normal(3, 4)), "logvar": f32(lv * rng.uniform(0.5, 1, 3, 4))},
                            {"reduction": "none"}))
    gk.append(make_case("gaussian_kl", "span_none", {"mu": span(12, rng).reshape(3, 4),
                                                     "logvar": span(12, rng, -30, 1.5).reshape(3, 4)},
                        {"reduction": "none"}))
    C["gaussian_kl"] = gk

    # embeddings over magnitudes
    ct = []
    for s in SCALES:
        for red in ["mean", "none"]:
            ct.append(make_case("contrastive", f"x{sname(s)}_m{sname(s)}_{red}",
                                {"u": f32(s * rng.normal(6, 4)), "v": f32(s * rng.normal(6, 4)),
                                 "similar": f32(torch.tensor([1, 0, 1, 0, 0, 0], dtype=D))},
                                {"reduction": red, "margin": 4 * s}, label=["similar"]))
    for s in [1e-30, 1e-3, 1e3, 1e30]:
        ct.append(make_case("contrastive", f"x{sname(s)}_m1_none",
                            {"u": f32(s * rng.normal(6, 4)), "v": f32(s * rng.normal(6, 4)),
                             "similar": f32(torch.tensor([1, 0, 1, 0, 0, 0], dtype=D))},
                            {"reduction": "none"}, label=["similar"]))
    C["contrastive"] = ct
    tr = []
    for s in SCALES:
        for sq, red in [(True, "none"), (False, "none"), (False, "mean")]:
            a = f32(s * rng.normal(6, 4))
            if not sq and s < 1e-3:
                # PyTorch's eps = 1e-6 inside each Euclidean norm makes every
                # distance 2e-6 + O(s): the loss (margin s) and the anchor
                # gradient are differences s/2e-6 below the distances. At
                # 1e-30 that is under f64's resolution (no f64 evaluation,
                # PyTorch's included, has a digit of them); at 1e-10 it costs
                # f32 four of its seven digits, and which of them survive
                # depends on the order of operations, not on care (PyTorch's
                # own f32 error there was 3e-5, ours 2e-4, another equally
                # valid order's in between). The squared form covers them.
                continue
            tr.append(make_case("triplet", f"x{sname(s)}_sq{sq}_{red}",
                                {"anchor": a, "positive": f32(a + s * rng.normal(6, 4)),
                                 "negative": f32(a + s * rng.normal(6, 4))},
                                {"reduction": red, "squared": sq,
                                 "margin": (min(max(s * s, 1e-30), 1e30) if sq else s)}))
    C["triplet"] = tr
    nce = []
    for s in SCALES:
        for temp, norm in [(0.1, True), (1e-3, True), (1.0, False)]:
            if not norm and s > 1e3:
                continue  # dot products of 1e10-size rows overflow f32 and f64 alike
            tq = 1.0 / (s * s) if not norm else temp
            if not norm and tq > 1e30:
                continue
            nce.append(make_case("info_nce", f"x{sname(s)}_T{sname(tq)}_norm{norm}_none",
                                 {"query": f32(s * rng.normal(5, 4)), "key": f32(s * rng.normal(5, 4))},
                                 {"reduction": "none", "temperature": f32(tq).item(), "normalize": norm}))
    for s in [1e-10, 1.0, 1e30]:
        nce.append(make_case("info_nce", f"x{sname(s)}_T1e-3_sym_mean",
                             {"query": f32(s * rng.normal(5, 4)), "key": f32(s * rng.normal(5, 4))},
                             {"reduction": "mean", "temperature": 1e-3, "symmetric": True}))
    C["info_nce"] = nce

    # reductions: values over magnitudes, weights over magnitudes
    mk = []
    for s in SCALES:
        for per_row in [False, True]:
            v = f32(s * rng.normal(3, 5))
            m = f32(torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 0, 1, 1]], dtype=D))
            mk.append(make_case("masked_mean", f"v{sname(s)}_rows{per_row}", {"values": v, "mask": m},
                                {"per_row": per_row}, label=["mask"]))
    mk.append(make_case("masked_mean", "span_eps1e-3", {"values": span(15, rng).reshape(3, 5),
                                                        "mask": rng.binary(3, 5)}, {"eps": 1e-3}, label=["mask"]))
    C["masked_mean"] = mk
    wm = []
    for s in SCALES:
        wm.append(make_case("weighted_mean", f"v{sname(s)}_w1", {"values": f32(s * rng.normal(12)),
                                                                 "weights": f32(rng.uniform(0, 2, 12))}))
        if s != 1.0:  # v1_w1 is the case above
            wm.append(make_case("weighted_mean", f"v1_w{sname(s)}", {"values": f32(rng.normal(12)),
                                                                     "weights": f32(s * rng.uniform(0, 2, 12))}))
    wm.append(make_case("weighted_mean", "v1e20_w1e20", {"values": f32(1e20 * rng.normal(12)),
                                                         "weights": f32(1e20 * rng.uniform(0, 2, 12))}))
    wm.append(make_case("weighted_mean", "v_span_w_span", {"values": span(12, rng),
                                                           "weights": span(12, rng).abs()}))
    C["weighted_mean"] = wm

    # linear_cross_entropy: hidden and weight scaled so logits reach 1e4
    lce = []
    for sh, sw in [(1e-30, 1.0), (1e-3, 1.0), (1.0, 1.0), (30.0, 1.0), (1e2, 1e2), (1.0, 1e4), (1e4, 1e-4)]:
        for red, opts in [("mean", {}), ("none", {"chunk": 3, "label_smoothing": 0.1})]:
            hid = f32(sh * rng.uniform(-1, 1, 5, 4) / 2)
            wt = f32(sw * rng.uniform(-1, 1, 7, 4) / 2)
            lce.append(make_case("linear_cross_entropy", f"h{sname(sh)}_w{sname(sw)}_{red}",
                                 {"hidden": hid, "weight": wt, "bias": f32(sh * sw * rng.uniform(-1, 1, 7)),
                                  "target": rng.ids(7, 5)},
                                 {"reduction": red, **opts}))
    C["linear_cross_entropy"] = lce
    return C


# ---------------------------------------------------------------- check

def check_vendored(folder="../conformance"):
    """Rerun every reference on the vendored cases' inputs (scale 1) and
    count the cases whose stored output and gradients it reproduces."""
    import glob
    import os
    total, ok, bad = 0, 0, []
    for path in sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), folder, "*.json"))):
        for c in json.load(open(path))["cases"]:
            if "expected" not in c:
                continue
            op = c["op"]
            total += 1
            dec = lambda t: (torch.tensor(t["data"], dtype=torch.int64) if t.get("dtype") == "i64"
                             else torch.tensor([float(v) for v in t["data"]], dtype=D)).reshape(t["shape"])
            inputs = {k: dec(v) for k, v in c["inputs"].items()}
            opts = {k: (dec(v) if isinstance(v, dict) else v) for k, v in c.get("options", {}).items()}
            if op == "linear_cross_entropy":
                opts.pop("chunk", None)
            g = dec(c["grad_output"])
            grads = list(c["expected"]["grads"])
            try:
                out, gr = run_ref(REFS[op], inputs, opts, grads, D, g)
                if op in MP_REFS:
                    out2, gr2 = MP_REFS[op](inputs, opts, g)
            except Exception as e:  # noqa: BLE001
                bad.append((c["id"], repr(e)))
                continue
            want = [dec(c["expected"]["output"])] + [dec(c["expected"]["grads"][k]) for k in grads]
            got = [out] + [gr[k] for k in grads]
            if op in MP_REFS:
                got += [out2] + [gr2[k] for k in grads]
                want = want * 2
            good = all(a.shape == b.shape and torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(got, want))
            if good:
                ok += 1
            else:
                bad.append((c["id"], max(float((a - b).abs().max()) for a, b in zip(got, want) if a.shape == b.shape)))
    print(f"vendored check: {ok} of {total} value cases reproduced (rtol 1e-9, atol 1e-12)")
    for b in bad:
        print("  mismatch:", b)
    # torchvision's verbatim focal formula vs the cancellation-free one
    return ok, total


if __name__ == "__main__":
    if "--check" in sys.argv:
        check_vendored()
    total = 0
    for op, cases in all_cases().items():
        with open(f"{op}.json", "w") as f:
            json.dump({"op": op, "generated_by": GEN, "cases": cases}, f, separators=(",", ":"))
            f.write("\n")
        fl = lambda e: math.inf if e == "inf" else e
        worst = max(max([fl(c["pytorch_f32_error"]["output"])] + [fl(e) for e in c["pytorch_f32_error"]["grads"].values()])
                    for c in cases)
        print(f"{op}: {len(cases)} cases, worst PyTorch f32 error {worst}")
        total += len(cases)
    print("total", total)
