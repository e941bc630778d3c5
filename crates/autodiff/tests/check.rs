//! Check mode on the tape: the checks that look at tape ops (2: log of a
//! softmax; 6: a mean averaged again; 9: a dominant loss term). Each check
//! has a test of the mistake and, right below it, one of the correct version.
//! The checks on a loss's inputs are tested in the losses crate.

use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Tape, Var, Warning};
use lossgraph_tensor::Tensor;

/// `Σ w·x²`, or its mean when `mean`: a stand-in for a fused loss.
struct Squares {
    w: f64,
    mean: bool,
}

impl CustomOp<f64> for Squares {
    type Saved = ();
    fn name(&self) -> &str {
        if self.mean {
            "mean_squares"
        } else {
            "sum_squares"
        }
    }
    fn is_mean(&self) -> bool {
        self.mean
    }
    fn forward(&self, x: &[&Tensor<f64>]) -> Result<(Tensor<f64>, ())> {
        let s = x[0].square().sum_all().item()? * self.w;
        let n = if self.mean { x[0].numel() as f64 } else { 1.0 };
        Ok((Tensor::scalar(s / n), ()))
    }
    fn backward(&self, cx: &BackwardCtx<'_, f64, ()>) -> Result<Vec<Option<Tensor<f64>>>> {
        let n = if self.mean {
            cx.inputs[0].numel() as f64
        } else {
            1.0
        };
        let g = cx.grad_output.item()? * 2.0 * self.w / n;
        Ok(vec![Some(cx.inputs[0].mul_scalar(g))])
    }
}

fn checked() -> Tape<f64> {
    let tape = Tape::new();
    tape.set_check_mode(true);
    tape
}

fn leaf(tape: &Tape<f64>, dims: &[usize]) -> Result<Var<f64>> {
    let n = dims.iter().product();
    let v = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
    Ok(tape.leaf(Tensor::from_vec(v, dims)?))
}

#[test]
fn check_mode_is_off_by_default_and_a_flag() -> Result<()> {
    // the test runner does not set LOSSGRAPH_CHECK
    let tape = Tape::<f64>::new();
    assert!(!tape.check_mode());
    let z = leaf(&tape, &[2, 3])?;
    z.softmax()?.log()?;
    assert!(tape.warnings().is_empty(), "off: nothing is checked");
    assert!(!tape.set_check_mode(true));
    assert!(tape.check_mode());
    z.softmax()?.log()?;
    assert_eq!(tape.take_warnings().len(), 1);
    assert!(tape.warnings().is_empty(), "taken");
    Ok(())
}

#[test]
fn log_of_softmax_fires() -> Result<()> {
    let tape = checked();
    // a logit 800 below the leader: softmax rounds it to 0 and log gives −∞
    let z = tape.leaf(Tensor::from_vec(vec![0.0, 1.0, -800.0], [1, 3])?);
    let logp = z.softmax()?.log()?;
    match &tape.warnings()[..] {
        [Warning::LogOfSoftmax { node, minus_inf }] => {
            assert_eq!(*node, logp.id());
            assert_eq!(*minus_inf, 1);
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn log_softmax_is_clean() -> Result<()> {
    let tape = checked();
    let z = tape.leaf(Tensor::from_vec(vec![0.0, 1.0, -800.0], [1, 3])?);
    let logp = z.log_softmax()?;
    assert!(logp.value().all_finite());
    // a log of something else than a softmax is fine too
    z.exp()?.add_scalar(1.0)?.log()?;
    assert!(tape.warnings().is_empty(), "{:?}", tape.warnings());
    Ok(())
}

#[test]
fn mean_of_a_mean_loss_fires() -> Result<()> {
    let tape = checked();
    let x = leaf(&tape, &[8, 4])?;
    let loss = tape.apply(Squares { w: 1.0, mean: true }, &[&x])?;
    loss.mean_all()?;
    match &tape.warnings()[..] {
        [Warning::ReducedTwice {
            first,
            second,
            divisor,
        }] => {
            assert_eq!(
                (first.as_str(), second.as_str()),
                ("mean_squares", "mean_all")
            );
            assert_eq!(*divisor, 1.0);
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn mean_loss_divided_by_the_batch_fires() -> Result<()> {
    let tape = checked();
    let x = leaf(&tape, &[8, 4])?;
    let loss = tape.apply(Squares { w: 1.0, mean: true }, &[&x])?;
    loss.mul_scalar(1.0 / 8.0)?; // the batch size
    let batch = tape.constant(Tensor::scalar(32.0));
    loss.div(&batch)?; // every element
    let w = tape.warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(matches!(&w[0], Warning::ReducedTwice { divisor, .. } if *divisor == 8.0));
    assert!(
        matches!(&w[1], Warning::ReducedTwice { second, divisor, .. }
        if second == "div" && *divisor == 32.0)
    );
    Ok(())
}

#[test]
fn one_reduction_is_clean() -> Result<()> {
    let tape = checked();
    let x = leaf(&tape, &[8, 4])?;
    // a sum divided by the batch size is the mean, done once
    let sum = tape.apply(
        Squares {
            w: 1.0,
            mean: false,
        },
        &[&x],
    )?;
    sum.mul_scalar(1.0 / 8.0)?;
    // a mean scaled by a weight that is not a count of anything
    let mean = tape.apply(Squares { w: 1.0, mean: true }, &[&x])?;
    mean.mul_scalar(0.5)?;
    // per-item values averaged once
    x.square()?.mean_all()?;
    assert!(tape.warnings().is_empty(), "{:?}", tape.warnings());
    Ok(())
}

/// `w_a·a + w_b·b` where a and b are the mean-square losses of two leaves.
fn two_terms(wa: f64, wb: f64) -> Result<Tape<f64>> {
    let tape = checked();
    let (x, y) = (leaf(&tape, &[16])?, leaf(&tape, &[16])?);
    let a = tape.apply(Squares { w: wa, mean: true }, &[&x])?;
    let b = tape.apply(Squares { w: wb, mean: true }, &[&y])?;
    let total = a.add(&b)?;
    let grads = total.backward()?;
    assert!(grads.get(&x).is_some() && grads.get(&y).is_some());
    Ok(tape)
}

#[test]
fn dominant_term_fires() -> Result<()> {
    // same data, one term weighted 20×: its gradient norm is 20/21 = 95%
    let w = two_terms(20.0, 1.0)?.warnings();
    match &w[..] {
        [Warning::DominantTerm { term, share, norms }] => {
            assert_eq!(term, "mean_squares#1");
            assert!((share - 20.0 / 21.0).abs() < 1e-12, "{share}");
            assert_eq!(norms.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn balanced_terms_are_clean() -> Result<()> {
    // 5 : 1 is an 83% share, under the 90% line
    assert!(two_terms(5.0, 1.0)?.warnings().is_empty());
    Ok(())
}

#[test]
fn dominant_term_counts_the_weight_applied_outside() -> Result<()> {
    // the weight is a mul_scalar after the loss: backward reads it off the
    // gradient that reaches the term
    let tape = checked();
    let (x, y) = (leaf(&tape, &[16])?, leaf(&tape, &[16])?);
    let a = tape.apply(Squares { w: 1.0, mean: true }, &[&x])?;
    let b = tape.apply(Squares { w: 1.0, mean: true }, &[&y])?;
    a.mul_scalar(0.01)?.add(&b)?.backward()?;
    assert!(matches!(&tape.warnings()[..],
        [Warning::DominantTerm { term, .. }] if term == "mean_squares#2"));
    Ok(())
}
