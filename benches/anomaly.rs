//! What anomaly mode costs: one MLP forward + backward step (784-256-256-10,
//! batch 128, tanh, fused cross-entropy) with the mode off and on.
//!
//! `cargo bench --bench anomaly`. Off is the default path, the one every
//! other benchmark measures: one branch per recorded op. On scans every op's
//! output and every gradient for NaN/±∞ (one extra pass over each tensor).
//! No assertion is made on the timings; read them from the report.

use criterion::{criterion_group, criterion_main, Criterion};
use lossgraph::prelude::*;
use std::hint::black_box;

/// Weights `[out, in]` and biases `[out]`.
struct Mlp {
    layers: Vec<(Tensor<f32>, Tensor<f32>)>,
}

impl Mlp {
    fn new(sizes: &[usize]) -> Self {
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let bound = (1.0 / w[0] as f64).sqrt();
                (
                    Tensor::rand_uniform([w[1], w[0]], -bound, bound, i as u64).unwrap(),
                    Tensor::zeros([w[1]]).unwrap(),
                )
            })
            .collect();
        Mlp { layers }
    }

    /// Forward + backward on a fresh tape with anomaly mode as given.
    fn step(&self, x: &Tensor<f32>, y: &IndexTensor, anomaly: bool) -> Result<f32> {
        let tape = Tape::new();
        tape.set_anomaly_mode(anomaly);
        let params: Vec<(Var<f32>, Var<f32>)> = self
            .layers
            .iter()
            .map(|(w, b)| (tape.leaf(w.clone()), tape.leaf(b.clone())))
            .collect();
        let mut h = tape.constant(x.clone());
        for (i, (w, b)) in params.iter().enumerate() {
            h = h.matmul_nt(w)?.add(b)?;
            if i + 1 < params.len() {
                h = h.tanh()?;
            }
        }
        let loss = lossgraph::losses::cross_entropy(&h, y, &Default::default())?;
        let grads = loss.backward()?;
        black_box(grads.get(&params[0].0));
        loss.item()
    }
}

fn anomaly(c: &mut Criterion) {
    let mlp = Mlp::new(&[784, 256, 256, 10]);
    let x = Tensor::<f32>::randn([128, 784], 0.0, 1.0, 7).unwrap();
    let y = Tensor::<f32>::rand_uniform([128], 0.0, 10.0, 8)
        .unwrap()
        .map(|v| v as i64);
    let mut g = c.benchmark_group("anomaly_mlp_784_256_256_10_b128_fwd_bwd");
    g.bench_function("off", |b| b.iter(|| mlp.step(&x, &y, false).unwrap()));
    g.bench_function("on", |b| b.iter(|| mlp.step(&x, &y, true).unwrap()));
    g.finish();
}

criterion_group!(benches, anomaly);
criterion_main!(benches);
