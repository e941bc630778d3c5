//! Parameters, initialisation, layers, and small models trained end to end.

use lossgraph_autodiff::{gradcheck, GradcheckOptions, Tape};
use lossgraph_losses::{mse, MseOptions};
use lossgraph_nn::{
    checkpoint, clip_grad_norm, fans, gain, gelu, select_rows, train_test_split, Activation, Adam,
    AdamOptions, AdamW, AdamWOptions, Batches, CosineSchedule, FanMode, Init, Linear, Mlp, Module,
    Optimizer, ParamStore, Sequential,
};
use lossgraph_tensor::{ErrorKind, Tensor};

// ---- parameters ----------------------------------------------------------------

#[test]
fn bind_shares_storage_and_collects_gradients() {
    let mut params = ParamStore::<f64>::new();
    let a = params.add("a", Tensor::from_slice(&[1.0, 2.0])).unwrap();
    let b = params.add("b", Tensor::from_slice(&[3.0])).unwrap();
    let unused = params.add("unused", Tensor::zeros([4]).unwrap()).unwrap();
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let va = bound.var(a).unwrap();
    assert!(
        va.value().shares_storage(params.value(a).unwrap()),
        "no copy"
    );
    // loss = Σ a²·b  →  ∂a = 2ab, ∂b = Σ a²
    let loss = va
        .square()
        .unwrap()
        .mul(bound.var(b).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = bound.grads(loss.backward().unwrap());
    assert_eq!(grads.get(a).unwrap().to_vec(), vec![6.0, 12.0]);
    assert_eq!(grads.get(b).unwrap().to_vec(), vec![5.0]);
    assert!(grads.get(unused).is_none());
    assert_eq!(grads.len(), 3);
}

#[test]
fn ids_from_another_store_are_errors() {
    let mut first = ParamStore::<f32>::new();
    let mut second = ParamStore::<f32>::new();
    let a = first.add("a", Tensor::zeros([1]).unwrap()).unwrap();
    second.add("a", Tensor::zeros([1]).unwrap()).unwrap();
    assert_eq!(
        second.value(a).unwrap_err().kind(),
        ErrorKind::StoreMismatch
    );
    let tape = Tape::new();
    let bound = second.bind(&tape);
    assert_eq!(bound.var(a).unwrap_err().kind(), ErrorKind::StoreMismatch);
    // a parameter added after bind() has no leaf on that tape
    let late = second.add("late", Tensor::zeros([1]).unwrap()).unwrap();
    assert!(bound.var(late).is_err());
}

#[test]
fn store_names_and_set() {
    let mut params = ParamStore::<f32>::new();
    params.add("w", Tensor::zeros([2, 2]).unwrap()).unwrap();
    for bad in ["w", "", "__metadata__"] {
        let e = params.add(bad, Tensor::zeros([1]).unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidOption, "{bad:?}");
    }
    assert_eq!(
        params
            .set("w", Tensor::zeros([4]).unwrap())
            .unwrap_err()
            .kind(),
        ErrorKind::ShapeMismatch
    );
    assert_eq!(
        params
            .set("nope", Tensor::zeros([1]).unwrap())
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidOption
    );
    params.set("w", Tensor::ones([2, 2]).unwrap()).unwrap();
    assert_eq!(params.get("w").unwrap().to_vec(), vec![1.0; 4]);
    assert_eq!(params.num_elements(), 4);
    assert_eq!(params.id("w").map(|i| i.index()), Some(0));
}

// ---- initialisation --------------------------------------------------------------

fn mean_std(t: &Tensor<f64>) -> (f64, f64) {
    let n = t.numel() as f64;
    let m = t.as_slice().iter().sum::<f64>() / n;
    let v = t.as_slice().iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, v.sqrt())
}

#[test]
fn init_statistics() {
    let dims = [200, 300]; // fan_in 300, fan_out 200: 60 000 samples
    let close = |got: f64, want: f64| (got / want - 1.0).abs() < 0.03;

    // Xavier uniform: U(−b, b), b = √(6/500); std b/√3
    let b = (6.0f64 / 500.0).sqrt();
    let w = Init::xavier_uniform()
        .tensor_seeded::<f64>(&dims, 1)
        .unwrap();
    let (lo, hi, _) = w.value_range();
    assert!(lo.unwrap() >= -b && hi.unwrap() <= b);
    assert!(lo.unwrap() < -0.99 * b && hi.unwrap() > 0.99 * b);
    let (m, s) = mean_std(&w);
    assert!(m.abs() < 0.01 * b && close(s, b / 3f64.sqrt()), "{m} {s}");

    // Xavier normal: σ = √(2/500)
    let (m, s) = mean_std(
        &Init::xavier_normal()
            .tensor_seeded::<f64>(&dims, 2)
            .unwrap(),
    );
    assert!(
        m.abs() < 0.01 && close(s, (2.0f64 / 500.0).sqrt()),
        "{m} {s}"
    );

    // Kaiming uniform for ReLU, fan-in: b = √2·√(3/300)
    let b = 2f64.sqrt() * (3.0f64 / 300.0).sqrt();
    let w = Init::kaiming_uniform(Activation::Relu)
        .tensor_seeded::<f64>(&dims, 3)
        .unwrap();
    let (lo, hi, _) = w.value_range();
    assert!(lo.unwrap() >= -b && hi.unwrap() <= b && hi.unwrap() > 0.99 * b);
    assert!(close(mean_std(&w).1, b / 3f64.sqrt()));

    // Kaiming normal, fan-out, tanh gain: σ = (5/3)/√200
    let init = Init::KaimingNormal {
        gain: gain(Activation::Tanh),
        mode: FanMode::FanOut,
    };
    let (m, s) = mean_std(&init.tensor_seeded::<f64>(&dims, 4).unwrap());
    assert!(
        m.abs() < 0.01 && close(s, 5.0 / 3.0 / 200f64.sqrt()),
        "{m} {s}"
    );
}

#[test]
fn init_is_seeded_and_checked() {
    let i = Init::xavier_normal();
    let a = i.tensor_seeded::<f32>(&[8, 4], 11).unwrap();
    assert_eq!(a, i.tensor_seeded::<f32>(&[8, 4], 11).unwrap());
    assert_ne!(a, i.tensor_seeded::<f32>(&[8, 4], 12).unwrap());
    assert_eq!(fans(&[8, 4, 3, 3]).unwrap(), (36, 72));
    assert_eq!(
        (gain(Activation::Relu), gain(Activation::Sigmoid)),
        (2f64.sqrt(), 1.0)
    );
    assert_eq!(fans(&[5]).unwrap_err().kind(), ErrorKind::InvalidOption);
    assert!(Init::xavier_uniform()
        .tensor_seeded::<f32>(&[5], 0)
        .is_err());
    assert!(Init::XavierUniform { gain: -1.0 }
        .tensor_seeded::<f32>(&[2, 2], 0)
        .is_err());
    assert!(Init::Normal {
        mean: 0.0,
        std: f64::NAN
    }
    .tensor_seeded::<f32>(&[2], 0)
    .is_err());
    assert!(Init::Uniform {
        low: 1.0,
        high: 0.0
    }
    .tensor_seeded::<f32>(&[2], 0)
    .is_err());
    assert_eq!(
        Init::Constant(0.5)
            .tensor_seeded::<f32>(&[2], 0)
            .unwrap()
            .to_vec(),
        vec![0.5; 2]
    );
    assert_eq!(
        Init::xavier_uniform()
            .tensor_seeded::<f32>(&[0, 3], 0)
            .unwrap()
            .numel(),
        0
    );
}

// ---- layers ------------------------------------------------------------------------

#[test]
fn linear_forward_and_gradients() {
    let mut params = ParamStore::<f64>::new();
    let fc = Linear::new(&mut params, "fc", 3, 2, Init::Constant(0.0), 0).unwrap();
    params
        .set(
            "fc.weight",
            Tensor::from_vec(vec![1.0, 0.0, -1.0, 2.0, 1.0, 0.5], [2, 3]).unwrap(),
        )
        .unwrap();
    params
        .set("fc.bias", Tensor::from_slice(&[0.5, -1.0]))
        .unwrap();
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, -1.0, 0.0, 4.0], [2, 3]).unwrap();
    let (loss, grads) = params
        .value_and_grad(|p| {
            let y = fc.forward(p, &p.tape().constant(x.clone()))?;
            // y = x·Wᵀ + b = [[1−3+0.5, 2+2+1.5−1], [−1−4+0.5, −2+2−1]]
            assert_eq!(y.value().to_vec(), vec![-1.5, 4.5, -4.5, -1.0]);
            y.sum_all()
        })
        .unwrap();
    assert_eq!(loss, -2.5);
    // ∂W[o, i] = Σₙ x[n, i]; ∂b[o] = N
    assert_eq!(
        grads.get(fc.weight()).unwrap().to_vec(),
        vec![0.0, 2.0, 7.0, 0.0, 2.0, 7.0]
    );
    assert_eq!(grads.get(fc.bias()).unwrap().to_vec(), vec![2.0, 2.0]);
    // a wrong input width is an error, not a panic
    let tape = Tape::new();
    let bad = fc.forward(
        &params.bind(&tape),
        &tape.constant(Tensor::zeros([2, 4]).unwrap()),
    );
    assert_eq!(bad.unwrap_err().kind(), ErrorKind::ShapeMismatch);
}

#[test]
fn activations_values_and_gradients() {
    let x = Tensor::from_slice(&[-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0]);
    let tape = Tape::<f64>::new();
    let v = tape.leaf(x.clone());
    // PyTorch: F.gelu(x, approximate="tanh")
    let want = [
        -0.0036373920817729943,
        -0.15880800939172324,
        -0.15428599017485606,
        0.0,
        0.34571400982514394,
        0.8411919906082768,
        2.996362607918227,
    ];
    let got = gelu(&v).unwrap().value().to_vec();
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
    let relu = Activation::Relu.apply(&v).unwrap().value().to_vec();
    assert_eq!(relu, vec![0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 3.0]);
    let sig = Activation::Sigmoid.apply(&v).unwrap().value().to_vec();
    assert!((sig[3] - 0.5).abs() < 1e-15 && (sig[5] - 0.7310585786300049).abs() < 1e-15);
    let th = Activation::Tanh.apply(&v).unwrap().value().to_vec();
    assert!((th[5] - 1f64.tanh()).abs() < 1e-15);
    assert_eq!(
        Activation::Identity.apply(&v).unwrap().value().to_vec(),
        x.to_vec()
    );

    // gradients of every activation against finite differences (away from relu's kink)
    let x = Tensor::<f64>::randn([4, 5], 0.0, 1.5, 3).unwrap();
    for act in [
        Activation::Relu,
        Activation::Gelu,
        Activation::Tanh,
        Activation::Sigmoid,
    ] {
        let r = gradcheck(
            |v| act.apply(&v[0]),
            std::slice::from_ref(&x),
            &GradcheckOptions::default(),
        )
        .unwrap();
        assert!(r.passed(), "{act:?}: {r:?}");
    }
}

#[test]
fn mlp_and_sequential_shapes_and_errors() {
    let mut params = ParamStore::<f32>::new();
    let mlp = Mlp::new(
        &mut params,
        "m",
        &[3, 5, 4, 2],
        Activation::Gelu,
        Init::xavier_uniform(),
        0,
    )
    .unwrap();
    assert_eq!(mlp.layers().len(), 3);
    assert_eq!(params.num_elements(), 3 * 5 + 5 + 5 * 4 + 4 + 4 * 2 + 2);
    // a taken name or too few sizes leaves the store as it was
    let before = params.names().len();
    assert!(Mlp::new(
        &mut params,
        "m",
        &[3, 2],
        Activation::Relu,
        Init::xavier_uniform(),
        0
    )
    .is_err());
    assert!(Mlp::new(
        &mut params,
        "n",
        &[3],
        Activation::Relu,
        Init::xavier_uniform(),
        0
    )
    .is_err());
    assert_eq!(params.names().len(), before);
    // same seed, same weights
    let mut again = ParamStore::<f32>::new();
    Mlp::new(
        &mut again,
        "m",
        &[3, 5, 4, 2],
        Activation::Gelu,
        Init::xavier_uniform(),
        0,
    )
    .unwrap();
    assert!(params
        .iter()
        .zip(again.iter())
        .all(|(a, b)| a.value() == b.value()));

    let fc = Linear::new(&mut params, "head", 2, 1, Init::xavier_uniform(), 1).unwrap();
    let seq = Sequential::new().push(mlp).push(Activation::Tanh).push(fc);
    assert_eq!(seq.len(), 3);
    let tape = Tape::new();
    let y = seq
        .forward(
            &params.bind(&tape),
            &tape.constant(Tensor::ones([7, 3]).unwrap()),
        )
        .unwrap();
    assert_eq!(y.dims(), vec![7, 1]);
}

// ---- end to end ---------------------------------------------------------------------

#[test]
fn mlp_learns_xor() {
    let x = Tensor::from_vec(vec![0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], [4, 2]).unwrap();
    let y = Tensor::from_vec(vec![0.0f32, 1.0, 1.0, 0.0], [4, 1]).unwrap();
    let mut params = ParamStore::<f32>::new();
    let act = Activation::Tanh;
    let init = Init::XavierUniform { gain: gain(act) };
    let mlp = Mlp::new(&mut params, "mlp", &[2, 8, 1], act, init, 5).unwrap();
    let mut opt = Adam::new(AdamOptions {
        lr: 0.05,
        ..Default::default()
    })
    .unwrap();
    let mut losses = Vec::new();
    for _ in 0..300 {
        let (loss, grads) = params
            .value_and_grad(|p| {
                let pred = mlp.forward(p, &p.tape().constant(x.clone()))?;
                mse(&pred, &p.tape().constant(y.clone()), &MseOptions::default())
            })
            .unwrap();
        opt.step(&mut params, &grads).unwrap();
        losses.push(loss);
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last < 0.01 && last < first / 10.0, "loss {first} -> {last}");
}

/// Everything together: split, seeded minibatches, an MLP, AdamW with a
/// cosine schedule and clipping; the test loss must fall, and a checkpoint
/// must reproduce the trained model's predictions exactly.
#[test]
fn minibatch_regression_with_schedule_clipping_and_checkpoint() {
    // y = sin(x₀) + 0.5·x₁ on 256 points
    let n = 256;
    let x = Tensor::<f32>::rand_uniform([n, 2], -2.0, 2.0, 9).unwrap();
    let yv: Vec<f32> = x
        .as_slice()
        .chunks(2)
        .map(|r| r[0].sin() + 0.5 * r[1])
        .collect();
    let y = Tensor::from_vec(yv, [n, 1]).unwrap();
    let (train, test) = train_test_split(n, 0.25, 1).unwrap();
    let (x_test, y_test) = (
        select_rows(&x, &test).unwrap(),
        select_rows(&y, &test).unwrap(),
    );

    let mut params = ParamStore::<f32>::new();
    let act = Activation::Gelu;
    let mlp = Mlp::new(
        &mut params,
        "mlp",
        &[2, 16, 1],
        act,
        Init::kaiming_uniform(act),
        2,
    )
    .unwrap();
    let eval = |mlp: &Mlp, params: &ParamStore<f32>| -> (f32, Vec<f32>) {
        let tape = Tape::new();
        let pred = mlp
            .forward(&params.bind(&tape), &tape.constant(x_test.clone()))
            .unwrap();
        let loss = mse(
            &pred,
            &tape.constant(y_test.clone()),
            &MseOptions::default(),
        )
        .unwrap();
        (loss.item().unwrap(), pred.value().to_vec())
    };

    let batches = Batches::over(train, 32, 3).unwrap();
    let epochs = 40;
    let total = epochs * batches.len();
    let sched = CosineSchedule::new(0.02, 0.0005, 10, total).unwrap();
    let mut opt = AdamW::new(AdamWOptions::default()).unwrap();
    let (before, _) = eval(&mlp, &params);
    let mut step = 0;
    for epoch in 0..epochs as u64 {
        for rows in batches.epoch(epoch) {
            let (xb, yb) = (
                select_rows(&x, &rows).unwrap(),
                select_rows(&y, &rows).unwrap(),
            );
            let (_, mut grads) = params
                .value_and_grad(|p| {
                    let pred = mlp.forward(p, &p.tape().constant(xb))?;
                    mse(&pred, &p.tape().constant(yb), &MseOptions::default())
                })
                .unwrap();
            clip_grad_norm(&mut grads, 1.0).unwrap();
            opt.set_lr(sched.lr(step)).unwrap();
            opt.step(&mut params, &grads).unwrap();
            step += 1;
        }
    }
    let (after, pred) = eval(&mlp, &params);
    assert!(
        after < before / 10.0 && after < 0.05,
        "test loss {before} -> {after}"
    );

    let bytes = checkpoint::to_bytes(&params).unwrap();
    let mut fresh = ParamStore::<f32>::new();
    let mlp2 = Mlp::new(
        &mut fresh,
        "mlp",
        &[2, 16, 1],
        act,
        Init::xavier_uniform(),
        99,
    )
    .unwrap();
    assert_ne!(eval(&mlp2, &fresh).1, pred);
    checkpoint::from_bytes(&bytes, &mut fresh).unwrap();
    assert_eq!(eval(&mlp2, &fresh).1, pred);
    // a model's ids work only with its own store (or a clone of it)
    let tape = Tape::new();
    assert!(mlp
        .forward(&fresh.bind(&tape), &tape.constant(x_test.clone()))
        .is_err());
    let snapshot = params.clone();
    assert_eq!(eval(&mlp, &snapshot).1, pred);
}

#[test]
fn value_and_grad_refuses_a_loss_on_another_tape() {
    let mut params = ParamStore::<f64>::new();
    params.add("w", Tensor::ones([2]).unwrap()).unwrap();
    let other = Tape::new();
    let e = params
        .value_and_grad(|_| other.leaf(Tensor::ones([1])?).sum_all())
        .unwrap_err();
    assert!(
        matches!(e, lossgraph_autodiff::Error::TapeMismatch { .. }),
        "{e}"
    );
    let e = params
        .value_and_grad(|b| Ok(b.vars()[0].clone()))
        .unwrap_err();
    assert!(
        matches!(e, lossgraph_autodiff::Error::NotScalar { .. }),
        "{e}"
    );
}
