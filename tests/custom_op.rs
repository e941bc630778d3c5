//! The worked example of `docs/custom-ops.md` as a test: Poly-1 cross-entropy
//! written as a fused op with its own backward and saved intermediates,
//! checked against finite differences and against a twin made of primitive
//! ops — and a deliberately wrong backward that gradcheck must catch.
//!
//! Keep the op below in step with the one in the guide page.

use lossgraph::autodiff::{BackwardCtx, ErrorKind};
use lossgraph::prelude::*;

/// Poly-1 cross-entropy per row: `ℓ = −log p_y + ε·(1 − p_y)`, `p = softmax(z)`.
struct Poly1 {
    /// One class id per row; not differentiable, so it lives in the op.
    target: Vec<usize>,
    /// The Poly-1 coefficient ε.
    epsilon: f64,
}

/// What forward keeps for backward: one log-sum-exp and one `p_y` per row.
struct RowStats<T> {
    lse: Vec<T>,
    p_y: Vec<T>,
}

/// `log Σ e^z` of one row, shifted by its max so no `exp` overflows.
fn logsumexp<T: Float>(row: &[T]) -> T {
    let m = row.iter().copied().fold(T::neg_infinity(), T::max);
    if !m.is_finite() {
        return m;
    }
    m + row.iter().map(|&z| (z - m).exp()).sum::<T>().ln()
}

impl<T: Float> CustomOp<T> for Poly1 {
    type Saved = RowStats<T>;

    fn name(&self) -> &str {
        "poly1"
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<(Tensor<T>, RowStats<T>)> {
        let z = inputs[0];
        let c = z.dims()[1];
        let eps = T::of(self.epsilon);
        let mut saved = RowStats {
            lse: Vec::new(),
            p_y: Vec::new(),
        };
        let mut loss = Vec::with_capacity(self.target.len());
        for (row, &y) in z.as_slice().chunks(c).zip(&self.target) {
            let lse = logsumexp(row);
            let log_p = row[y] - lse; // log p_y, never log(0)
            let one_minus_p = -log_p.exp_m1(); // 1 − p_y without cancellation
            loss.push(-log_p + eps * one_minus_p);
            saved.lse.push(lse);
            saved.p_y.push(log_p.exp());
        }
        let n = loss.len();
        Ok((Tensor::from_vec(loss, [n])?, saved))
    }

    fn backward(&self, cx: &BackwardCtx<'_, T, RowStats<T>>) -> Result<Vec<Option<Tensor<T>>>> {
        if !cx.needs_grad[0] {
            return Ok(vec![None]);
        }
        let z = &cx.inputs[0];
        let c = z.dims()[1];
        let eps = T::of(self.epsilon);
        let g = cx.grad_output.as_slice(); // one upstream gradient per row
        let mut dz = Vec::with_capacity(z.numel());
        for (i, (row, &y)) in z.as_slice().chunks(c).zip(&self.target).enumerate() {
            let (lse, p_y) = (cx.saved.lse[i], cx.saved.p_y[i]);
            // ∂ℓ/∂z_k = (1 + ε·p_y)·(p_k − [k = y])
            let scale = g[i] * (T::one() + eps * p_y);
            for (k, &zk) in row.iter().enumerate() {
                let p_k = (zk - lse).exp();
                let hot = if k == y { T::one() } else { T::zero() };
                dz.push(scale * (p_k - hot));
            }
        }
        Ok(vec![Some(Tensor::from_vec(dz, z.shape().clone())?)])
    }
}

/// Check the inputs, then record the op: `logits [N, C]`, `target [N]`.
fn poly1<T: Float>(logits: &Var<T>, target: &IndexTensor, epsilon: f64) -> Result<Var<T>> {
    use lossgraph::tensor::Error as TensorError;
    let dims = logits.dims();
    if dims.len() != 2 || target.dims() != [dims[0]] {
        let shapes: [&[usize]; 2] = [&dims, target.dims()];
        return Err(
            TensorError::shape("poly1", &shapes, "need logits [N, C] and target [N]").into(),
        );
    }
    let c = dims[1] as i64;
    let mut ids = Vec::with_capacity(target.numel());
    for &y in target.as_slice() {
        if !(0..c).contains(&y) {
            return Err(TensorError::target("poly1", format!("class {y} outside [0, {c})")).into());
        }
        ids.push(y as usize);
    }
    let op = Poly1 {
        target: ids,
        epsilon,
    };
    logits.tape().apply(op, &[logits])
}

/// The naive twin from primitive ops: `−log_softmax(z)_y + ε·(1 − e^{log_softmax(z)_y})`.
fn poly1_naive<T: Float>(logits: &Var<T>, target: &IndexTensor, epsilon: f64) -> Result<Var<T>> {
    let n = target.numel();
    let log_p = logits
        .log_softmax()?
        .gather(1, &target.reshape([n, 1])?)?
        .reshape([n])?;
    let one_minus_p = log_p.exp()?.neg()?.add_scalar(T::one())?;
    log_p.neg()?.add(&one_minus_p.mul_scalar(T::of(epsilon))?)
}

/// The same forward with a backward that forgets the `1 + ε·p_y` factor:
/// the plain cross-entropy gradient.
struct Poly1WrongBackward(Poly1);

impl CustomOp<f64> for Poly1WrongBackward {
    type Saved = RowStats<f64>;
    fn name(&self) -> &str {
        "poly1_wrong"
    }
    fn forward(&self, inputs: &[&Tensor<f64>]) -> Result<(Tensor<f64>, RowStats<f64>)> {
        self.0.forward(inputs)
    }
    fn backward(
        &self,
        cx: &BackwardCtx<'_, f64, RowStats<f64>>,
    ) -> Result<Vec<Option<Tensor<f64>>>> {
        let z = &cx.inputs[0];
        let c = z.dims()[1];
        let g = cx.grad_output.as_slice();
        let mut dz = Vec::with_capacity(z.numel());
        for (i, (row, &y)) in z.as_slice().chunks(c).zip(&self.0.target).enumerate() {
            for (k, &zk) in row.iter().enumerate() {
                let p_k = (zk - cx.saved.lse[i]).exp();
                dz.push(g[i] * (p_k - if k == y { 1.0 } else { 0.0 }));
            }
        }
        Ok(vec![Some(Tensor::from_vec(dz, z.shape().clone())?)])
    }
}

/// The forward alone: no backward rule.
struct Poly1NoBackward(Poly1);

impl CustomOp<f64> for Poly1NoBackward {
    type Saved = RowStats<f64>;
    fn name(&self) -> &str {
        "poly1_forward_only"
    }
    fn forward(&self, inputs: &[&Tensor<f64>]) -> Result<(Tensor<f64>, RowStats<f64>)> {
        self.0.forward(inputs)
    }
}

/// The forward with a backward that breaks the contract: a gradient of the
/// wrong shape (`shape: true`) or none at all for a tracked input.
struct Poly1BadGradient {
    inner: Poly1,
    shape: bool,
}

impl CustomOp<f64> for Poly1BadGradient {
    type Saved = RowStats<f64>;
    fn name(&self) -> &str {
        "poly1_bad_gradient"
    }
    fn forward(&self, inputs: &[&Tensor<f64>]) -> Result<(Tensor<f64>, RowStats<f64>)> {
        self.inner.forward(inputs)
    }
    fn backward(
        &self,
        _: &BackwardCtx<'_, f64, RowStats<f64>>,
    ) -> Result<Vec<Option<Tensor<f64>>>> {
        Ok(vec![self.shape.then(|| Tensor::zeros([1]).unwrap())])
    }
}

fn ids(v: &[i64]) -> IndexTensor {
    Tensor::from_vec(v.to_vec(), [v.len()]).unwrap()
}

fn op_for(target: &IndexTensor, epsilon: f64) -> Poly1 {
    Poly1 {
        target: target.as_slice().iter().map(|&y| y as usize).collect(),
        epsilon,
    }
}

#[test]
fn poly1_passes_gradcheck() {
    let cases: [(&[usize], &[i64], f64); 4] = [
        (&[1, 2], &[1], 1.0),
        (&[4, 5], &[0, 4, 2, 2], 1.0),
        (&[3, 7], &[6, 0, 3], -0.5),
        (&[2, 3], &[2, 1], 0.0),
    ];
    for (seed, (shape, target, epsilon)) in cases.into_iter().enumerate() {
        let z = Tensor::<f64>::randn(shape.to_vec(), 0.0, 2.0, seed as u64).unwrap();
        let t = ids(target);
        let report = gradcheck(
            |v| poly1(&v[0], &t, epsilon),
            &[z],
            &GradcheckOptions::default(),
        )
        .unwrap();
        assert!(
            report.passed(),
            "shape {shape:?}, ε = {epsilon}: {:?}",
            report.mismatches
        );
        assert_eq!(report.checked, shape.iter().product::<usize>());
    }
}

#[test]
fn poly1_passes_fast_gradcheck_on_a_larger_input() {
    let z = Tensor::<f64>::randn([64, 50], 0.0, 3.0, 11).unwrap();
    let t = Tensor::from_vec((0..64).map(|i| (i * 7) % 50).collect(), [64]).unwrap();
    let report = gradcheck(
        |v| poly1(&v[0], &t, 1.0)?.mean_all(),
        &[z],
        &GradcheckOptions::fast(16),
    )
    .unwrap();
    assert!(report.passed(), "{:?}", report.mismatches);
}

#[test]
fn poly1_equals_its_naive_twin() {
    let tape = Tape::<f64>::new();
    let z = tape.leaf(Tensor::randn([5, 4], 0.0, 1.5, 3).unwrap());
    let t = ids(&[3, 0, 1, 1, 2]);
    let fused = poly1(&z, &t, 1.0).unwrap();
    let naive = poly1_naive(&z, &t, 1.0).unwrap();
    let (a, b) = (fused.value().to_vec(), naive.value().to_vec());
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{x} vs {y}");
    }
    let gf = fused.mean_all().unwrap().backward().unwrap();
    let gn = naive.mean_all().unwrap().backward().unwrap();
    let (a, b) = (gf.get(&z).unwrap().to_vec(), gn.get(&z).unwrap().to_vec());
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-12, "{x} vs {y}");
    }
}

#[test]
fn poly1_with_zero_epsilon_is_cross_entropy() {
    use lossgraph::losses::{cross_entropy, CrossEntropyOptions, Reduction};
    let tape = Tape::<f64>::new();
    let z = tape.leaf(Tensor::randn([3, 6], 0.0, 1.0, 5).unwrap());
    let t = ids(&[5, 0, 2]);
    let opts = CrossEntropyOptions {
        reduction: Reduction::None,
        ..Default::default()
    };
    let ce = cross_entropy(&z, &t, &opts).unwrap().value().to_vec();
    let p1 = poly1(&z, &t, 0.0).unwrap().value().to_vec();
    for (x, y) in p1.iter().zip(&ce) {
        assert!((x - y).abs() <= 1e-13, "{x} vs {y}");
    }
}

#[test]
fn a_wrong_backward_is_caught() {
    let z = Tensor::<f64>::randn([4, 5], 0.0, 1.0, 7).unwrap();
    let t = ids(&[0, 1, 2, 3]);
    let report = gradcheck(
        |v| {
            let op = Poly1WrongBackward(op_for(&t, 1.0));
            v[0].tape().apply(op, &[&v[0]])
        },
        std::slice::from_ref(&z),
        &GradcheckOptions::default(),
    )
    .unwrap();
    assert!(!report.passed());
    // every element of every row is off by the missing factor 1 + ε·p_y
    assert_eq!(report.mismatches.len(), 20);
    let m = &report.mismatches[0];
    assert_eq!(m.input, Some(0));
    assert!((m.analytic - m.numeric).abs() > 1e-3);
    let err = report.into_result().unwrap_err();
    assert!(matches!(err, Error::GradcheckFailed(_)), "{err}");

    // the correct op passes on the very same input
    let ok = gradcheck(
        |v| poly1(&v[0], &t, 1.0),
        &[z],
        &GradcheckOptions::default(),
    )
    .unwrap();
    assert!(ok.passed());
}

#[test]
fn fast_mode_catches_the_wrong_backward_too() {
    let z = Tensor::<f64>::randn([16, 10], 0.0, 1.0, 8).unwrap();
    let t = Tensor::from_vec((0..16).map(|i| i % 10).collect(), [16]).unwrap();
    let report = gradcheck(
        |v| {
            let op = Poly1WrongBackward(op_for(&t, 1.0));
            v[0].tape().apply(op, &[&v[0]])
        },
        &[z],
        &GradcheckOptions::fast(4),
    )
    .unwrap();
    assert!(!report.passed());
}

#[test]
fn an_op_without_backward_fails_loudly() {
    let t = ids(&[1, 0]);
    let tape = Tape::<f64>::new();
    let z = tape.leaf(Tensor::zeros([2, 3]).unwrap());
    let y = tape.apply(Poly1NoBackward(op_for(&t, 1.0)), &[&z]).unwrap();
    let err = y.sum_all().unwrap().backward().unwrap_err();
    assert!(matches!(err, Error::NoBackward { .. }), "{err}");
    // on constants nothing needs a gradient, and forward alone is fine
    let c = tape.constant(Tensor::zeros([2, 3]).unwrap());
    let y = tape.apply(Poly1NoBackward(op_for(&t, 1.0)), &[&c]).unwrap();
    assert!((y.value().to_vec()[0] - (3f64.ln() + 2.0 / 3.0)).abs() < 1e-12);
}

#[test]
fn poly1_is_finite_for_huge_logits_in_f32() {
    let tape = Tape::<f32>::new();
    let z = tape.leaf(Tensor::from_vec(vec![1e4f32, 0.0, -1e4, 0.0, 0.0, 1e4], [2, 3]).unwrap());
    let loss = poly1(&z, &ids(&[0, 0]), 1.0).unwrap();
    let v = loss.value().to_vec();
    assert_eq!(v[0], 0.0); // p_y = 1: no loss at all
    assert_eq!(v[1], 1e4 + 1.0); // −log p_y = 1e4, and 1 − p_y = 1
    let g = loss.sum_all().unwrap().backward().unwrap();
    assert!(g.get(&z).unwrap().all_finite());
}

#[test]
fn poly1_rejects_bad_input() {
    let tape = Tape::<f64>::new();
    let z = tape.leaf(Tensor::zeros([2, 3]).unwrap());
    let e = poly1(&z, &ids(&[0, 3]), 1.0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidTarget);
    let e = poly1(&z, &ids(&[0]), 1.0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
}

#[test]
fn a_backward_that_breaks_the_contract_is_an_error() {
    let t = ids(&[1, 0]);
    for shape in [true, false] {
        let tape = Tape::<f64>::new();
        let z = tape.leaf(Tensor::zeros([2, 3]).unwrap());
        let op = Poly1BadGradient {
            inner: op_for(&t, 1.0),
            shape,
        };
        let y = tape.apply(op, &[&z]).unwrap();
        let err = y.sum_all().unwrap().backward().unwrap_err();
        if shape {
            assert!(matches!(err, Error::BadGradient { .. }), "{err}");
        } else {
            assert!(
                matches!(err, Error::MissingGradient { input: 0, .. }),
                "{err}"
            );
        }
    }
}
