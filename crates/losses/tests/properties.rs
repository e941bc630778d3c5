//! Property tests over the whole catalog, through the registry: random sizes,
//! option families, corrupted inputs and extreme magnitudes. Every call is
//! either Ok with a finite output and a finite gradient for every real input,
//! equal to its naive twin's, or an error of the right kind — never a panic.

use lossgraph_autodiff::Tape;
use lossgraph_losses::catalog::{call, option_families, Size, CATALOG};
use lossgraph_losses::registry::{build, Call, Flavor, InputValue, OptValue};
use lossgraph_tensor::{ErrorKind, Float, Tensor};
use proptest::prelude::*;

/// The output and the gradient of every real input (`None` where the
/// backward gave it none), after backpropagating ones.
type Run<T> = (Tensor<T>, Vec<(String, Option<Tensor<T>>)>);

/// Run `call` in dtype `T` and `flavor`; the output and the gradients, or
/// the error kind.
fn run_flavor<T: Float>(c: &Call, flavor: Flavor) -> Result<Run<T>, ErrorKind> {
    let tape = Tape::<T>::new();
    let b = build(&tape, c, flavor).map_err(|e| e.kind())?;
    let out = b.output.value();
    let g = b
        .output
        .backward_with(Tensor::ones(out.shape().clone()).unwrap())
        .map_err(|e| e.kind())?;
    let grads = b
        .leaves
        .iter()
        .map(|(name, v)| (name.clone(), g.get(v).cloned()))
        .collect();
    Ok((out, grads))
}

/// Run `call` fused in dtype `T`: Ok(true) when the output and every real
/// input's gradient are there and finite (a missing gradient is not
/// finite), else Ok(false); or the error kind.
fn run<T: Float>(c: &Call) -> Result<bool, ErrorKind> {
    let (out, grads) = run_flavor::<T>(c, Flavor::Fused)?;
    let grads_finite = grads
        .iter()
        .all(|(_, g)| g.as_ref().is_some_and(Tensor::all_finite));
    Ok(out.all_finite() && grads_finite)
}

/// `|a − b| ≤ 1e-9·(1 + |b|)` elementwise, shapes equal.
fn close(a: &Tensor<f64>, b: &Tensor<f64>) -> bool {
    a.dims() == b.dims()
        && a.as_slice()
            .iter()
            .zip(b.as_slice())
            .all(|(x, y)| (x - y).abs() <= 1e-9 * (1.0 + y.abs()))
}

/// Fused and naive in f64 agree on the output and on every gradient.
fn twins_agree(c: &Call) -> Result<(), String> {
    let fused = run_flavor::<f64>(c, Flavor::Fused).map_err(|k| format!("fused: {k:?}"))?;
    let naive = run_flavor::<f64>(c, Flavor::Naive).map_err(|k| format!("naive: {k:?}"))?;
    if !close(&fused.0, &naive.0) {
        return Err(format!("outputs differ: {:?} vs {:?}", fused.0, naive.0));
    }
    for ((name, f), (_, n)) in fused.1.iter().zip(&naive.1) {
        match (f, n) {
            (Some(f), Some(n)) if close(f, n) => {}
            _ => return Err(format!("gradient of {name} differs: {f:?} vs {n:?}")),
        }
    }
    Ok(())
}

/// Widths that reach the kernels' edges: none, a few, the 8- and 16-wide
/// vector loops with and without a tail, and a 256-element block.
fn width() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..6,
        1 => Just(8usize),
        1 => Just(15usize),
        1 => Just(16usize),
        1 => Just(17usize),
        1 => Just(255usize),
        1 => Just(256usize),
        1 => Just(257usize),
    ]
}

/// `name`'s tensor with its first axis one longer (its first row repeated,
/// so labels stay labels), or None where a longer first axis is a valid
/// call: `linear_cross_entropy`'s `weight` rows are the vocabulary, free in
/// size when there is no bias to match.
fn one_more_row(call: &Call, name: &str) -> Option<Tensor<f64>> {
    let Some(InputValue::Real(t)) = call.inputs.get(name) else {
        return None;
    };
    if call.op == "linear_cross_entropy" && name == "weight" && !call.inputs.contains_key("bias") {
        return None;
    }
    let d = t.dims();
    let Some(&rows) = d.first() else {
        // a scalar input becomes two values
        return Some(Tensor::from_vec(vec![t.to_vec()[0]; 2], [2]).unwrap());
    };
    let row = t.numel() / rows.max(1);
    let mut data = t.to_vec();
    let first: Vec<f64> = if rows == 0 {
        vec![0.5; row]
    } else {
        data[..row].to_vec()
    };
    data.extend(first);
    let mut grown = d.to_vec();
    grown[0] += 1;
    Some(Tensor::from_vec(data, grown).unwrap())
}

fn op_and_family() -> impl Strategy<Value = (usize, usize)> {
    (0..CATALOG.len()).prop_flat_map(|i| (Just(i), 0..option_families(CATALOG[i].name).len()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Valid inputs of any size (empty batches, no classes, block-sized
    /// rows) give finite results equal to the naive twin's.
    #[test]
    fn valid_inputs_give_finite_results((i, f) in op_and_family(), n in 0usize..5, c in width(), seed in 0u64..1000) {
        let op = CATALOG[i].name;
        let opts = &option_families(op)[f];
        let call = call(op, opts, Size::new(n, c), seed).unwrap();
        if c == 0 {
            // a class axis of width 0 holds no valid class: a typed error
            // or a finite result, never a panic
            for r in [run::<f64>(&call), run::<f32>(&call)] {
                prop_assert!(
                    matches!(r, Ok(true) | Err(ErrorKind::ShapeMismatch | ErrorKind::InvalidTarget | ErrorKind::InvalidOption)),
                    "{} {:?} n={} c=0: {:?}", op, opts, n, r
                );
            }
            return Ok(());
        }
        prop_assert_eq!(run::<f64>(&call), Ok(true), "{} {:?} n={} c={}", op, opts, n, c);
        prop_assert_eq!(run::<f32>(&call), Ok(true), "{} {:?} n={} c={} (f32)", op, opts, n, c);
        if let Err(e) = twins_agree(&call) {
            prop_assert!(false, "{} {:?} n={} c={}: {}", op, opts, n, c, e);
        }
    }

    /// A real input one row longer than the others is a ShapeMismatch —
    /// never a panic, never a result.
    #[test]
    fn mismatched_shapes_are_errors((i, f) in op_and_family(), n in 1usize..4, c in 2usize..5, which in 0usize..4, seed in 0u64..100) {
        let op = CATALOG[i].name;
        let mut call = call(op, &option_families(op)[f], Size::new(n, c), seed).unwrap();
        let reals: Vec<String> = call.inputs.iter().filter(|(_, v)| matches!(v, InputValue::Real(_))).map(|(k, _)| k.clone()).collect();
        let name = &reals[which % reals.len()];
        let Some(grown) = one_more_row(&call, name) else { return Ok(()) };
        call.inputs.insert(name.clone(), InputValue::Real(grown));
        let r = run::<f64>(&call);
        prop_assert!(matches!(r, Err(ErrorKind::ShapeMismatch)), "{op} {name}: {r:?}");
    }

    /// A class id outside [0, C) is InvalidTarget: just past either end
    /// (−1, C, …, C + 4, the off-by-one) or far from it, at any position.
    #[test]
    fn out_of_range_ids_are_invalid_targets(i in 0..CATALOG.len(), n in 1usize..4, c in 2usize..5, bad in prop_oneof![Just(-7i64), Just(-1), 0i64..5, 5i64..50], at in 0usize..4, seed in 0u64..100) {
        let op = CATALOG[i].name;
        let mut call = call(op, &option_families(op)[0], Size::new(n, c), seed).unwrap();
        let Some(InputValue::Int(t)) = call.inputs.get("target").cloned() else { return Ok(()) };
        let mut ids = t.to_vec();
        let at = at % ids.len();
        ids[at] = if bad >= 0 { c as i64 + bad } else { bad };
        call.inputs.insert("target".into(), InputValue::Int(Tensor::from_vec(ids, t.dims().to_vec()).unwrap()));
        prop_assert_eq!(run::<f64>(&call), Err(ErrorKind::InvalidTarget), "{}", op);
    }

    /// Unknown reductions and options of the wrong type are InvalidOption.
    #[test]
    fn bad_options_are_invalid_options(i in 0..CATALOG.len(), which in 0usize..3) {
        let op = CATALOG[i].name;
        let mut call = call(op, &option_families(op)[0], Size::new(3, 3), 1).unwrap();
        let (k, v) = match which {
            0 => ("reduction", OptValue::Str("median".into())),
            1 => ("no_such_option", OptValue::Num(1.0)),
            _ => ("reduction", OptValue::Num(3.0)),
        };
        if op.ends_with("_mean") && k == "reduction" { return Ok(()) } // no reduction option
        call.options.insert(k.into(), v);
        prop_assert_eq!(run::<f64>(&call), Err(ErrorKind::InvalidOption), "{} {}", op, k);
    }
}

/// Ops whose inputs are logits, scores or residuals: scaled to ±1e4 they must
/// stay finite in f32 and f64, value and gradient.
#[test]
fn extreme_logits_stay_finite() {
    let scaled = [
        ("mse", vec!["pred", "target"]),
        ("mae", vec!["pred", "target"]),
        ("huber", vec!["pred", "target"]),
        ("smooth_l1", vec!["pred", "target"]),
        ("log_cosh", vec!["pred", "target"]),
        ("quantile", vec!["pred", "target"]),
        ("bce_with_logits", vec!["logits"]),
        ("sigmoid_focal", vec!["logits"]),
        ("cross_entropy", vec!["logits"]),
        ("softmax_focal", vec!["logits"]),
        ("brier", vec!["logits"]),
        ("hinge", vec!["scores"]),
        ("multi_margin", vec!["scores"]),
        ("kl_logits", vec!["student", "teacher"]),
        ("margin_ranking", vec!["a", "b"]),
        ("bradley_terry", vec!["chosen", "rejected"]),
        ("dpo", vec!["policy_chosen", "ref_rejected"]),
        ("info_nce", vec!["query", "key"]),
        ("linear_cross_entropy", vec!["bias"]),
    ];
    for (op, names) in scaled {
        for opts in option_families(op) {
            let mut c = call(op, &opts, Size::new(4, 5), 3).unwrap();
            for name in &names {
                if let Some(InputValue::Real(t)) = c.inputs.get(*name) {
                    let big = t.mul_scalar(1e4);
                    c.inputs.insert(name.to_string(), InputValue::Real(big));
                }
            }
            assert_eq!(run::<f64>(&c), Ok(true), "{op} {opts:?} f64");
            assert_eq!(run::<f32>(&c), Ok(true), "{op} {opts:?} f32");
        }
    }
}
