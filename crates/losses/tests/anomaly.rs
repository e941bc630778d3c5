//! Anomaly mode on real models: the first op that turns finite inputs into a
//! NaN or ±∞ is named, with its input shapes and ranges, in the forward pass
//! and in the backward pass; the fused losses do not trip it where their
//! naive twins do.

use lossgraph_autodiff::{Error, Phase, Tape, Var};
use lossgraph_losses::{cross_entropy, naive, CrossEntropyOptions};
use lossgraph_tensor::Tensor;

/// A linear model `x·W` whose weights are so large that the logits reach
/// ±1e4: softmax then underflows to exact zeros in f32 (e^−2e4 = 0).
fn big_logits(tape: &Tape<f32>) -> (Var<f32>, Var<f32>) {
    // 2 rows of 2 features; W [2, 3] maps them to logits of ±1e4 and 0
    let x = tape.constant(Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 1.0], [2, 2]).unwrap());
    let w = tape.leaf(Tensor::from_vec(vec![1e4f32, -1e4, 0.0, -1e4, 1e4, 0.0], [2, 3]).unwrap());
    let z = x.matmul(&w).unwrap();
    (w, z)
}

fn targets() -> Tensor<i64> {
    // row 0's true class has logit −1e4: its probability underflows to 0
    Tensor::from_vec(vec![1i64, 0], [2]).unwrap()
}

fn expect_anomaly<T: std::fmt::Debug>(r: Result<T, Error>) -> (String, Phase, Error) {
    match r {
        Err(e @ Error::Anomaly { .. }) => {
            let Error::Anomaly { op, phase, .. } = &e else {
                unreachable!()
            };
            (op.clone(), *phase, e.clone())
        }
        other => panic!("expected an anomaly, got {other:?}"),
    }
}

#[test]
fn naive_cross_entropy_overflow_is_caught_at_log() {
    let tape = Tape::<f32>::new();
    tape.set_anomaly_mode(true);
    let (_, z) = big_logits(&tape);
    let r = naive::cross_entropy(&z, &targets(), &CrossEntropyOptions::default());
    let (op, phase, e) = expect_anomaly(r);
    // softmax is finite (it holds exact zeros); log(0) = −∞ is the first non-finite value
    assert_eq!(op, "log");
    assert_eq!(phase, Phase::Forward);
    let Error::Anomaly { output, inputs, .. } = &e else {
        unreachable!()
    };
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].shape, vec![2, 3]);
    assert_eq!(inputs[0].min, Some(0.0));
    assert_eq!(inputs[0].max, Some(1.0));
    assert_eq!(inputs[0].non_finite, 0);
    assert_eq!(output.shape, vec![2, 3]);
    // both rows hold two exact zeros: four −∞
    assert_eq!(output.non_finite, 4);
    // the message a user sees names the op, the phase and the ranges
    let msg = e.to_string();
    assert!(msg.contains("op `log`"), "{msg}");
    assert!(msg.contains("Forward"), "{msg}");
    assert!(msg.contains("[2, 3] range [0.0000e0, 1.0000e0]"), "{msg}");
}

#[test]
fn composed_log_of_softmax_is_caught_at_log() {
    let tape = Tape::<f32>::new();
    tape.set_anomaly_mode(true);
    let (_, z) = big_logits(&tape);
    let p = z.softmax().expect("softmax of finite logits is finite");
    let (op, phase, _) = expect_anomaly(p.log());
    assert_eq!((op.as_str(), phase), ("log", Phase::Forward));
}

#[test]
fn fused_cross_entropy_does_not_trip_it() {
    let tape = Tape::<f32>::new();
    tape.set_anomaly_mode(true);
    let (w, z) = big_logits(&tape);
    let loss = cross_entropy(&z, &targets(), &CrossEntropyOptions::default())
        .expect("the fused op works in logit space: lse − z_y is finite");
    // row 0: lse − z_1 = 1e4 − (−1e4) = 2e4; row 1: lse − z_0 = 2e4; mean 2e4
    assert_eq!(loss.item().unwrap(), 2e4);
    let grads = loss.backward().expect("no anomaly in backward either");
    // ∂ℓ/∂z = (softmax − onehot)/N is bounded, so ∂ℓ/∂W = xᵀ·that is finite
    let gw = grads.get(&w).unwrap();
    assert!(gw.all_finite());
    assert_eq!(gw.to_vec(), vec![0.5, -0.5, 0.0, -0.5, 0.5, 0.0]);
}

#[test]
fn without_anomaly_mode_the_naive_loss_is_silently_nan() {
    let tape = Tape::<f32>::new();
    let (_, z) = big_logits(&tape);
    let loss = naive::cross_entropy(&z, &targets(), &CrossEntropyOptions::default()).unwrap();
    // −∞ · 0 = NaN in the one-hot product: no error, a NaN loss
    assert!(loss.item().unwrap().is_nan());
}

#[test]
fn a_backward_anomaly_names_the_op_whose_rule_made_it() {
    let tape = Tape::<f64>::new();
    tape.set_anomaly_mode(true);
    let x = tape.leaf(Tensor::from_vec(vec![0.0, 4.0], [2]).unwrap());
    // forward is finite: √0 = 0; backward: g/(2√x) = 1/0 = ∞ at x = 0
    let y = x.sqrt().unwrap().sum_all().unwrap();
    assert_eq!(y.item().unwrap(), 2.0);
    let (op, phase, e) = expect_anomaly(y.backward());
    assert_eq!((op.as_str(), phase), ("sqrt", Phase::Backward));
    let Error::Anomaly { output, inputs, .. } = &e else {
        unreachable!()
    };
    // output: the gradient the rule returned; inputs: the op's forward inputs
    assert_eq!(output.shape, vec![2]);
    assert_eq!(output.non_finite, 1);
    assert_eq!(output.max, Some(0.25));
    assert_eq!(inputs[0].min, Some(0.0));
    assert_eq!(inputs[0].max, Some(4.0));
}

#[test]
fn without_anomaly_mode_the_infinite_gradient_goes_through() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![0.0, 4.0], [2]).unwrap());
    let y = x.sqrt().unwrap().sum_all().unwrap();
    let g = y.backward().unwrap().get(&x).unwrap().to_vec();
    assert_eq!(g, vec![f64::INFINITY, 0.25]);
}

#[test]
fn anomaly_mode_does_not_change_values_or_gradients() {
    let run = |anomaly: bool| {
        let tape = Tape::<f64>::new();
        tape.set_anomaly_mode(anomaly);
        let z = tape.leaf(Tensor::randn([4, 5], 0.0, 3.0, 7).unwrap());
        let t = Tensor::from_vec(vec![0i64, 4, 2, 1], [4]).unwrap();
        let loss = cross_entropy(&z, &t, &CrossEntropyOptions::default()).unwrap();
        let g = loss.backward().unwrap().get(&z).unwrap().to_vec();
        (loss.item().unwrap(), g)
    };
    assert_eq!(run(false), run(true));
}

#[test]
fn a_non_finite_input_is_not_blamed_on_the_next_op() {
    // NaN in, NaN out is not this op's fault: anomaly mode says that exp
    // *received* the NaN, from a leaf, not that exp produced it
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![f64::NAN, 1.0], [2]).unwrap());
    tape.set_anomaly_mode(true);
    let e = x.exp().unwrap_err();
    assert!(
        matches!(&e, Error::NonFiniteInput { op, from, .. } if op == "exp" && from == "a leaf"),
        "{e:?}"
    );
}

/// A NaN in a leaf (data no op made) is named where it is first used, as a
/// leaf, in forward, instead of backward blaming the loss for the NaN it was
/// handed (the report of #25 §5).
#[test]
fn a_nan_in_a_leaf_is_named_at_the_first_op_that_uses_it() {
    let tape = Tape::<f64>::new();
    tape.set_anomaly_mode(true);
    let w = tape.leaf(Tensor::from_vec(vec![1.0, f64::NAN, 0.5, 2.0], [2, 2]).unwrap());
    let x = tape.constant(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], [2, 2]).unwrap());
    match x.matmul(&w) {
        Err(e @ Error::NonFiniteInput { .. }) => {
            let Error::NonFiniteInput {
                op,
                input,
                from,
                value,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(
                (op.as_str(), *input, from.as_str()),
                ("matmul", 1, "a leaf")
            );
            assert_eq!(value.non_finite, 1);
            let msg = e.to_string();
            assert!(
                msg.contains("received a non-finite value in its input 1, from a leaf"),
                "{msg}"
            );
        }
        other => panic!("expected NonFiniteInput, got {other:?}"),
    }
    // a constant (targets, data) is checked the same way
    let bad = tape.constant(Tensor::from_vec(vec![0.5, f64::NAN], [1, 2]).unwrap());
    let z = tape.leaf(Tensor::from_vec(vec![0.0, 1.0], [1, 2]).unwrap());
    let r = cross_entropy(&z, &bad, &CrossEntropyOptions::default());
    assert!(
        matches!(&r, Err(Error::NonFiniteInput { op, from, .. }) if op == "cross_entropy" && from == "a constant"),
        "{r:?}"
    );
    // without anomaly mode the NaN flows through, as IEEE says
    let plain = Tape::<f64>::new();
    let w = plain.leaf(Tensor::from_vec(vec![f64::NAN], [1]).unwrap());
    assert!(w.exp().unwrap().item().unwrap().is_nan());
}

/// An op recorded while anomaly mode was off made the NaN; the first op
/// recorded after the mode is on receives it and names where it came from.
#[test]
fn a_nan_made_before_the_mode_was_on_is_named_by_its_maker() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![-1.0, 4.0], [2]).unwrap());
    let r = x.sqrt().unwrap(); // √−1 = NaN, unchecked
    tape.set_anomaly_mode(true);
    let e = r.sum_all().unwrap_err();
    assert!(
        matches!(&e, Error::NonFiniteInput { op, from, .. } if op == "sum_all" && from == "the output of `sqrt`"),
        "{e:?}"
    );
}

/// In backward the message says it is a gradient that the rule made, and a
/// non-finite output gradient handed to backward_with is refused up front.
#[test]
fn backward_anomalies_say_gradient_and_check_the_seed() {
    let tape = Tape::<f64>::new();
    tape.set_anomaly_mode(true);
    let x = tape.leaf(Tensor::from_vec(vec![0.0, 4.0], [2]).unwrap());
    let y = x.sqrt().unwrap();
    let msg = y.sum_all().unwrap().backward().unwrap_err().to_string();
    assert!(
        msg.contains("backward rule produced a non-finite gradient"),
        "{msg}"
    );
    assert!(msg.contains("gradient [2] range"), "{msg}");
    let seed = Tensor::from_vec(vec![1.0, f64::NAN], [2]).unwrap();
    let e = y.backward_with(seed).unwrap_err();
    assert!(
        matches!(&e, Error::NonFiniteInput { from, .. } if from.contains("output gradient")),
        "{e:?}"
    );
}
