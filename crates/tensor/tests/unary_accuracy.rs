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
