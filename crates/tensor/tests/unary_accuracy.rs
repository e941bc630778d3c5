//! The f32 transcendental primitives (polynomials through the SIMD
//! dispatcher) against the correctly rounded value, over a sweep of every
//! magnitude: subnormals, ±0, ±∞, NaN and the overflow edges. The bounds
//! are the ones stated on `Tensor::exp` and kin.

use lossgraph_tensor::Tensor;

/// Distance in units in the last place between two f32 values (0 for two
/// NaNs or equal values, u32::MAX for a NaN against a number).
fn ulps(a: f32, b: f32) -> u32 {
    if a.is_nan() || b.is_nan() {
        return if a.is_nan() && b.is_nan() {
            0
        } else {
            u32::MAX
        };
    }
    if a == b {
        return 0;
    }
    // map the floats onto a line of integers that is monotonic in value
    let key = |x: f32| {
        let i = x.to_bits() as i32;
        if i < 0 {
            i32::MIN - i
        } else {
            i
        }
    };
    key(a).abs_diff(key(b))
}

/// Every magnitude from subnormal to the largest f32, both signs, with
/// the special values and the edges where exp overflows or underflows.
fn sweep() -> Vec<f32> {
    let mut x = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::MAX,
        88.72,
        88.73,
        -87.33,
        -103.97,
        -104.0,
        1e-30,
        -1e-30,
    ];
    let mut v = f32::from_bits(1);
    while v < f32::MAX / 1.01 {
        x.push(v);
        x.push(-v);
        // (among the subnormals ×1.01 rounds back to v: take the next one)
        v = (v * 1.01).max(f32::from_bits(v.to_bits() + 1));
    }
    // dense where the functions bend: [-20, 20]
    x.extend((0..=40_000).map(|i| -20.0 + i as f32 * 1e-3));
    x
}

/// Run `op` on the sweep and compare each output with `reference` rounded
/// to f32 (computed in f64): at most `bound` ulp apart, where the reference
/// is a normal f32; where it is subnormal, within `bound` subnormal steps
/// or flushed to 0 (the polynomials flush results below f32::MIN_POSITIVE).
fn check(
    name: &str,
    op: impl Fn(&Tensor<f32>) -> Tensor<f32>,
    reference: impl Fn(f64) -> f64,
    bound: u32,
) {
    let x = sweep();
    let got = op(&Tensor::from_vec(x.clone(), [x.len()]).unwrap());
    let mut worst = (0u32, 0.0f32);
    for (&xi, &g) in x.iter().zip(got.as_slice()) {
        let want = reference(f64::from(xi)) as f32;
        let d = ulps(g, want);
        let subnormal = want != 0.0 && want.abs() < f32::MIN_POSITIVE;
        if subnormal && g == 0.0 {
            continue;
        }
        if d > worst.0 {
            worst = (d, xi);
        }
    }
    assert!(
        worst.0 <= bound,
        "{name}: {} ulp at x = {:e} (bound {bound})",
        worst.0,
        worst.1
    );
}

#[test]
fn exp_and_log() {
    check("exp", Tensor::exp, f64::exp, 2);
    check("log", Tensor::log, f64::ln, 2);
}

#[test]
fn expm1_and_log1p() {
    check("expm1", Tensor::expm1, f64::exp_m1, 2);
    check("log1p", Tensor::log1p, f64::ln_1p, 2);
}

#[test]
fn tanh_sigmoid_softplus() {
    check("tanh", Tensor::tanh, f64::tanh, 3);
    let sigmoid = |x: f64| {
        if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            x.exp() / (1.0 + x.exp())
        }
    };
    check("sigmoid", Tensor::sigmoid, sigmoid, 4);
    check(
        "softplus",
        Tensor::softplus,
        |x| x.max(0.0) + (-x.abs()).exp().ln_1p(),
        4,
    );
}

/// `xᵖ = e^{p·log x}`: the log's rounding, scaled by `p`, becomes a
/// relative error of the result, so the bound grows with `|p·log x|`
/// (about 2 ulp of it, plus the exp's and log's own). Negative and signed
/// zero bases take std's powf and must match it exactly.
#[test]
fn powf_within_its_bound() {
    let x = sweep();
    let t = Tensor::from_vec(x.clone(), [x.len()]).unwrap();
    for p in [0.0f32, 0.5, 1.5, 2.0, 3.0, -1.0, -2.5, 7.3] {
        let got = t.powf(p);
        for (&xi, &g) in x.iter().zip(got.as_slice()) {
            if xi.is_sign_negative() {
                assert_eq!(g.to_bits(), xi.powf(p).to_bits(), "powf({xi}, {p})");
                continue;
            }
            let want = f64::from(xi).powf(f64::from(p)) as f32;
            if want != 0.0 && want.abs() < f32::MIN_POSITIVE && g == 0.0 {
                continue; // flushed below the normal range
            }
            let spread = (f64::from(p) * f64::from(xi).ln()).abs();
            let bound = if spread.is_finite() {
                4.0 + 2.0 * spread
            } else {
                4.0
            };
            let d = ulps(g, want);
            assert!(
                f64::from(d) <= bound,
                "powf({xi:e}, {p}) = {g:e}, want {want:e}: {d} ulp > {bound}"
            );
        }
    }
}

/// Signed zeros and the limits come out exactly.
#[test]
fn special_values_exactly() {
    let t = Tensor::from_vec(vec![0.0f32, -0.0, f32::INFINITY, f32::NEG_INFINITY], [4]).unwrap();
    let bits = |t: Tensor<f32>| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let want = |v: [f32; 4]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(t.exp()), want([1.0, 1.0, f32::INFINITY, 0.0]));
    assert_eq!(bits(t.expm1()), want([0.0, -0.0, f32::INFINITY, -1.0]));
    assert_eq!(bits(t.tanh()), want([0.0, -0.0, 1.0, -1.0]));
    assert_eq!(bits(t.sigmoid()), want([0.5, 0.5, 1.0, 0.0]));
    assert_eq!(
        bits(t.softplus()),
        want([
            std::f32::consts::LN_2,
            std::f32::consts::LN_2,
            f32::INFINITY,
            0.0
        ])
    );
    let log1p = t.log1p().to_vec();
    assert_eq!(
        log1p[..3].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        want([0.0, -0.0, f32::INFINITY, 0.0])[..3]
    );
    let log = t.log().to_vec();
    assert_eq!(log[0], f32::NEG_INFINITY);
    assert_eq!(log[1], f32::NEG_INFINITY);
    assert_eq!(log[2], f32::INFINITY);
    assert!(log[3].is_nan());
    assert!(log1p[3].is_nan());
}

/// f32 softmax and log_softmax (SIMD row kernels) against f64, on rows of
/// every length up to past two 64-lane chunks; rows whose max is not
/// finite give what the scalar reference row kernel gives.
#[test]
fn softmax_and_log_softmax_rows() {
    for n in [1usize, 7, 63, 64, 65, 200] {
        let x = Tensor::<f32>::randn([5, n], 0.0, 8.0, n as u64).unwrap();
        let want = x.cast::<f64>().softmax();
        let want_log = x.cast::<f64>().log_softmax();
        let (got, got_log) = (x.softmax(), x.log_softmax());
        let scale = x
            .as_slice()
            .iter()
            .fold(0.0f64, |a, v| a.max(f64::from(v.abs())));
        for ((g, w), (gl, wl)) in got
            .as_slice()
            .iter()
            .zip(want.as_slice())
            .zip(got_log.as_slice().iter().zip(want_log.as_slice()))
        {
            // probabilities below f32's normal range may flush to 0; above
            // it, e^(x − max) carries the rounding of its argument, ~|ln w|·ε
            if *w >= f64::from(f32::MIN_POSITIVE) {
                let bound = (4.0 + 2.0 * w.ln().abs()) * f64::from(f32::EPSILON) * w;
                assert!(
                    (f64::from(*g) - w).abs() <= bound,
                    "softmax n={n}: {g} vs {w}"
                );
            }
            // x − lse: the rounding of terms as large as the logits
            let log_bound = 4.0 * f64::from(f32::EPSILON) * (1.0 + scale + wl.abs());
            assert!(
                (f64::from(*gl) - wl).abs() <= log_bound,
                "log_softmax n={n}: {gl} vs {wl}"
            );
        }
    }
    let odd = vec![
        f32::NAN,
        1.0,
        2.0,
        f32::INFINITY,
        1.0,
        2.0,
        f32::NEG_INFINITY,
        f32::NEG_INFINITY,
        f32::NEG_INFINITY,
        f32::NEG_INFINITY,
        0.0,
        1.0,
    ];
    let t = Tensor::from_vec(odd.clone(), [4, 3]).unwrap();
    let mut want = odd.clone();
    for row in want.chunks_mut(3) {
        lossgraph_tensor::softmax_row(row);
    }
    let same = |a: &[f32], b: &[f32]| {
        a.iter().zip(b).all(|(x, y)| {
            // finite rows: each side within about 2 ulp of the true value
            x.to_bits() == y.to_bits()
                || (x.is_nan() && y.is_nan())
                || (x - y).abs() <= 4.0 * f32::EPSILON * x.abs().max(y.abs()).max(1e-3)
        })
    };
    assert!(
        same(t.softmax().as_slice(), &want),
        "{:?} vs {want:?}",
        t.softmax().as_slice()
    );
    let logs: Vec<f32> = odd
        .chunks(3)
        .flat_map(|r| {
            let lse = lossgraph_tensor::logsumexp_row(r);
            r.iter().map(move |v| v - lse).collect::<Vec<_>>()
        })
        .collect();
    assert!(
        same(t.log_softmax().as_slice(), &logs),
        "{:?} vs {logs:?}",
        t.log_softmax().as_slice()
    );
}
