//! Kernel results against values worked out by hand.

use approx::assert_relative_eq;
use lossgraph_tensor::{matmul_into, matmul_t, ErrorKind, Shape, Tensor, Trans};

fn t(v: &[f64], shape: &[usize]) -> Tensor<f64> {
    Tensor::from_vec(v.to_vec(), shape.to_vec()).unwrap()
}

#[test]
fn constructors_check_shapes() {
    assert_eq!(
        Tensor::from_vec(vec![1.0f32; 5], [2, 3])
            .unwrap_err()
            .kind(),
        ErrorKind::ShapeMismatch
    );
    assert_eq!(Tensor::<f64>::zeros([2, 0]).unwrap().numel(), 0);
    assert_eq!(
        Tensor::<f64>::arange(4).unwrap().to_vec(),
        vec![0.0, 1.0, 2.0, 3.0]
    );
    assert_eq!(Tensor::scalar(2.0f64).item().unwrap(), 2.0);
    assert_eq!(
        t(&[1.0, 2.0], &[2]).item().unwrap_err().kind(),
        ErrorKind::ShapeMismatch
    );
    // seeded sampling is reproducible
    let a = Tensor::<f32>::randn([3, 3], 0.0, 1.0, 42).unwrap();
    assert_eq!(a, Tensor::<f32>::randn([3, 3], 0.0, 1.0, 42).unwrap());
    let u = Tensor::<f64>::rand_uniform([1000], -2.0, 3.0, 1).unwrap();
    assert!(u.as_slice().iter().all(|&x| (-2.0..3.0).contains(&x)));
    assert_eq!(
        Tensor::<f64>::randn([2], 0.0, -1.0, 0).unwrap_err().kind(),
        ErrorKind::InvalidOption
    );
}

#[test]
fn broadcasting_binary_ops() {
    let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let col = t(&[10.0, 20.0], &[2, 1]);
    assert_eq!(
        a.add(&col).unwrap().to_vec(),
        vec![11.0, 12.0, 13.0, 24.0, 25.0, 26.0]
    );
    let row = t(&[1.0, 0.0, -1.0], &[3]);
    assert_eq!(
        a.mul(&row).unwrap().to_vec(),
        vec![1.0, 0.0, -3.0, 4.0, 0.0, -6.0]
    );
    let outer = col.sub(&t(&[1.0, 2.0, 3.0], &[1, 3])).unwrap();
    assert_eq!(outer.dims(), &[2, 3]);
    assert_eq!(outer.to_vec(), vec![9.0, 8.0, 7.0, 19.0, 18.0, 17.0]);
    assert_eq!(
        a.add(&t(&[1.0, 2.0], &[2])).unwrap_err().kind(),
        ErrorKind::ShapeMismatch
    );
    assert_eq!(
        a.maximum(&t(&[3.5], &[1])).unwrap().to_vec(),
        vec![3.5, 3.5, 3.5, 4.0, 5.0, 6.0]
    );
    assert_eq!(
        a.gt(&t(&[2.0], &[])).unwrap().to_vec(),
        vec![0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    );
}

#[test]
fn reductions_along_axes() {
    let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    assert_eq!(a.sum(0, false).unwrap().to_vec(), vec![5.0, 7.0, 9.0]);
    assert_eq!(a.sum(1, true).unwrap().dims(), &[2, 1]);
    assert_eq!(a.mean(1, false).unwrap().to_vec(), vec![2.0, 5.0]);
    assert_eq!(a.max(0, false).unwrap().to_vec(), vec![4.0, 5.0, 6.0]);
    assert_eq!(a.min(1, false).unwrap().to_vec(), vec![1.0, 4.0]);
    assert_eq!(a.argmax(1, false).unwrap().to_vec(), vec![2, 2]);
    assert_eq!(
        a.sum(2, false).unwrap_err().kind(),
        ErrorKind::InvalidOption
    );
    let lse = a.logsumexp(1, false).unwrap();
    assert_relative_eq!(
        lse.as_slice()[0],
        (1f64.exp() + 2f64.exp() + 3f64.exp()).ln(),
        epsilon = 1e-12
    );
    // max-shifted: huge logits do not overflow
    let big = t(&[1e4, 1e4], &[1, 2]);
    assert_relative_eq!(
        big.logsumexp(1, false).unwrap().as_slice()[0],
        1e4 + 2f64.ln(),
        epsilon = 1e-9
    );
    assert_eq!(a.sum_all().item().unwrap(), 21.0);
}

#[test]
fn softmax_is_stable_and_normalised() {
    let z = Tensor::from_vec(vec![1000.0f32, 0.0, -1000.0, 1.0, 2.0, 3.0], [2, 3]).unwrap();
    let p = z.softmax();
    assert!(p.all_finite());
    assert_relative_eq!(p.as_slice()[0], 1.0);
    let row: f32 = p.as_slice()[3..].iter().sum();
    assert_relative_eq!(row, 1.0, epsilon = 1e-6);
    let lp = z.log_softmax();
    assert_relative_eq!(lp.as_slice()[2], -2000.0);
}

#[test]
fn matmul_and_transposed_forms() {
    let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = t(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]);
    assert_eq!(a.matmul(&b).unwrap().to_vec(), vec![4.0, 5.0, 10.0, 11.0]);
    let bt = b.t().unwrap();
    assert_eq!(
        a.matmul_nt(&bt).unwrap().to_vec(),
        vec![4.0, 5.0, 10.0, 11.0]
    );
    assert_eq!(
        a.t().unwrap().matmul_tn(&b).unwrap().to_vec(),
        vec![4.0, 5.0, 10.0, 11.0]
    );
    assert_eq!(a.matmul(&a).unwrap_err().kind(), ErrorKind::ShapeMismatch);
    let batch = Tensor::stack(&[&a, &a.mul_scalar(2.0)], 0).unwrap();
    let y = batch.matmul(&b).unwrap();
    assert_eq!(y.dims(), &[2, 2, 2]);
    assert_eq!(
        y.to_vec(),
        vec![4.0, 5.0, 10.0, 11.0, 8.0, 10.0, 20.0, 22.0]
    );
    assert_eq!(
        t(&[1.0], &[1]).matmul(&b).unwrap_err().kind(),
        ErrorKind::ShapeMismatch
    );
}

#[test]
fn layout_ops() {
    let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    assert_eq!(a.t().unwrap().to_vec(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    assert_eq!(
        a.narrow(1, 1, 2).unwrap().to_vec(),
        vec![2.0, 3.0, 5.0, 6.0]
    );
    assert_eq!(
        a.narrow(1, 2, 2).unwrap_err().kind(),
        ErrorKind::InvalidOption
    );
    let c = Tensor::concat(&[&a, &a], 1).unwrap();
    assert_eq!(c.dims(), &[2, 6]);
    assert_eq!(c.narrow(1, 3, 3).unwrap(), a);
    assert_eq!(
        a.permute(&[0, 0]).unwrap_err().kind(),
        ErrorKind::InvalidOption
    );
    let r = a.reshape([3, 2]).unwrap();
    assert!(r.shares_storage(&a));
    let bc = t(&[1.0, 2.0], &[2, 1])
        .broadcast_to(&Shape::from([2, 3]))
        .unwrap();
    assert_eq!(bc.to_vec(), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    assert_eq!(
        bc.sum_to_shape(&Shape::from([2, 1])).unwrap().to_vec(),
        vec![3.0, 6.0]
    );
}

#[test]
fn indexing_ops() {
    let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let idx = Tensor::from_vec(vec![2i64, 0], [2, 1]).unwrap();
    assert_eq!(a.gather(1, &idx).unwrap().to_vec(), vec![3.0, 4.0]);
    let bad = Tensor::from_vec(vec![3i64, 0], [2, 1]).unwrap();
    assert_eq!(
        a.gather(1, &bad).unwrap_err().kind(),
        ErrorKind::InvalidTarget
    );
    let sel = Tensor::from_vec(vec![1i64, 1], [2]).unwrap();
    assert_eq!(
        a.index_select(0, &sel).unwrap().to_vec(),
        vec![4.0, 5.0, 6.0, 4.0, 5.0, 6.0]
    );
    let oh = Tensor::<f32>::one_hot(&Tensor::from_vec(vec![1i64, 0], [2]).unwrap(), 3).unwrap();
    assert_eq!(oh.to_vec(), vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
    assert_eq!(
        Tensor::<f32>::one_hot(&Tensor::from_vec(vec![-1i64], [1]).unwrap(), 3)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidTarget
    );
}

#[test]
fn large_kernels_match_small_ones() {
    // above the parallel threshold the rayon path must agree with the serial one
    let n = 1 << 17;
    let a = Tensor::<f64>::randn([n], 0.0, 1.0, 3).unwrap();
    let b = Tensor::<f64>::randn([n], 0.0, 1.0, 4).unwrap();
    let s = a.add(&b).unwrap();
    for i in [0, 1, n / 2, n - 1] {
        assert_eq!(s.as_slice()[i], a.as_slice()[i] + b.as_slice()[i]);
    }
    let e = a.exp();
    assert_eq!(e.as_slice()[n - 1], a.as_slice()[n - 1].exp());
}

/// `op(a)·op(b)` by the definition, in f64, for 2-D row-major operands.
fn reference_product(a: &Tensor<f64>, ta: Trans, b: &Tensor<f64>, tb: Trans) -> Vec<f64> {
    let at = |i: usize, p: usize| match ta {
        Trans::N => a.as_slice()[i * a.dims()[1] + p],
        Trans::T => a.as_slice()[p * a.dims()[1] + i],
    };
    let bt = |p: usize, j: usize| match tb {
        Trans::N => b.as_slice()[p * b.dims()[1] + j],
        Trans::T => b.as_slice()[j * b.dims()[1] + p],
    };
    let (m, k) = match ta {
        Trans::N => (a.dims()[0], a.dims()[1]),
        Trans::T => (a.dims()[1], a.dims()[0]),
    };
    let n = match tb {
        Trans::N => b.dims()[1],
        Trans::T => b.dims()[0],
    };
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
        }
    }
    c
}

/// Sizes large enough for the GEMM's packed, threaded paths and with ragged
/// edges, in every transposed form, against the definition; and the
/// accumulating form `c += op(a)·op(b)`.
#[test]
fn matmul_matches_the_definition_at_larger_sizes() {
    for (m, k, n) in [(67, 130, 53), (300, 257, 129), (1, 500, 3)] {
        for ta in [Trans::N, Trans::T] {
            for tb in [Trans::N, Trans::T] {
                let ad = if ta == Trans::N { [m, k] } else { [k, m] };
                let bd = if tb == Trans::N { [k, n] } else { [n, k] };
                let a = Tensor::<f64>::randn(ad, 0.0, 1.0, 1).unwrap();
                let b = Tensor::<f64>::randn(bd, 0.0, 1.0, 2).unwrap();
                let want = reference_product(&a, ta, &b, tb);
                let got = matmul_t(&a, ta, &b, tb).unwrap();
                assert_eq!(got.dims(), &[m, n]);
                for (g, w) in got.as_slice().iter().zip(&want) {
                    assert_relative_eq!(*g, *w, epsilon = 1e-10, max_relative = 1e-12);
                }
                let mut acc = vec![1.0; m * n];
                matmul_into(&mut acc, 1.0, &a, ta, &b, tb).unwrap();
                for (g, w) in acc.iter().zip(&want) {
                    assert_relative_eq!(*g, w + 1.0, epsilon = 1e-10, max_relative = 1e-12);
                }
            }
        }
    }
    let a = Tensor::<f64>::ones([2, 3]).unwrap();
    let mut wrong = vec![0.0; 5];
    let err = matmul_into(&mut wrong, 0.0, &a, Trans::N, &a, Trans::T).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ShapeMismatch);
    let mut nan = vec![f64::NAN; 4];
    matmul_into(
        &mut nan,
        0.0,
        &Tensor::zeros([2, 0]).unwrap(),
        Trans::N,
        &Tensor::zeros([0, 2]).unwrap(),
        Trans::N,
    )
    .unwrap();
    assert_eq!(nan, [0.0; 4]);
}

/// The f32 products (the `gemm` crate, on one thread and on all of them, in
/// every transposed form, and batched) against the f64 definition, within
/// the error bound of an f32 dot product of length k: `(k + 2)·ε·Σ|a||b|`.
#[test]
fn f32_matmul_matches_the_definition_serial_and_parallel() {
    use lossgraph_tensor::parallel::serial_products;
    for (m, k, n) in [
        (1, 1, 1),
        (3, 5, 2),
        (17, 33, 9),
        (130, 257, 70),
        (300, 64, 513),
    ] {
        for ta in [Trans::N, Trans::T] {
            for tb in [Trans::N, Trans::T] {
                let ad = if ta == Trans::N { [m, k] } else { [k, m] };
                let bd = if tb == Trans::N { [k, n] } else { [n, k] };
                let a = Tensor::<f32>::randn(ad, 0.0, 1.0, 7).unwrap();
                let b = Tensor::<f32>::randn(bd, 0.0, 1.0, 8).unwrap();
                let (a64, b64) = (a.cast::<f64>(), b.cast::<f64>());
                let want = reference_product(&a64, ta, &b64, tb);
                let scale = reference_product(&a64.abs(), ta, &b64.abs(), tb);
                let check = |got: &[f32], what: &str| {
                    assert_eq!(got.len(), m * n, "{what}");
                    for (idx, ((&g, w), s)) in got.iter().zip(&want).zip(&scale).enumerate() {
                        let bound = (k as f64 + 2.0) * f64::from(f32::EPSILON) * s;
                        assert!(
                            (f64::from(g) - w).abs() <= bound,
                            "{what} {m}x{k}x{n} {ta:?}{tb:?} at {idx}: {g} vs {w} (bound {bound})"
                        );
                    }
                };
                let parallel = matmul_t(&a, ta, &b, tb).unwrap();
                check(parallel.as_slice(), "parallel");
                let serial = serial_products(|| matmul_t(&a, ta, &b, tb).unwrap());
                check(serial.as_slice(), "serial");
                // a batch of 3 copies of a against one b: each entry as above
                let mut a3 = ad.to_vec();
                a3.insert(0, 3);
                let a3 = Tensor::from_vec(a.as_slice().repeat(3), a3).unwrap();
                for run_serial in [false, true] {
                    let prod = if run_serial {
                        serial_products(|| matmul_t(&a3, ta, &b, tb).unwrap())
                    } else {
                        matmul_t(&a3, ta, &b, tb).unwrap()
                    };
                    assert_eq!(prod.dims(), &[3, m, n]);
                    for entry in prod.as_slice().chunks(m * n) {
                        check(
                            entry,
                            if run_serial {
                                "serial batch"
                            } else {
                                "parallel batch"
                            },
                        );
                    }
                }
            }
        }
    }
}
