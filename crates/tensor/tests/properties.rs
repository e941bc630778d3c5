//! Property tests: random shapes into broadcasting ops give the right result
//! shape or `ShapeMismatch`, never a panic.

use lossgraph_tensor::{broadcast_shapes, ErrorKind, Shape, Tensor};
use proptest::prelude::*;

fn dims() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..4, 0..4)
}

/// The NumPy rule, written independently of the library's code.
fn numpy_broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let get = |d: &[usize], i: usize| {
        if i + d.len() >= n {
            d[i + d.len() - n]
        } else {
            1
        }
    };
    (0..n)
        .map(|i| match (get(a, i), get(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

proptest! {
    #[test]
    fn binary_ops_broadcast_or_fail_cleanly(da in dims(), db in dims()) {
        let a = Tensor::<f64>::ones(da.clone())?;
        let b = Tensor::<f64>::full(db.clone(), 2.0)?;
        let want = numpy_broadcast(&da, &db);
        for r in [a.add(&b), a.sub(&b), a.mul(&b), a.div(&b), a.maximum(&b), a.minimum(&b), a.pow(&b)] {
            match (&want, r) {
                (Some(w), Ok(t)) => {
                    prop_assert_eq!(t.dims(), w.as_slice());
                    prop_assert_eq!(t.numel(), w.iter().product::<usize>());
                }
                (None, Err(e)) => prop_assert_eq!(e.kind(), ErrorKind::ShapeMismatch),
                (w, r) => prop_assert!(false, "{:?} vs {:?}: want {:?}, got {:?}", da, db, w, r.map(|t| t.dims().to_vec())),
            }
        }
        let s = broadcast_shapes("t", &Shape::from(da.clone()), &Shape::from(db.clone()));
        prop_assert_eq!(s.is_ok(), want.is_some());
    }

    #[test]
    fn broadcast_then_sum_back_is_a_multiple(da in dims(), extra in dims()) {
        // x broadcast to (extra ++ da) and summed back gives x · (#copies)
        let x = Tensor::<f64>::rand_uniform(da.clone(), -1.0, 1.0, 9).unwrap();
        let mut to = extra.clone();
        to.extend(&da);
        let copies: usize = extra.iter().product();
        let big = x.broadcast_to(&Shape::from(to)).unwrap();
        let back = big.sum_to_shape(x.shape()).unwrap();
        for (b, v) in back.as_slice().iter().zip(x.as_slice()) {
            prop_assert!((b - v * copies as f64).abs() < 1e-9);
        }
    }

    #[test]
    fn axis_ops_never_panic(d in dims(), axis in 0usize..5, start in 0usize..4, len in 0usize..4) {
        let x = Tensor::<f32>::ones(d.clone())?;
        let _ = x.sum(axis, true);
        let _ = x.max(axis, false);
        let _ = x.logsumexp(axis, false);
        let _ = x.argmax(axis, false);
        let _ = x.narrow(axis, start, len);
        let _ = x.transpose(axis, 0);
        let _ = Tensor::concat(&[&x, &x], axis);
        let _ = Tensor::stack(&[&x, &x], axis);
        let _ = x.softmax();
        let _ = x.matmul(&x);
    }
}
