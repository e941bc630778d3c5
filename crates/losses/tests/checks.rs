//! Check mode on real losses: each check fires on a minimal case of the
//! mistake, and the test right below it runs the correct version of the same
//! code and gets no warning.

use lossgraph_autodiff::{Result, Tape, Var, Warning};
use lossgraph_losses::*;
use lossgraph_tensor::Tensor;

fn checked() -> Tape<f32> {
    let tape = Tape::new();
    tape.set_check_mode(true);
    tape
}

/// Logits of a fresh model: `[rows, c]` values of both signs.
fn logits(tape: &Tape<f32>, rows: usize, c: usize) -> Result<Var<f32>> {
    Ok(tape.leaf(Tensor::randn([rows, c], 0.0, 1.0, 7)?))
}

fn ids(v: &[i64], dims: &[usize]) -> Result<Tensor<i64>> {
    Ok(Tensor::from_vec(v.to_vec(), dims)?)
}

fn only(tape: &Tape<f32>) -> Warning {
    let w = tape.warnings();
    assert_eq!(w.len(), 1, "expected one warning, got {w:?}");
    w[0].clone()
}

fn clean(tape: &Tape<f32>) {
    assert!(tape.warnings().is_empty(), "{:?}", tape.warnings());
}

// --- check 1: probabilities given to a logits loss -------------------------

#[test]
fn cross_entropy_on_softmax_output_fires() -> Result<()> {
    let tape = checked();
    let z = logits(&tape, 8, 5)?;
    let y = ids(&[0, 1, 2, 3, 4, 0, 1, 2], &[8])?;
    cross_entropy(&z.softmax()?, &y, &CrossEntropyOptions::default())?;
    match only(&tape) {
        Warning::ProbabilitiesAsLogits {
            op, made_by, rows, ..
        } => {
            assert_eq!(op, "cross_entropy");
            assert_eq!(made_by.as_deref(), Some("softmax"));
            let (n, err) = rows.unwrap();
            assert!(n == 8 && err < 1e-6, "{n} {err}");
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn cross_entropy_on_logits_is_clean() -> Result<()> {
    let tape = checked();
    let z = logits(&tape, 8, 5)?;
    let y = ids(&[0, 1, 2, 3, 4, 0, 1, 2], &[8])?;
    cross_entropy(&z, &y, &CrossEntropyOptions::default())?;
    clean(&tape);
    Ok(())
}

#[test]
fn probabilities_as_data_fire_by_their_values() -> Result<()> {
    // rows that sum to 1, made off the tape: the values alone are the evidence
    let tape = checked();
    let p = Tensor::<f32>::rand_uniform([6, 4], 0.0, 1.0, 3)?;
    let p = p.div(&p.sum(1, true)?)?;
    brier(
        &tape.leaf(p),
        &ids(&[0, 1, 2, 3, 0, 1], &[6])?,
        &BrierOptions::default(),
    )?;
    assert!(matches!(
        only(&tape),
        Warning::ProbabilitiesAsLogits {
            made_by: None,
            rows: Some((6, _)),
            ..
        }
    ));
    Ok(())
}

#[test]
fn non_negative_logits_that_are_not_distributions_are_clean() -> Result<()> {
    // all in [0, 1] but rows do not sum to 1: not enough evidence
    let tape = checked();
    let z = tape.leaf(Tensor::<f32>::rand_uniform([6, 4], 0.0, 1.0, 3)?);
    brier(
        &z,
        &ids(&[0, 1, 2, 3, 0, 1], &[6])?,
        &BrierOptions::default(),
    )?;
    clean(&tape);
    Ok(())
}

#[test]
fn bce_with_logits_on_sigmoid_output_fires() -> Result<()> {
    let tape = checked();
    let z = logits(&tape, 4, 1)?;
    let y = tape.constant(Tensor::from_vec(vec![1.0, 0.0, 1.0, 0.0], [4, 1])?);
    bce_with_logits(&z.sigmoid()?, &y, &BceWithLogitsOptions::default())?;
    assert!(
        matches!(only(&tape), Warning::ProbabilitiesAsLogits { made_by: Some(m), rows: None, .. } if m == "sigmoid")
    );
    Ok(())
}

#[test]
fn bce_with_logits_on_logits_is_clean() -> Result<()> {
    let tape = checked();
    let z = logits(&tape, 4, 1)?;
    let y = tape.constant(Tensor::from_vec(vec![1.0, 0.0, 1.0, 0.0], [4, 1])?);
    bce_with_logits(&z, &y, &BceWithLogitsOptions::default())?;
    clean(&tape);
    Ok(())
}

#[test]
fn sigmoid_focal_and_kl_logits_on_probabilities_fire() -> Result<()> {
    let tape = checked();
    let p = tape.leaf(Tensor::<f32>::rand_uniform([32], 0.0, 1.0, 1)?);
    let y = tape.constant(Tensor::<f32>::rand_uniform([32], 0.0, 1.0, 2)?.map(f32::round));
    sigmoid_focal(&p, &y, &SigmoidFocalOptions::default())?;
    let (s, t) = (logits(&tape, 4, 3)?, logits(&tape, 4, 3)?);
    kl_logits(&s, &t.softmax()?, &KlLogitsOptions::default())?;
    let w = tape.warnings();
    assert!(
        matches!(&w[..], [
        Warning::ProbabilitiesAsLogits { op: a, made_by: None, values: 32, .. },
        Warning::ProbabilitiesAsLogits { op: b, input, .. },
    ] if a == "sigmoid_focal" && b == "kl_logits" && input == "teacher"),
        "{w:?}"
    );
    Ok(())
}

#[test]
fn sigmoid_focal_and_kl_logits_on_logits_are_clean() -> Result<()> {
    let tape = checked();
    let z = tape.leaf(Tensor::<f32>::randn([32], 0.0, 1.0, 1)?);
    let y = tape.constant(Tensor::<f32>::rand_uniform([32], 0.0, 1.0, 2)?.map(f32::round));
    sigmoid_focal(&z, &y, &SigmoidFocalOptions::default())?;
    let (s, t) = (logits(&tape, 4, 3)?, logits(&tape, 4, 3)?);
    kl_logits(&s, &t, &KlLogitsOptions::default())?;
    clean(&tape);
    Ok(())
}

#[test]
fn linear_cross_entropy_whose_logits_are_distributions_fires() -> Result<()> {
    // a weight that maps every hidden row to a distribution over 4 classes
    let tape = checked();
    let h = tape.leaf(Tensor::from_vec(vec![1.0f32; 6], [3, 2])?);
    let w = tape.leaf(Tensor::from_vec(
        vec![0.1f32, 0.0, 0.2, 0.0, 0.3, 0.0, 0.4, 0.0],
        [4, 2],
    )?);
    linear_cross_entropy(&h, &w, None, &ids(&[0, 1, 2], &[3])?, &Default::default())?;
    assert!(matches!(
        only(&tape),
        Warning::ProbabilitiesAsLogits {
            rows: Some((3, _)),
            ..
        }
    ));
    Ok(())
}

#[test]
fn linear_cross_entropy_is_clean() -> Result<()> {
    let tape = checked();
    let h = logits(&tape, 3, 2)?;
    let w = tape.leaf(Tensor::randn([4, 2], 0.0, 1.0, 9)?);
    linear_cross_entropy(&h, &w, None, &ids(&[0, 1, 2], &[3])?, &Default::default())?;
    clean(&tape);
    Ok(())
}

// --- check 2: nll / kl_div input that is not log-probabilities -------------

#[test]
fn nll_on_logits_fires() -> Result<()> {
    let tape = checked();
    let z = logits(&tape, 8, 5)?;
    nll(
        &z,
        &ids(&[0, 1, 2, 3, 4, 0, 1, 2], &[8])?,
        &NllOptions::default(),
    )?;
    match only(&tape) {
        Warning::NotLogProbabilities {
            positive,
            worst_row,
            values,
            ..
        } => {
            assert_eq!(values, 40);
            assert!(positive > 0);
            assert!(worst_row.unwrap().1.abs() > 0.01);
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn nll_on_log_softmax_is_clean() -> Result<()> {
    let tape = checked();
    let z = logits(&tape, 8, 5)?;
    nll(
        &z.log_softmax()?,
        &ids(&[0, 1, 2, 3, 4, 0, 1, 2], &[8])?,
        &NllOptions::default(),
    )?;
    clean(&tape);
    Ok(())
}

#[test]
fn nll_on_log_of_softmax_fires() -> Result<()> {
    // the values are log-probabilities; the tape shows how they were made
    let tape = checked();
    let z = logits(&tape, 8, 5)?;
    let logp = z.softmax()?.log()?;
    nll(
        &logp,
        &ids(&[0, 1, 2, 3, 4, 0, 1, 2], &[8])?,
        &NllOptions::default(),
    )?;
    assert!(matches!(only(&tape), Warning::LogOfSoftmax { node, .. } if node == logp.id()));
    Ok(())
}

#[test]
fn kl_div_on_probabilities_fires() -> Result<()> {
    let tape = checked();
    let (s, t) = (logits(&tape, 4, 3)?, logits(&tape, 4, 3)?);
    let opts = KlDivOptions {
        reduction: Reduction::BatchMean,
        ..Default::default()
    };
    kl_div(&s.softmax()?, &t.softmax()?, &opts)?;
    assert!(matches!(
        only(&tape),
        Warning::NotLogProbabilities { positive: 12, .. }
    ));
    Ok(())
}

#[test]
fn kl_div_on_log_probabilities_is_clean() -> Result<()> {
    let tape = checked();
    let (s, t) = (logits(&tape, 4, 3)?, logits(&tape, 4, 3)?);
    let opts = KlDivOptions {
        reduction: Reduction::BatchMean,
        ..Default::default()
    };
    kl_div(&s.log_softmax()?, &t.softmax()?, &opts)?;
    clean(&tape);
    Ok(())
}

// --- check 3: bce on sigmoid output ------------------------------------------

#[test]
fn bce_on_sigmoid_fires() -> Result<()> {
    let tape = checked();
    let z = logits(&tape, 4, 1)?;
    let y = tape.constant(Tensor::from_vec(vec![1.0, 0.0, 1.0, 0.0], [4, 1])?);
    let p = z.sigmoid()?;
    bce(&p, &y, &BceOptions::default())?;
    assert!(matches!(only(&tape), Warning::SigmoidBeforeBce { node, .. } if node == p.id()));
    Ok(())
}

#[test]
fn bce_on_probabilities_from_data_is_clean() -> Result<()> {
    // bce is right for probabilities that are not a sigmoid of the model's
    // output (a calibrated forecast, an ensemble's average)
    let tape = checked();
    let p = tape.leaf(Tensor::from_vec(vec![0.9f32, 0.2, 0.7, 0.1], [4, 1])?);
    let y = tape.constant(Tensor::from_vec(vec![1.0, 0.0, 1.0, 0.0], [4, 1])?);
    bce(&p, &y, &BceOptions::default())?;
    clean(&tape);
    Ok(())
}

// --- check 4: padding averaged in --------------------------------------------

/// Three sequences of lengths 5, 3 and 2, padded with 0 to 5.
const PADDED: [i64; 15] = [3, 4, 1, 2, 5, 3, 1, 2, 0, 0, 2, 2, 0, 0, 0];

#[test]
fn padding_without_ignore_index_fires() -> Result<()> {
    let tape = checked();
    let z = tape.leaf(Tensor::randn([3, 5, 6], 0.0, 1.0, 4)?);
    cross_entropy(&z, &ids(&PADDED, &[3, 5])?, &CrossEntropyOptions::default())?;
    match only(&tape) {
        Warning::PaddingAveragedIn {
            pad_id,
            padded,
            rows_padded,
            rows,
            ignore_index,
            ..
        } => assert_eq!(
            (pad_id, padded, rows_padded, rows, ignore_index),
            (0, 5, 2, 3, -100)
        ),
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn padding_with_ignore_index_is_clean() -> Result<()> {
    let tape = checked();
    let z = tape.leaf(Tensor::randn([3, 5, 6], 0.0, 1.0, 4)?);
    let opts = CrossEntropyOptions {
        ignore_index: 0,
        ..Default::default()
    };
    cross_entropy(&z, &ids(&PADDED, &[3, 5])?, &opts)?;
    // and nll and softmax_focal look at their ids the same way
    let logp = z.log_softmax()?;
    nll(
        &logp,
        &ids(&PADDED, &[3, 5])?,
        &NllOptions {
            ignore_index: 0,
            ..Default::default()
        },
    )?;
    clean(&tape);
    Ok(())
}

// --- check 5: class ids as regression targets --------------------------------

#[test]
fn mse_on_class_ids_fires() -> Result<()> {
    let tape = checked();
    let pred = logits(&tape, 8, 1)?;
    let y = tape.constant(Tensor::from_vec(
        vec![0.0f32, 1., 2., 3., 0., 1., 2., 3.],
        [8, 1],
    )?);
    mse(&pred, &y, &Default::default())?;
    huber(&pred, &y, &Default::default())?;
    let w = tape.warnings();
    assert_eq!(w.len(), 2);
    assert!(matches!(
        &w[0],
        Warning::ClassIdsAsRegressionTargets {
            values: 8,
            classes: 4,
            ..
        }
    ));
    Ok(())
}

#[test]
fn mse_on_real_targets_is_clean() -> Result<()> {
    let tape = checked();
    let pred = logits(&tape, 8, 1)?;
    // whole numbers that are not 0..k (ratings 1–5), and real values
    let stars = tape.constant(Tensor::from_vec(
        vec![1.0f32, 5., 3., 4., 2., 5., 4., 1.],
        [8, 1],
    )?);
    mae(&pred, &stars, &Default::default())?;
    let y = tape.constant(Tensor::randn([8, 1], 0.0, 1.0, 5)?);
    mse(&pred, &y, &Default::default())?;
    clean(&tape);
    Ok(())
}

// --- check 6: a mean averaged again --------------------------------------------

#[test]
fn mean_loss_divided_by_batch_size_fires() -> Result<()> {
    let tape = checked();
    let z = logits(&tape, 8, 5)?;
    let y = ids(&[0, 1, 2, 3, 4, 0, 1, 2], &[8])?;
    let loss = cross_entropy(&z, &y, &CrossEntropyOptions::default())?;
    loss.mul_scalar(1.0 / 8.0)?;
    assert!(
        matches!(only(&tape), Warning::ReducedTwice { first, divisor, .. }
        if first == "cross_entropy" && divisor == 8.0)
    );
    Ok(())
}

#[test]
fn sum_loss_divided_by_batch_size_is_clean() -> Result<()> {
    let tape = checked();
    let z = logits(&tape, 8, 5)?;
    let y = ids(&[0, 1, 2, 3, 4, 0, 1, 2], &[8])?;
    let opts = CrossEntropyOptions {
        reduction: Reduction::Sum,
        ..Default::default()
    };
    cross_entropy(&z, &y, &opts)?.mul_scalar(1.0 / 8.0)?;
    clean(&tape);
    Ok(())
}

// --- check 7: class weights that rescale the gradient ---------------------------

#[test]
fn large_class_weights_with_a_sum_fire() -> Result<()> {
    let tape = checked();
    let z = logits(&tape, 8, 3)?;
    let y = ids(&[0, 1, 2, 0, 1, 2, 0, 1], &[8])?;
    let opts = SoftmaxFocalOptions {
        alpha: Some(vec![10.0, 10.0, 40.0]),
        ..Default::default()
    };
    softmax_focal(&z, &y, &opts)?;
    match only(&tape) {
        Warning::ClassWeightScale {
            option,
            mean,
            batch_mean,
            ..
        } => {
            assert_eq!(option, "alpha");
            assert_eq!(mean, 20.0);
            assert_eq!(batch_mean, (6.0 * 10.0 + 2.0 * 40.0) / 8.0);
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn normalised_class_weights_are_clean() -> Result<()> {
    let tape = checked();
    let z = logits(&tape, 8, 3)?;
    let y = ids(&[0, 1, 2, 0, 1, 2, 0, 1], &[8])?;
    // the same ratios divided by their mean: the gradient keeps its size
    let alpha = Some(vec![0.5, 0.5, 2.0]);
    softmax_focal(
        &z,
        &y,
        &SoftmaxFocalOptions {
            alpha,
            ..Default::default()
        },
    )?;
    // cross_entropy's weighted mean divides by Σ w_y: any scale is fine there
    let weight = Some(vec![10.0, 10.0, 40.0]);
    cross_entropy(
        &z,
        &y,
        &CrossEntropyOptions {
            weight,
            ..Default::default()
        },
    )?;
    clean(&tape);
    Ok(())
}

// --- check 8: every target ignored ------------------------------------------------

#[test]
fn every_target_ignored_fires() -> Result<()> {
    let tape = checked();
    let z = logits(&tape, 4, 3)?;
    let loss = cross_entropy(&z, &ids(&[-100; 4], &[4])?, &CrossEntropyOptions::default())?;
    assert_eq!(loss.item()?, 0.0);
    let v = logits(&tape, 4, 1)?;
    let none = tape.constant(Tensor::zeros([4, 1])?);
    masked_mean(&v, &none, &MaskedMeanOptions::default())?;
    let w = tape.warnings();
    assert!(
        matches!(&w[..], [
        Warning::AllTargetsIgnored { op: a, targets: 4, .. },
        Warning::AllTargetsIgnored { op: b, reason, .. },
    ] if a == "cross_entropy" && b == "masked_mean" && reason == "have mask 0"),
        "{w:?}"
    );
    Ok(())
}

#[test]
fn some_targets_ignored_is_clean() -> Result<()> {
    let tape = checked();
    let z = logits(&tape, 4, 3)?;
    cross_entropy(
        &z,
        &ids(&[-100, 1, -100, 2], &[4])?,
        &CrossEntropyOptions::default(),
    )?;
    let v = logits(&tape, 4, 1)?;
    let some = tape.constant(Tensor::from_vec(vec![0.0, 1.0, 0.0, 0.0], [4, 1])?);
    masked_mean(&v, &some, &MaskedMeanOptions::default())?;
    clean(&tape);
    Ok(())
}

// --- check 9: one term dominates the gradient ---------------------------------------

/// `bce_with_logits + kl_weight · gaussian_kl` on one tape, as a VAE's loss.
fn vae_like(kl_weight: f32) -> Result<Tape<f32>> {
    let tape = checked();
    let z = logits(&tape, 16, 4)?;
    let y = tape.constant(Tensor::<f32>::rand_uniform([16, 4], 0.0, 1.0, 6)?.map(f32::round));
    let mu = logits(&tape, 16, 2)?;
    let logvar = tape.leaf(Tensor::randn([16, 2], 0.0, 0.5, 8)?);
    let recon = bce_with_logits(&z, &y, &BceWithLogitsOptions::default())?;
    let kl = gaussian_kl(&mu, &logvar, &GaussianKlOptions::default())?;
    recon.add(&kl.mul_scalar(kl_weight)?)?.backward()?;
    Ok(tape)
}

#[test]
fn a_negligible_kl_weight_fires() -> Result<()> {
    match only(&vae_like(1e-3)?) {
        Warning::DominantTerm { term, share, norms } => {
            assert_eq!(term, "bce_with_logits");
            assert!(share > 0.99, "{share}");
            assert_eq!(norms[1].0, "gaussian_kl");
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn comparable_terms_are_clean() -> Result<()> {
    clean(&vae_like(0.1)?);
    Ok(())
}

// --- off -------------------------------------------------------------------------------

#[test]
fn check_mode_off_sees_nothing() -> Result<()> {
    let tape = Tape::<f32>::new();
    let z = logits(&tape, 8, 5)?;
    let y = ids(&[0, 1, 2, 3, 4, 0, 1, 2], &[8])?;
    cross_entropy(&z.softmax()?, &y, &CrossEntropyOptions::default())?.mul_scalar(0.125)?;
    assert!(tape.warnings().is_empty());
    Ok(())
}
