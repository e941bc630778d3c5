//! Optimizer updates against reference values for three steps.
//!
//! The references are PyTorch's single-tensor update rules
//! (`torch.optim.SGD/Adam/AdamW`, `foreach=False`) transcribed line by line
//! into float64 Python (no torch needed), from `p0 = [1, −2, 0.5]` and the
//! gradient sequence `G` below. The first step of each is also derived by
//! hand in a comment.

use lossgraph_nn::{
    Adam, AdamOptions, AdamW, AdamWOptions, Optimizer, ParamGrads, ParamStore, Sgd, SgdOptions,
};
use lossgraph_tensor::{ErrorKind, Float, Tensor};

const P0: [f64; 3] = [1.0, -2.0, 0.5];
const G: [[f64; 3]; 3] = [[0.5, 1.0, -0.25], [-1.0, 0.25, 0.75], [2.0, -0.5, 0.0]];

/// Run `opt` for the three gradients of `G` and compare every step.
fn run<T: Float>(mut opt: impl Optimizer<T>, want: [[f64; 3]; 3], tol: f64) {
    let mut params = ParamStore::<T>::new();
    params.add("p", Tensor::from_slice(&P0.map(T::of))).unwrap();
    for (step, (g, want)) in G.iter().zip(want).enumerate() {
        let grads =
            ParamGrads::new(&params, vec![Some(Tensor::from_slice(&g.map(T::of)))]).unwrap();
        opt.step(&mut params, &grads).unwrap();
        let got = params.get("p").unwrap().to_vec();
        for (k, (&got, want)) in got.iter().zip(want).enumerate() {
            assert!(
                (got.as_f64() - want).abs() <= tol * (1.0 + want.abs()),
                "step {}, element {k}: got {got}, want {want}",
                step + 1
            );
        }
    }
}

/// Both dtypes: f64 to 1e-12, f32 to 1e-6.
fn check(opt64: impl Optimizer<f64>, opt32: impl Optimizer<f32>, want: [[f64; 3]; 3]) {
    run(opt64, want, 1e-12);
    run(opt32, want, 2e-6);
}

fn sgd<T: Float>(o: SgdOptions) -> Sgd<T> {
    Sgd::new(o).unwrap()
}

#[test]
fn sgd_plain() {
    // p1 = p0 − 0.1·g1 = [1 − 0.05, −2 − 0.1, 0.5 + 0.025]
    let o = SgdOptions {
        lr: 0.1,
        ..Default::default()
    };
    let want = [
        [0.95, -2.1, 0.525],
        [1.05, -2.125, 0.45],
        [0.85, -2.075, 0.45],
    ];
    check(sgd(o), sgd(o), want);
}

#[test]
fn sgd_momentum() {
    // step 1: b = g1, p1 = p0 − 0.1·g1; step 2: b = 0.9·g1 + g2 = [−0.55, 1.15, 0.525],
    // p2 = p1 − 0.1·b = [1.005, −2.215, 0.4725]
    let o = SgdOptions {
        lr: 0.1,
        momentum: 0.9,
        ..Default::default()
    };
    let want = [
        [0.95, -2.1, 0.525],
        [1.005, -2.215, 0.4725],
        [0.8545, -2.2685, 0.42525],
    ];
    check(sgd(o), sgd(o), want);
}

#[test]
fn sgd_momentum_dampening() {
    // the first step takes the gradient undampened (PyTorch); step 2:
    // b = 0.9·g1 + 0.5·g2 = [−0.05, 1.025, 0.15], p2 = [0.955, −2.2025, 0.51]
    let o = SgdOptions {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.5,
        ..Default::default()
    };
    let want = [
        [0.95, -2.1, 0.525],
        [0.955, -2.2025, 0.51],
        [0.8595, -2.26975, 0.4965],
    ];
    check(sgd(o), sgd(o), want);
}

#[test]
fn sgd_nesterov() {
    // step 1: b = g1, update g1 + 0.9·b = 1.9·g1, p1 = p0 − 0.19·g1 = [0.905, −2.19, 0.5475]
    let o = SgdOptions {
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
        ..Default::default()
    };
    let want = [
        [0.905, -2.19, 0.5475],
        [1.0545, -2.3185, 0.42525],
        [0.71905, -2.31665, 0.382725],
    ];
    check(sgd(o), sgd(o), want);
}

#[test]
fn sgd_weight_decay() {
    // g1 + 0.1·p0 = [0.6, 0.8, −0.2], p1 = p0 − 0.1·that = [0.94, −2.08, 0.52]
    let o = SgdOptions {
        lr: 0.1,
        weight_decay: 0.1,
        ..Default::default()
    };
    let want = [
        [0.94, -2.08, 0.52],
        [1.0306, -2.0842, 0.4398],
        [0.820294, -2.013358, 0.435402],
    ];
    check(sgd(o), sgd(o), want);
}

#[test]
fn sgd_momentum_weight_decay_nesterov() {
    // d = g1 + 0.2·p0 = [0.7, 0.6, −0.15]; b = d; p1 = p0 − 0.05·(d + 0.8·d) = [0.937, −2.054, 0.5135]
    let o = SgdOptions {
        lr: 0.05,
        momentum: 0.8,
        weight_decay: 0.2,
        nesterov: true,
        ..Default::default()
    };
    let want = [
        [0.937, -2.054, 0.5135],
        [0.987734, -2.058728, 0.441557],
        [0.798037988, -1.986885296, 0.410162574],
    ];
    check(sgd(o), sgd(o), want);
}

#[test]
fn adam_defaults_but_lr() {
    // step 1: m = 0.1·g, v = 0.001·g², m̂ = g, √v̂ = |g|: p1 = p0 − 0.1·g/(|g| + 1e-8)
    // = p0 − 0.1·sign(g) up to ~1e-9: [0.9, −2.1, 0.6]
    let o = AdamOptions {
        lr: 0.1,
        ..Default::default()
    };
    let want = [
        [0.900000002, -2.099999999, 0.5999999960000002],
        [0.9366103542405654, -2.183059751227727, 0.5505810135541487],
        [0.8946447927181046, -2.2129149252194646, 0.5123799970456464],
    ];
    check(Adam::new(o).unwrap(), Adam::new(o).unwrap(), want);
}

#[test]
fn adam_l2_weight_decay() {
    // step 1: g' = g1 + 0.1·p0 = [0.6, 0.8, −0.2]; bias correction makes the
    // step lr·g'/(|g'| + ε) again: p1 ≈ [0.9, −2.1, 0.6]
    let o = AdamOptions {
        lr: 0.1,
        betas: (0.8, 0.99),
        weight_decay: 0.1,
        ..Default::default()
    };
    let want = [
        [0.9000000016666666, -2.09999999875, 0.5999999950000002],
        [0.9309638513457186, -2.1668663604908587, 0.5389259927653118],
        [0.8785413248190428, -2.155455230342631, 0.4901861698920105],
    ];
    check(Adam::new(o).unwrap(), Adam::new(o).unwrap(), want);
}

#[test]
fn adamw_default_decay() {
    // step 1: p ← p·(1 − 0.1·0.01) = 0.999·p0, then the Adam step −0.1·sign(g1):
    // [0.999 − 0.1, −1.998 − 0.1, 0.4995 + 0.1]
    let o = AdamWOptions {
        lr: 0.1,
        ..Default::default()
    };
    assert_eq!(o.weight_decay, 0.01);
    let want = [
        [0.899000002, -2.097999999, 0.5994999960000001],
        [0.9347113542385653, -2.1789617512287274, 0.5494815135581487],
        [0.8918110813618659, -2.206637963469236, 0.5107310155360882],
    ];
    check(AdamW::new(o).unwrap(), AdamW::new(o).unwrap(), want);
}

#[test]
fn adamw_strong_decay() {
    // step 1: p ← p·(1 − 0.05) = [0.95, −1.9, 0.475], then −0.1·sign(g1)
    let o = AdamWOptions {
        lr: 0.1,
        betas: (0.8, 0.99),
        weight_decay: 0.5,
        ..Default::default()
    };
    let want = [
        [0.8500000019999999, -1.999999999, 0.5749999960000002],
        [0.8496002835098624, -1.980210693046539, 0.49170009578876556],
        [0.7601979020933617, -1.902327631862086, 0.4275868010601228],
    ];
    check(AdamW::new(o).unwrap(), AdamW::new(o).unwrap(), want);
}

#[test]
fn defaults_are_pytorchs() {
    let a = AdamOptions::default();
    assert_eq!(
        (a.lr, a.betas, a.eps, a.weight_decay),
        (1e-3, (0.9, 0.999), 1e-8, 0.0)
    );
    let w = AdamWOptions::default();
    assert_eq!(
        (w.lr, w.betas, w.eps, w.weight_decay),
        (1e-3, (0.9, 0.999), 1e-8, 0.01)
    );
    let s = SgdOptions::default();
    assert_eq!(
        (s.momentum, s.dampening, s.weight_decay, s.nesterov),
        (0.0, 0.0, 0.0, false)
    );
}

#[test]
fn invalid_options_are_errors() {
    let bad_sgd = [
        SgdOptions {
            lr: -0.1,
            ..Default::default()
        },
        SgdOptions {
            lr: f64::NAN,
            ..Default::default()
        },
        SgdOptions {
            momentum: -0.5,
            ..Default::default()
        },
        SgdOptions {
            weight_decay: -1.0,
            ..Default::default()
        },
        SgdOptions {
            nesterov: true,
            ..Default::default()
        },
        SgdOptions {
            nesterov: true,
            momentum: 0.9,
            dampening: 0.1,
            ..Default::default()
        },
    ];
    for o in bad_sgd {
        let e = Sgd::<f32>::new(o).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidOption, "{o:?}: {e}");
    }
    let bad_adam = [
        AdamOptions {
            lr: -1e-3,
            ..Default::default()
        },
        AdamOptions {
            betas: (1.0, 0.999),
            ..Default::default()
        },
        AdamOptions {
            betas: (0.9, -0.1),
            ..Default::default()
        },
        AdamOptions {
            eps: -1.0,
            ..Default::default()
        },
        AdamOptions {
            weight_decay: f64::INFINITY,
            ..Default::default()
        },
    ];
    for o in bad_adam {
        assert_eq!(
            Adam::<f32>::new(o).unwrap_err().kind(),
            ErrorKind::InvalidOption,
            "{o:?}"
        );
    }
    let e = AdamW::<f64>::new(AdamWOptions {
        betas: (0.9, 1.5),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidOption);
    let mut ok = Adam::<f64>::new(AdamOptions::default()).unwrap();
    assert_eq!(
        ok.set_lr(-1.0).unwrap_err().kind(),
        ErrorKind::InvalidOption
    );
    ok.set_lr(0.5).unwrap();
    assert_eq!(ok.lr(), 0.5);
}

/// Two parameters; the second gets no gradient.
fn two_params() -> ParamStore<f64> {
    let mut params = ParamStore::new();
    params.add("a", Tensor::from_slice(&[1.0, 2.0])).unwrap();
    params.add("b", Tensor::from_slice(&[3.0])).unwrap();
    params
}

#[test]
fn a_missing_gradient_skips_the_parameter() {
    let mut params = two_params();
    let mut opt = Adam::new(AdamOptions {
        weight_decay: 0.1,
        ..Default::default()
    })
    .unwrap();
    let grads =
        ParamGrads::new(&params, vec![Some(Tensor::from_slice(&[1.0, 1.0])), None]).unwrap();
    opt.step(&mut params, &grads).unwrap();
    assert_ne!(params.get("a").unwrap().to_vec(), vec![1.0, 2.0]);
    assert_eq!(params.get("b").unwrap().to_vec(), vec![3.0]); // not even decayed
}

#[test]
fn mismatched_gradients_change_nothing() {
    let mut params = two_params();
    let other = two_params();
    let mut opt = Sgd::new(SgdOptions {
        lr: 0.1,
        ..Default::default()
    })
    .unwrap();

    // wrong shape for the second parameter: checked before the first is touched
    let e = ParamGrads::new(
        &params,
        vec![
            Some(Tensor::ones([2]).unwrap()),
            Some(Tensor::ones([2]).unwrap()),
        ],
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
    let e = ParamGrads::new(&params, vec![Some(Tensor::ones([2]).unwrap())]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidOption);

    // gradients of another store: a kind of its own, and a message that says so
    let foreign = ParamGrads::new(&other, vec![Some(Tensor::ones([2]).unwrap()), None]).unwrap();
    let e = opt.step(&mut params, &foreign).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StoreMismatch);
    assert!(e.to_string().contains("another parameter store"), "{e}");
    assert_eq!(params.get("a").unwrap().to_vec(), vec![1.0, 2.0]);

    // parameters added after the gradients were taken
    let grads = ParamGrads::new(&params, vec![Some(Tensor::ones([2]).unwrap()), None]).unwrap();
    params.add("c", Tensor::zeros([1]).unwrap()).unwrap();
    assert!(opt.step(&mut params, &grads).is_err());
    assert_eq!(params.get("a").unwrap().to_vec(), vec![1.0, 2.0]);
}

#[test]
fn an_optimizer_keeps_to_one_store() {
    let mut first = two_params();
    let mut second = two_params();
    let mut opt = Sgd::new(SgdOptions {
        lr: 0.1,
        momentum: 0.9,
        ..Default::default()
    })
    .unwrap();
    let g1 = ParamGrads::new(&first, vec![Some(Tensor::ones([2]).unwrap()), None]).unwrap();
    opt.step(&mut first, &g1).unwrap();
    let g2 = ParamGrads::new(&second, vec![Some(Tensor::ones([2]).unwrap()), None]).unwrap();
    assert_eq!(
        opt.step(&mut second, &g2).unwrap_err().kind(),
        ErrorKind::StoreMismatch
    );
    assert_eq!(second.get("a").unwrap().to_vec(), vec![1.0, 2.0]);
}

#[test]
fn steps_update_in_place_without_a_copy() {
    let mut params = ParamStore::<f32>::new();
    let w = params
        .add("w", Tensor::from_slice(&[1.0, -1.0, 2.0]))
        .unwrap();
    let before = params.value(w).unwrap().as_slice().as_ptr();
    let mut opt = AdamW::new(AdamWOptions::default()).unwrap();
    for _ in 0..3 {
        let (_, grads) = params
            .value_and_grad(|b| b.var(w)?.square()?.sum_all())
            .unwrap();
        assert_eq!(
            params.value(w).unwrap().storage_refs(),
            1,
            "the tape was dropped"
        );
        opt.step(&mut params, &grads).unwrap();
    }
    assert_eq!(params.value(w).unwrap().as_slice().as_ptr(), before);
}

// ---- gradient clipping -------------------------------------------------------

mod clip {
    use super::*;
    use lossgraph_nn::clip_grad_norm;

    fn grads(params: &ParamStore<f64>) -> ParamGrads<f64> {
        // norm √(3² + 4² + 12²) = 13 over two tensors, one parameter without gradient
        ParamGrads::new(
            params,
            vec![
                Some(Tensor::from_slice(&[3.0, 4.0])),
                None,
                Some(Tensor::from_slice(&[12.0])),
            ],
        )
        .unwrap()
    }
    fn params() -> ParamStore<f64> {
        let mut p = ParamStore::new();
        p.add("a", Tensor::zeros([2]).unwrap()).unwrap();
        p.add("b", Tensor::zeros([5]).unwrap()).unwrap();
        p.add("c", Tensor::zeros([1]).unwrap()).unwrap();
        p
    }

    #[test]
    fn clips_to_max_norm_and_returns_the_norm_before() {
        let p = params();
        let mut g = grads(&p);
        let norm = clip_grad_norm(&mut g, 6.5).unwrap();
        assert_eq!(norm, 13.0);
        // PyTorch's factor: 6.5/(13 + 1e-6)
        let c = 6.5 / (13.0 + 1e-6);
        let got: Vec<Vec<f64>> = g.iter().flatten().map(|t| t.to_vec()).collect();
        assert_eq!(got, vec![vec![3.0 * c, 4.0 * c], vec![12.0 * c]]);
        assert!((g.global_norm() - 6.5).abs() < 1e-6);
        assert!(g.iter().nth(1).unwrap().is_none());
    }

    #[test]
    fn leaves_small_gradients_alone() {
        let p = params();
        let mut g = grads(&p);
        assert_eq!(clip_grad_norm(&mut g, 13.0).unwrap(), 13.0); // 13/(13+1e-6) < 1 clips a hair
        let mut g = grads(&p);
        assert_eq!(clip_grad_norm(&mut g, 20.0).unwrap(), 13.0);
        let got: Vec<Vec<f64>> = g.iter().flatten().map(|t| t.to_vec()).collect();
        assert_eq!(got, vec![vec![3.0, 4.0], vec![12.0]]);
    }

    #[test]
    fn zero_max_norm_zeroes_and_bad_max_norm_is_an_error() {
        let p = params();
        let mut g = grads(&p);
        clip_grad_norm(&mut g, 0.0).unwrap();
        assert_eq!(g.global_norm(), 0.0);
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let e = clip_grad_norm(&mut grads(&p), bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidOption);
        }
    }

    #[test]
    fn non_finite_norm_is_reported() {
        let p = params();
        let mut g = ParamGrads::new(
            &p,
            vec![Some(Tensor::from_slice(&[f64::NAN, 1.0])), None, None],
        )
        .unwrap();
        assert!(clip_grad_norm(&mut g, 1.0).unwrap().is_nan());
    }
}

// ---- cosine schedule -----------------------------------------------------------

mod schedule {
    use super::*;
    use lossgraph_nn::CosineSchedule;

    #[test]
    fn warmup_mid_and_end() {
        let s = CosineSchedule::new(0.1, 0.001, 100, 1100).unwrap();
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(25) - 0.025).abs() < 1e-15);
        assert!((s.lr(99) - 0.099).abs() < 1e-15);
        assert_eq!(s.lr(100), 0.1);
        // half-way through the decay: the mean of base and min
        assert!((s.lr(600) - 0.0505).abs() < 1e-15);
        // a quarter of the way: min + (base − min)·½(1 + cos(π/4))
        let q = 0.001 + 0.099 * 0.5 * (1.0 + std::f64::consts::FRAC_PI_4.cos());
        assert!((s.lr(350) - q).abs() < 1e-15);
        assert!(s.lr(1099) > 0.001 && s.lr(1099) < 0.0011);
        assert_eq!(s.lr(1100), 0.001);
        assert_eq!(s.lr(usize::MAX), 0.001);
        // monotone: up in warm-up, down after
        assert!((1..100).all(|i| s.lr(i) > s.lr(i - 1)));
        assert!((101..1100).all(|i| s.lr(i) <= s.lr(i - 1)));
    }

    #[test]
    fn no_warmup_and_degenerate_schedules() {
        let s = CosineSchedule::new(1.0, 0.0, 0, 10).unwrap();
        assert_eq!(s.lr(0), 1.0);
        assert!((s.lr(5) - 0.5).abs() < 1e-15);
        let s = CosineSchedule::new(1.0, 0.0, 0, 0).unwrap();
        assert_eq!(s.lr(0), 0.0);
        let s = CosineSchedule::new(1.0, 0.5, 4, 4).unwrap();
        assert_eq!((s.lr(2), s.lr(4)), (0.5, 0.5));
        // an unvalidated literal never panics
        let s = CosineSchedule {
            base_lr: 1.0,
            min_lr: 0.0,
            warmup_steps: 10,
            total_steps: 5,
        };
        assert!((0..20).all(|i| s.lr(i).is_finite()));
    }

    #[test]
    fn invalid_schedules_are_errors() {
        for (b, m, w, t) in [
            (0.1, 0.2, 0, 10),
            (-1.0, -2.0, 0, 10),
            (f64::NAN, 0.0, 0, 1),
            (0.1, 0.0, 11, 10),
        ] {
            let e = CosineSchedule::new(b, m, w, t).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidOption);
        }
    }

    #[test]
    fn drives_an_optimizer() {
        let s = CosineSchedule::new(0.1, 0.0, 2, 10).unwrap();
        let mut opt = Sgd::<f32>::new(SgdOptions::default()).unwrap();
        for step in 0..12 {
            opt.set_lr(s.lr(step)).unwrap();
            assert_eq!(opt.lr(), s.lr(step));
        }
    }
}
