//! What may cross threads, and a stress test that independent training runs
//! on many threads at once give the same bits as one at a time.
//!
//! - `Tensor<T>` is `Send + Sync`: its storage is an `Arc` that kernels never
//!   mutate while shared, so one tensor may be read by many threads.
//! - `ParamStore<T>`, `ParamGrads<T>` and the optimizers are `Send + Sync`:
//!   a model can be built on one thread and trained on another.
//! - `Tape<T>` and `Var<T>` are neither (`Rc` + `RefCell`): a tape belongs to
//!   the thread that made it. Each worker makes its own tape per step; a
//!   data-parallel step shares the parameters' tensors read-only.

use lossgraph::losses::{cross_entropy, CrossEntropyOptions};
use lossgraph::nn::{Activation, Adam, AdamOptions, Init, Mlp, Module, Optimizer, ParamStore};
use lossgraph::prelude::*;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn what_crosses_threads() {
    assert_send_sync::<Tensor<f32>>();
    assert_send_sync::<Tensor<f64>>();
    assert_send_sync::<IndexTensor>();
    assert_send_sync::<ParamStore<f32>>();
    assert_send_sync::<lossgraph::nn::ParamGrads<f32>>();
    assert_send_sync::<Adam<f32>>();
    assert_send_sync::<Mlp>();
    assert_send_sync::<lossgraph::autodiff::Error>();
}

/// Train a 64-128-16 MLP (4096 rows: the loss and matrix kernels take their threaded paths) for a few Adam steps on seeded data; return every
/// parameter's bits and the losses' bits.
fn train(seed: u64) -> Vec<u32> {
    let x = Tensor::<f32>::randn([4096, 64], 0.0, 1.0, seed).unwrap();
    let ids: Vec<i64> = (0..4096)
        .map(|i| ((i as u64 * 7 + seed) % 16) as i64)
        .collect();
    let y = Tensor::from_vec(ids, [4096]).unwrap();
    let mut params = ParamStore::<f32>::new();
    let mlp = Mlp::new(
        &mut params,
        "mlp",
        &[64, 128, 16],
        Activation::Relu,
        Init::kaiming_uniform(Activation::Relu),
        seed,
    )
    .unwrap();
    let mut opt = Adam::new(AdamOptions {
        lr: 1e-2,
        ..Default::default()
    })
    .unwrap();
    let mut bits = Vec::new();
    for _ in 0..4 {
        let (loss, grads) = params
            .value_and_grad(|p| {
                let logits = mlp.forward(p, &p.tape().constant(x.clone()))?;
                cross_entropy(&logits, &y, &CrossEntropyOptions::default())
            })
            .unwrap();
        opt.step(&mut params, &grads).unwrap();
        bits.push(loss.to_bits());
    }
    for p in params.iter() {
        bits.extend(p.value().as_slice().iter().map(|f| f.to_bits()));
    }
    bits
}

#[test]
fn many_training_runs_at_once_match_one_at_a_time_bit_for_bit() {
    let seeds: Vec<u64> = (0..8).collect();
    let alone: Vec<Vec<u32>> = seeds.iter().map(|&s| train(s)).collect();
    // two rounds of eight threads, each thread its own model and tapes,
    // all sharing rayon's pool for the kernels
    for _round in 0..2 {
        let together: Vec<Vec<u32>> = std::thread::scope(|sc| {
            let hs: Vec<_> = seeds.iter().map(|&s| sc.spawn(move || train(s))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (s, (a, t)) in alone.iter().zip(&together).enumerate() {
            assert!(
                a == t,
                "seed {s}: a run on a shared thread pool differs from the lone run"
            );
        }
    }
    // the runs are not trivially equal to each other
    assert_ne!(alone[0], alone[1]);
}
