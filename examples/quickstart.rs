//! Quickstart: a tiny model on the tape, trained for a few hundred steps.
//!
//! A one-hidden-layer MLP learns y = sin(x) on [−3, 3] with the fused `mse`
//! loss; every step builds a fresh tape, calls `backward`, and applies plain
//! gradient descent to the parameters.
//!
//! `cargo run --release --example quickstart`

use lossgraph::losses::{mse, MseOptions};
use lossgraph::prelude::*;

fn main() -> Result<()> {
    // data: 256 points of sin(x)
    let x = Tensor::<f32>::rand_uniform([256, 1], -3.0, 3.0, 0)?;
    let y = x.map(f32::sin);

    // parameters, stored [out, in] like PyTorch's nn.Linear
    let mut w1 = Tensor::<f32>::randn([32, 1], 0.0, 1.0, 1)?;
    let mut b1 = Tensor::<f32>::zeros([32])?;
    let mut w2 = Tensor::<f32>::randn([1, 32], 0.0, (1.0f64 / 32.0).sqrt(), 2)?;
    let mut b2 = Tensor::<f32>::zeros([1])?;
    let lr = 0.05f32;

    for step in 0..=600 {
        // a fresh tape per step: parameters become leaves without a copy
        let tape = Tape::new();
        let (vw1, vb1, vw2, vb2) = (
            tape.leaf(w1.clone()),
            tape.leaf(b1.clone()),
            tape.leaf(w2.clone()),
            tape.leaf(b2.clone()),
        );
        let input = tape.constant(x.clone());
        let target = tape.constant(y.clone());

        let hidden = input.matmul_nt(&vw1)?.add(&vb1)?.tanh()?;
        let pred = hidden.matmul_nt(&vw2)?.add(&vb2)?;
        let loss = mse(&pred, &target, &MseOptions::default())?;
        let grads = loss.backward()?;

        if step % 100 == 0 {
            println!("step {step:>3}  mse {:.5}", loss.item()?);
        }
        // gradient descent: p ← p − lr·∂loss/∂p
        for (p, v) in [
            (&mut w1, &vw1),
            (&mut b1, &vb1),
            (&mut w2, &vw2),
            (&mut b2, &vb2),
        ] {
            if let Some(g) = grads.get(v) {
                *p = p.sub(&g.mul_scalar(lr))?;
            }
        }
    }
    Ok(())
}
