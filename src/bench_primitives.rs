//! The primitive-op cases of `lossgraph bench --primitives`: every tape
//! primitive's forward at 4M f32 elements (`[4096, 1024]`; softmax and
//! log_softmax at `[1024, 32000]`; a row and a column broadcast), and
//! forward + backward chains that exercise the backward rules.
//! `benches/pytorch_reference.py --primitives` times the same work in
//! PyTorch under the same names, so the two tables line up row by row.
//!
//! Each run is what a user's own code does: a fresh tape, the op on leaf
//! variables, the output (and gradients) dropped at the end.

use crate::autodiff::{Tape, Var};
use crate::tensor::{IndexTensor, Tensor};

/// The inputs every case reads, made once.
pub struct Inputs {
    /// `[4096, 1024]` standard normal.
    a: Tensor<f32>,
    /// Another `[4096, 1024]` standard normal.
    b: Tensor<f32>,
    /// `[4096, 1024]` in `[0.5, 1.5)`: inside the domain of log, sqrt, powf.
    pos: Tensor<f32>,
    /// `[1024]` and `[4096, 1]`: the row and the column of a broadcast.
    row: Tensor<f32>,
    col: Tensor<f32>,
    /// `[1024, 32000]` logits for the softmax rows.
    z: Tensor<f32>,
    /// `[1024, 32000]` weights for the softmax chain.
    w: Tensor<f32>,
    /// 4096 row ids in `0..4096` (index_select) and `[1024, 1]` class ids
    /// in `0..32000` (gather).
    rows: IndexTensor,
    ids: IndexTensor,
}

/// How a case's time is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The forward op alone.
    Forward,
    /// Forward and backward of a small expression.
    Chain,
}

/// One primitive benchmark.
pub struct Case {
    /// The name both this crate and `pytorch_reference.py` print.
    pub name: &'static str,
    /// The shapes it runs on, as text.
    pub shape: &'static str,
    pub kind: Kind,
    /// One run.
    pub run: fn(&Inputs) -> crate::autodiff::Result<()>,
}

/// Make the inputs (deterministic seeds).
///
/// # Errors
/// Only when the allocator refuses (about 0.5 GiB in all).
pub fn inputs() -> crate::tensor::Result<Inputs> {
    let m4 = [4096usize, 1024];
    let pos = Tensor::rand_uniform(m4, 0.5, 1.5, 3)?;
    let rows: Vec<i64> = (0..4096)
        .map(|i| (i * 2654435761u64 as i64) % 4096)
        .collect();
    let ids: Vec<i64> = (0..1024).map(|i| (i * 40503) % 32000).collect();
    Ok(Inputs {
        a: Tensor::randn(m4, 0.0, 1.0, 1)?,
        b: Tensor::randn(m4, 0.0, 1.0, 2)?,
        pos,
        row: Tensor::randn([1024], 0.0, 1.0, 4)?,
        col: Tensor::randn([4096, 1], 0.0, 1.0, 5)?,
        z: Tensor::randn([1024, 32000], 0.0, 3.0, 6)?,
        w: Tensor::randn([1024, 32000], 0.0, 1.0, 7)?,
        rows: Tensor::from_vec(rows, [4096])?,
        ids: Tensor::from_vec(ids, [1024, 1])?,
    })
}

const M4: &str = "[4096, 1024]";
const LOGITS: &str = "[1024, 32000]";

/// `f` applied to a leaf holding `x`, on a fresh tape; the output drops.
fn unary(x: &Tensor<f32>, f: impl Fn(&Var<f32>) -> crate::autodiff::Result<Var<f32>>) -> R {
    let tape = Tape::new();
    f(&tape.leaf(x.clone())).map(drop)
}

/// `f` on leaves holding `x` and `y`.
fn binary(
    x: &Tensor<f32>,
    y: &Tensor<f32>,
    f: impl Fn(&Var<f32>, &Var<f32>) -> crate::autodiff::Result<Var<f32>>,
) -> R {
    let tape = Tape::new();
    f(&tape.leaf(x.clone()), &tape.leaf(y.clone())).map(drop)
}

/// Forward of the scalar `f` builds, then backward to every leaf.
fn chain(xs: &[&Tensor<f32>], f: impl Fn(&[Var<f32>]) -> crate::autodiff::Result<Var<f32>>) -> R {
    let tape = Tape::new();
    let vars: Vec<Var<f32>> = xs.iter().map(|x| tape.leaf((*x).clone())).collect();
    f(&vars)?.backward().map(drop)
}

type R = crate::autodiff::Result<()>;

macro_rules! case {
    ($name:expr, $shape:expr, $kind:ident, $run:expr) => {
        Case {
            name: $name,
            shape: $shape,
            kind: Kind::$kind,
            run: $run,
        }
    };
}

/// Every case, in the order the table prints them.
pub fn cases() -> Vec<Case> {
    vec![
        case!("neg", M4, Forward, |i| unary(&i.a, |x| x.neg())),
        case!("abs", M4, Forward, |i| unary(&i.a, |x| x.abs())),
        case!("sign", M4, Forward, |i| unary(&i.a, |x| x.sign())),
        case!("relu", M4, Forward, |i| unary(&i.a, |x| x.relu())),
        case!("square", M4, Forward, |i| unary(&i.a, |x| x.square())),
        case!("exp", M4, Forward, |i| unary(&i.a, |x| x.exp())),
        case!("expm1", M4, Forward, |i| unary(&i.a, |x| x.expm1())),
        case!("log", M4, Forward, |i| unary(&i.pos, |x| x.log())),
        case!("log1p", M4, Forward, |i| unary(&i.pos, |x| x.log1p())),
        case!("sqrt", M4, Forward, |i| unary(&i.pos, |x| x.sqrt())),
        case!("powf", M4, Forward, |i| unary(&i.pos, |x| x.powf(1.5))),
        case!("tanh", M4, Forward, |i| unary(&i.a, |x| x.tanh())),
        case!("sigmoid", M4, Forward, |i| unary(&i.a, |x| x.sigmoid())),
        case!("clamp", M4, Forward, |i| unary(&i.a, |x| x
            .clamp(-1.0, 1.0))),
        case!("add", M4, Forward, |i| binary(&i.a, &i.b, |x, y| x.add(y))),
        case!("sub", M4, Forward, |i| binary(&i.a, &i.b, |x, y| x.sub(y))),
        case!("mul", M4, Forward, |i| binary(&i.a, &i.b, |x, y| x.mul(y))),
        case!("div", M4, Forward, |i| binary(&i.a, &i.pos, |x, y| x
            .div(y))),
        case!("maximum", M4, Forward, |i| binary(&i.a, &i.b, |x, y| x
            .maximum(y))),
        case!("gt", M4, Forward, |i| binary(&i.a, &i.b, |x, y| x.gt(y))),
        case!("add_row_broadcast", "[4096, 1024] + [1024]", Forward, |i| {
            binary(&i.a, &i.row, |x, y| x.add(y))
        }),
        case!(
            "add_col_broadcast",
            "[4096, 1024] + [4096, 1]",
            Forward,
            |i| binary(&i.a, &i.col, |x, y| x.add(y))
        ),
        case!("sum_all", M4, Forward, |i| unary(&i.a, |x| x.sum_all())),
        case!("mean_all", M4, Forward, |i| unary(&i.a, |x| x.mean_all())),
        case!("sum_axis0", M4, Forward, |i| unary(&i.a, |x| x
            .sum(0, false))),
        case!("sum_axis1", M4, Forward, |i| unary(&i.a, |x| x
            .sum(1, false))),
        case!("max_axis1", M4, Forward, |i| unary(&i.a, |x| x
            .max(1, false))),
        case!("logsumexp_axis1", M4, Forward, |i| unary(&i.a, |x| x
            .logsumexp(1, false))),
        case!("argmax_axis1", M4, Forward, |i| {
            let tape = Tape::new();
            tape.leaf(i.a.clone()).argmax(1, false).map(drop)
        }),
        case!("softmax", LOGITS, Forward, |i| unary(&i.z, |x| x.softmax())),
        case!("log_softmax", LOGITS, Forward, |i| unary(&i.z, |x| x
            .log_softmax())),
        case!("index_select_rows", M4, Forward, |i| unary(&i.a, |x| x
            .index_select(0, &i.rows))),
        case!("gather_class", LOGITS, Forward, |i| unary(&i.z, |x| x
            .gather(1, &i.ids))),
        case!("exp(a)*b sum, fwd+bwd", M4, Chain, |i| chain(
            &[&i.a, &i.b],
            |v| v[0].exp()?.mul(&v[1])?.sum_all()
        )),
        case!("tanh(a)^2 mean, fwd+bwd", M4, Chain, |i| chain(
            &[&i.a],
            |v| v[0].tanh()?.square()?.mean_all()
        )),
        case!("log_softmax sum, fwd+bwd", LOGITS, Chain, |i| chain(
            &[&i.z],
            |v| v[0].log_softmax()?.sum_all()
        )),
        case!("gather_class sum, fwd+bwd", LOGITS, Chain, |i| chain(
            &[&i.z],
            |v| v[0].gather(1, &i.ids)?.sum_all()
        )),
        case!("softmax*w sum, fwd+bwd", LOGITS, Chain, |i| chain(
            &[&i.z, &i.w],
            |v| v[0].softmax()?.mul(&v[1])?.sum_all()
        )),
    ]
}

/// A whole training step, as a user writes one: the 784-512-512-10 ReLU
/// MLP on a batch of 256, fused cross-entropy, Adam (PyTorch's defaults) —
/// a fresh tape, forward, backward, the update. Returns the step as a
/// closure over its model and optimiser state.
///
/// # Errors
/// Only if the model or optimiser cannot be built.
pub fn mlp_step() -> Result<impl FnMut() -> Result<(), String>, String> {
    use crate::losses::{cross_entropy, CrossEntropyOptions};
    use crate::nn::{Activation, Adam, AdamOptions, Init, Mlp, Module, Optimizer, ParamStore};
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut params = ParamStore::<f32>::new();
    let act = Activation::Relu;
    let mlp = Mlp::new(
        &mut params,
        "mlp",
        &[784, 512, 512, 10],
        act,
        Init::kaiming_uniform(act),
        1,
    )
    .map_err(|e| err(&e))?;
    let mut opt = Adam::new(AdamOptions::default()).map_err(|e| err(&e))?;
    let x = Tensor::<f32>::randn([256, 784], 0.0, 1.0, 2).map_err(|e| err(&e))?;
    let ids: Vec<i64> = (0..256).map(|i| (i * 7) % 10).collect();
    let y = Tensor::from_vec(ids, [256]).map_err(|e| err(&e))?;
    let opts = CrossEntropyOptions::default();
    Ok(move || {
        let (_, grads) = params
            .value_and_grad(|p| {
                let logits = mlp.forward(p, &p.tape().constant(x.clone()))?;
                cross_entropy(&logits, &y, &opts)
            })
            .map_err(|e| err(&e))?;
        opt.step(&mut params, &grads).map_err(|e| err(&e))
    })
}
