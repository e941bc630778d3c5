//! Speed baseline: f32 matmul 512³, a 784-512-512-10 MLP forward+backward
//! step (batch 256, cross-entropy), and elementwise kernels on 4M elements.
//!
//! `cargo bench --bench baseline`. Throughput for matmul is reported in
//! elements/s = FLOP/s (2·M·N·K per product).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lossgraph::prelude::*;
use std::hint::black_box;

fn matmul(c: &mut Criterion) {
    let n = 512;
    let a = Tensor::<f32>::randn([n, n], 0.0, 1.0, 1).unwrap();
    let b = Tensor::<f32>::randn([n, n], 0.0, 1.0, 2).unwrap();
    let mut g = c.benchmark_group("matmul");
    g.throughput(Throughput::Elements(2 * (n * n * n) as u64));
    g.bench_function("f32_512x512x512", |bch| {
        bch.iter(|| black_box(a.matmul(&b).unwrap()))
    });
    g.finish();
}

/// The MLP's parameters, stored `[out, in]` like PyTorch's `nn.Linear`.
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

    /// One forward + backward pass; returns the loss.
    fn step(&self, x: &Tensor<f32>, y: &IndexTensor) -> Result<f32> {
        let tape = Tape::new();
        let params: Vec<(Var<f32>, Var<f32>)> = self
            .layers
            .iter()
            .map(|(w, b)| (tape.leaf(w.clone()), tape.leaf(b.clone())))
            .collect();
        let mut h = tape.constant(x.clone());
        for (i, (w, b)) in params.iter().enumerate() {
            h = h.matmul_nt(w)?.add(b)?;
            if i + 1 < params.len() {
                h = h.relu()?;
            }
        }
        let loss = lossgraph::losses::cross_entropy(&h, y, &Default::default())?;
        let grads = loss.backward()?;
        black_box(grads.get(&params[0].0));
        loss.item()
    }
}

fn mlp_step(c: &mut Criterion) {
    let mlp = Mlp::new(&[784, 512, 512, 10]);
    let x = Tensor::<f32>::randn([256, 784], 0.0, 1.0, 7).unwrap();
    let y = Tensor::<f32>::rand_uniform([256], 0.0, 10.0, 8)
        .unwrap()
        .map(|v| v as i64);
    c.bench_function("mlp_784_512_512_10_b256_fwd_bwd", |b| {
        b.iter(|| mlp.step(&x, &y).unwrap())
    });
}

fn elementwise(c: &mut Criterion) {
    let n = 4 << 20;
    let a = Tensor::<f32>::randn([n], 0.0, 1.0, 3).unwrap();
    let b = Tensor::<f32>::randn([n], 0.0, 1.0, 4).unwrap();
    let mut g = c.benchmark_group("elementwise_4m");
    g.throughput(Throughput::Bytes((3 * n * 4) as u64));
    g.bench_function("add_f32", |bch| bch.iter(|| black_box(a.add(&b).unwrap())));
    g.bench_function("exp_f32", |bch| bch.iter(|| black_box(a.exp())));
    g.finish();
}

criterion_group!(benches, matmul, mlp_step, elementwise);
criterion_main!(benches);
