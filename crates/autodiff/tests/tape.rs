//! The tape's contract: accumulation, VJPs, detach/no-grad, errors instead of
//! silent zeros, and no memory growth across training steps.

use lossgraph_autodiff::{gradcheck, BackwardCtx, CustomOp, Error, GradcheckOptions, Result, Tape};
use lossgraph_tensor::{ErrorKind, Tensor};

fn t(v: &[f64], shape: &[usize]) -> Tensor<f64> {
    Tensor::from_vec(v.to_vec(), shape.to_vec()).unwrap()
}

#[test]
fn fan_out_accumulates() {
    // y = x·x + x  →  dy/dx = 2x + 1
    let tape = Tape::<f64>::new();
    let x = tape.leaf(t(&[3.0, -1.0], &[2]));
    let y = x.mul(&x).unwrap().add(&x).unwrap().sum_all().unwrap();
    let g = y.backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec(), vec![7.0, -1.0]);
}

#[test]
fn vector_jacobian_product() {
    // y = 3x elementwise; vᵀJ = 3v
    let tape = Tape::<f64>::new();
    let x = tape.leaf(t(&[1.0, 2.0, 3.0], &[3]));
    let y = x.mul_scalar(3.0).unwrap();
    let g = y.backward_with(t(&[1.0, 0.5, -2.0], &[3])).unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec(), vec![3.0, 1.5, -6.0]);
    let bad = y.backward_with(t(&[1.0], &[1])).unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::ShapeMismatch);
    assert!(matches!(y.backward(), Err(Error::NotScalar { .. })));
}

#[test]
fn detach_and_no_grad_stop_gradients() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(t(&[2.0], &[1]));
    let y = x.mul(&x.detach()).unwrap().sum_all().unwrap(); // d/dx (x·c) = c
    assert_eq!(y.backward().unwrap().get(&x).unwrap().to_vec(), vec![2.0]);
    let z = tape.no_grad(|| x.exp().unwrap());
    assert!(!z.requires_grad());
    assert!(tape.grad_enabled());
    let c = tape.constant(t(&[1.0], &[1]));
    let g = c.exp().unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(&c).is_none());
}

#[test]
fn leaves_share_storage() {
    let w = Tensor::<f32>::randn([64, 64], 0.0, 1.0, 0).unwrap();
    let tape = Tape::new();
    let v = tape.leaf(w.clone());
    assert!(v.value().shares_storage(&w));
}

#[test]
fn mixing_tapes_is_an_error() {
    let (a, b) = (Tape::<f64>::new(), Tape::<f64>::new());
    let x = a.leaf(t(&[1.0], &[1]));
    let y = b.leaf(t(&[1.0], &[1]));
    assert!(matches!(x.add(&y), Err(Error::TapeMismatch { .. })));
}

/// A custom op whose forward is right and whose backward is wrong by a factor.
struct WrongSquare;
impl CustomOp<f64> for WrongSquare {
    type Saved = ();
    fn name(&self) -> &str {
        "wrong_square"
    }
    fn forward(&self, x: &[&Tensor<f64>]) -> Result<(Tensor<f64>, ())> {
        Ok((x[0].square(), ()))
    }
    fn backward(&self, cx: &BackwardCtx<'_, f64, ()>) -> Result<Vec<Option<Tensor<f64>>>> {
        // d(x²)/dx is 2x; this says 3x
        Ok(vec![Some(
            cx.inputs[0].mul_scalar(3.0).mul(cx.grad_output)?,
        )])
    }
}

#[test]
fn gradcheck_catches_a_wrong_backward() {
    let x = Tensor::<f64>::randn([4], 0.0, 1.0, 5).unwrap();
    let tape_fn = |v: &[lossgraph_autodiff::Var<f64>]| v[0].tape().apply(WrongSquare, &[&v[0]]);
    let report = gradcheck(
        tape_fn,
        std::slice::from_ref(&x),
        &GradcheckOptions::default(),
    )
    .unwrap();
    assert!(!report.passed());
    let m = &report.mismatches[0];
    assert_eq!(m.input, Some(0));
    assert!((m.analytic / m.numeric - 1.5).abs() < 1e-6, "{m}");
    let err = report.into_result().unwrap_err().to_string();
    assert!(err.contains("input 0, element"), "{err}");
    // the fast mode catches it too
    let fast = gradcheck(tape_fn, &[x], &GradcheckOptions::fast(3)).unwrap();
    assert!(!fast.passed());
}

/// A custom op with no backward rule.
struct ForwardOnly;
impl CustomOp<f64> for ForwardOnly {
    type Saved = ();
    fn name(&self) -> &str {
        "forward_only"
    }
    fn forward(&self, x: &[&Tensor<f64>]) -> Result<(Tensor<f64>, ())> {
        Ok((x[0].clone(), ()))
    }
}

/// A custom op that forgets to return a gradient.
struct ForgetsGradient;
impl CustomOp<f64> for ForgetsGradient {
    type Saved = ();
    fn name(&self) -> &str {
        "forgets"
    }
    fn forward(&self, x: &[&Tensor<f64>]) -> Result<(Tensor<f64>, ())> {
        Ok((x[0].clone(), ()))
    }
    fn backward(&self, _: &BackwardCtx<'_, f64, ()>) -> Result<Vec<Option<Tensor<f64>>>> {
        Ok(vec![None])
    }
}

#[test]
fn missing_backward_is_an_error_never_a_zero() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(t(&[1.0, 2.0], &[2]));
    let y = tape.apply(ForwardOnly, &[&x]).unwrap().sum_all().unwrap();
    assert!(matches!(y.backward(), Err(Error::NoBackward { op }) if op == "forward_only"));
    let y = tape
        .apply(ForgetsGradient, &[&x])
        .unwrap()
        .sum_all()
        .unwrap();
    assert!(matches!(
        y.backward(),
        Err(Error::MissingGradient { input: 0, .. })
    ));
    // a constant input needs no rule at all
    let c = tape.constant(t(&[1.0], &[1]));
    let y = tape.apply(ForwardOnly, &[&c]).unwrap();
    assert!(!y.requires_grad());
}

#[test]
fn anomaly_mode_names_the_first_bad_op() {
    let tape = Tape::<f32>::new();
    tape.set_anomaly_mode(true);
    let z = tape.leaf(Tensor::from_vec(vec![0.0f32, 100.0], [2]).unwrap());
    // exp(100) overflows f32: exp is the first op with a non-finite output
    match z.exp() {
        Err(Error::Anomaly { op, inputs, .. }) => {
            assert_eq!(op, "exp");
            assert_eq!(inputs[0].max, Some(100.0));
        }
        other => panic!("expected an anomaly, got {other:?}"),
    }
}

#[test]
fn dropping_the_tape_frees_the_step() {
    let w = Tensor::<f32>::randn([32, 32], 0.0, 1.0, 1).unwrap();
    for _ in 0..3 {
        let tape = Tape::new();
        let wv = tape.leaf(w.clone());
        let x = tape.constant(Tensor::ones([8, 32]).unwrap());
        let loss = x.matmul(&wv).unwrap().tanh().unwrap().mean_all().unwrap();
        let g = loss.backward().unwrap();
        assert_eq!(g.get(&wv).unwrap().dims(), &[32, 32]);
        assert!(w.storage_refs() > 1);
    }
    // every step's tape, vars and gradients are gone: only `w` holds its storage
    assert_eq!(w.storage_refs(), 1);
}

/// A second backward (on the same output, or another) is an independent
/// pass: the same gradients again, not added to the first call's.
#[test]
fn a_second_backward_returns_the_same_gradients_not_a_sum() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0], [3]).unwrap());
    let y = x.square().unwrap().sum_all().unwrap();
    let first = y.backward().unwrap().get(&x).unwrap().to_vec();
    let second = y.backward().unwrap().get(&x).unwrap().to_vec();
    assert_eq!(first, vec![2.0, 4.0, 6.0]);
    assert_eq!(second, first);
}

/// A loss whose backward returns zeros: the kind of bug a "no panic" test
/// never sees.
struct ZeroGradSquareSum;
impl CustomOp<f64> for ZeroGradSquareSum {
    type Saved = ();
    fn name(&self) -> &str {
        "zero_grad_square_sum"
    }
    fn forward(&self, x: &[&Tensor<f64>]) -> Result<(Tensor<f64>, ())> {
        Ok((x[0].square().sum_all(), ()))
    }
    fn backward(&self, cx: &BackwardCtx<'_, f64, ()>) -> Result<Vec<Option<Tensor<f64>>>> {
        Ok(vec![Some(cx.inputs[0].zeros_like())])
    }
}

#[test]
fn gradcheck_catches_a_backward_of_zeros_on_a_scalar_loss_and_names_the_op() {
    let x = Tensor::<f64>::randn([5], 0.0, 1.0, 3).unwrap();
    let report = gradcheck(
        |v| v[0].tape().apply(ZeroGradSquareSum, &[&v[0]]),
        std::slice::from_ref(&x),
        &GradcheckOptions::default(),
    )
    .unwrap();
    assert!(!report.passed());
    assert_eq!(report.mismatches.len(), 5);
    let msg = report.into_result().unwrap_err().to_string();
    assert!(msg.contains("op `zero_grad_square_sum`"), "{msg}");
    assert!(
        msg.contains("analytic/numeric -0.0000") || msg.contains("analytic/numeric 0.0000"),
        "{msg}"
    );
}

/// A function that builds its output on a tape of its own: its gradient
/// with respect to the given leaves reads as zero, and central differences
/// of a function that ignores its inputs are zero too, so the two "agree".
/// That is an error, not a pass.
#[test]
fn gradcheck_refuses_an_output_from_another_tape() {
    let x = Tensor::<f64>::randn([3], 0.0, 1.0, 4).unwrap();
    let r = gradcheck(
        |_v| {
            let other = Tape::<f64>::new();
            other.leaf(Tensor::ones([3])?).exp()
        },
        std::slice::from_ref(&x),
        &GradcheckOptions::default(),
    );
    assert!(matches!(r, Err(Error::TapeMismatch { .. })), "{r:?}");
}

/// f32 inputs with PyTorch's f64 step (1e-6) are refused with a message that
/// names the f32 preset; with the preset a correct op passes and a rule off
/// by 2% fails.
#[test]
fn gradcheck_in_f32_needs_the_f32_preset() {
    let x = Tensor::<f32>::randn([6], 0.0, 1.0, 5).unwrap();
    let e = gradcheck(
        |v| v[0].tanh()?.sum_all(),
        std::slice::from_ref(&x),
        &GradcheckOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidOption);
    assert!(e.to_string().contains("for_f32"), "{e}");
    let ok = gradcheck(
        |v| v[0].tanh()?.sum_all(),
        std::slice::from_ref(&x),
        &GradcheckOptions::for_f32(),
    )
    .unwrap();
    assert!(ok.passed(), "{ok:?}");
    // tanh's rule scaled by 1.02: the preset's tolerances catch it
    let off = gradcheck(
        |v| {
            let y = v[0].tanh()?;
            // y + 0.02·(y − stop(y)): the value of y, 1.02 times its gradient
            y.add(&y.sub(&y.detach())?.mul_scalar(0.02)?)?.sum_all()
        },
        std::slice::from_ref(&x),
        &GradcheckOptions::for_f32(),
    )
    .unwrap();
    assert!(!off.passed(), "{off:?}");
}
