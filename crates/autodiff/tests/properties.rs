//! Property tests on the tape: random shapes into broadcasting ops give the
//! broadcast shape (and gradients of each input's shape) or `ShapeMismatch`,
//! never a panic.

use lossgraph_autodiff::Tape;
use lossgraph_tensor::{broadcast_shapes, ErrorKind, Shape, Tensor};
use proptest::prelude::*;

fn dims() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..4, 0..4)
}

proptest! {
    #[test]
    fn broadcasting_vars_and_their_gradients(da in dims(), db in dims(), which in 0usize..7) {
        let tape = Tape::<f64>::new();
        let a = tape.leaf(Tensor::full(da.clone(), 1.5)?);
        let b = tape.leaf(Tensor::full(db.clone(), 0.5)?);
        let want = broadcast_shapes("t", &Shape::from(da.clone()), &Shape::from(db.clone()));
        let r = match which {
            0 => a.add(&b),
            1 => a.sub(&b),
            2 => a.mul(&b),
            3 => a.div(&b),
            4 => a.maximum(&b),
            5 => a.minimum(&b),
            _ => a.pow(&b),
        };
        match (want, r) {
            (Ok(w), Ok(y)) => {
                prop_assert_eq!(y.shape(), w);
                let g = y.sum_all().unwrap().backward().unwrap();
                prop_assert_eq!(g.get_or_zeros(&a).dims().to_vec(), da);
                prop_assert_eq!(g.get_or_zeros(&b).dims().to_vec(), db);
            }
            (Err(_), Err(e)) => prop_assert_eq!(e.kind(), ErrorKind::ShapeMismatch),
            (w, r) => prop_assert!(false, "want {:?}, got {:?}", w, r.map(|v| v.dims())),
        }
    }

    #[test]
    fn axis_ops_on_vars_never_panic(d in dims(), axis in 0usize..5) {
        let tape = Tape::<f32>::new();
        let x = tape.leaf(Tensor::ones(d)?);
        for r in [x.sum(axis, false), x.mean(axis, true), x.max(axis, false), x.min(axis, true), x.logsumexp(axis, false), x.narrow(axis, 0, 1), x.transpose(axis, 0)].into_iter().flatten() {
            let _ = r.sum_all().and_then(|s| s.backward());
        }
    }
}
