//! Property tests over the whole catalog, through the registry: random sizes,
//! option families, corrupted inputs and extreme magnitudes. Every call is
//! either Ok with a finite output (and finite gradients) for finite inputs,
//! or an error of the right kind — never a panic.

use lossgraph_autodiff::Tape;
use lossgraph_losses::catalog::{call, option_families, Size, CATALOG};
use lossgraph_losses::registry::{build, Call, Flavor, InputValue, OptValue};
use lossgraph_tensor::{ErrorKind, Float, Tensor};
use proptest::prelude::*;

/// Run `call` fused in dtype `T`; Ok(finite?) or the error kind.
fn run<T: Float>(c: &Call) -> Result<bool, ErrorKind> {
    let tape = Tape::<T>::new();
    let b = build(&tape, c, Flavor::Fused).map_err(|e| e.kind())?;
    let out = b.output.value();
    let g = b
        .output
        .backward_with(Tensor::ones(out.shape().clone()).unwrap())
        .map_err(|e| e.kind())?;
    let grads_finite = b
        .leaves
        .values()
        .all(|v| g.get(v).is_none_or(|t| t.all_finite()));
    Ok(out.all_finite() && grads_finite)
}

fn op_and_family() -> impl Strategy<Value = (usize, usize)> {
    (0..CATALOG.len()).prop_flat_map(|i| (Just(i), 0..option_families(CATALOG[i].name).len()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Valid inputs of any size (empty batches included) give finite results.
    #[test]
    fn valid_inputs_give_finite_results((i, f) in op_and_family(), n in 0usize..5, c in 1usize..5, seed in 0u64..1000) {
        let op = CATALOG[i].name;
        let opts = &option_families(op)[f];
        let c = if op == "info_nce" || op == "linear_cross_entropy" { c.max(1) } else { c };
        let call = call(op, opts, Size::new(n, c), seed).unwrap();
        prop_assert_eq!(run::<f64>(&call), Ok(true), "{} {:?} n={} c={}", op, opts, n, c);
        prop_assert_eq!(run::<f32>(&call), Ok(true), "{} {:?} n={} c={} (f32)", op, opts, n, c);
    }

    /// A real input with a different shape is a ShapeMismatch (or, where the
    /// op broadcasts that input, a valid call) — never a panic.
    #[test]
    fn mismatched_shapes_are_errors((i, f) in op_and_family(), n in 1usize..4, c in 2usize..5, which in 0usize..4, seed in 0u64..100) {
        let op = CATALOG[i].name;
        let mut call = call(op, &option_families(op)[f], Size::new(n, c), seed).unwrap();
        let reals: Vec<String> = call.inputs.iter().filter(|(_, v)| matches!(v, InputValue::Real(_))).map(|(k, _)| k.clone()).collect();
        let name = &reals[which % reals.len()];
        if let Some(InputValue::Real(t)) = call.inputs.get(name) {
            let mut d = t.dims().to_vec();
            if let Some(last) = d.last_mut() { *last += 1 } else { d.push(2) }
            let bigger = Tensor::full(d, 0.5)?;
            call.inputs.insert(name.clone(), InputValue::Real(bigger));
        }
        match run::<f64>(&call) {
            Ok(finite) => prop_assert!(finite),
            Err(k) => prop_assert!(matches!(k, ErrorKind::ShapeMismatch | ErrorKind::InvalidValue | ErrorKind::InvalidTarget), "{op}: {k:?}"),
        }
    }

    /// A class id outside [0, C) is InvalidTarget.
    #[test]
    fn out_of_range_ids_are_invalid_targets(i in 0..CATALOG.len(), n in 1usize..4, c in 2usize..5, bad in prop_oneof![Just(-7i64), Just(-1), 5i64..50], seed in 0u64..100) {
        let op = CATALOG[i].name;
        let mut call = call(op, &option_families(op)[0], Size::new(n, c), seed).unwrap();
        let Some(InputValue::Int(t)) = call.inputs.get("target").cloned() else { return Ok(()) };
        let mut ids = t.to_vec();
        ids[0] = if bad >= 0 { c as i64 + bad } else { bad };
        if ids[0] == -100 { return Ok(()) } // the default ignore_index
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
