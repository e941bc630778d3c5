//! Shapes from outside data: an element count that wraps `usize` is a
//! `ShapeMismatch`, and a count that fits but cannot be allocated is
//! `OutOfMemory` — never a wrapped count, a panic or an abort.
//!
//! The huge cases hold no data (a zero dim, or a refused allocation), so the
//! tests run in microseconds.

use lossgraph_tensor::{ErrorKind, Shape, Tensor};

/// 2³² · 2³² = 2⁶⁴: wraps to 0 in unchecked `usize` arithmetic.
const WRAPS: [usize; 2] = [1 << 32, 1 << 32];
/// 2⁶⁰ elements: fits in `usize`, exceeds any machine's memory.
const HUGE: [usize; 1] = [1 << 60];

fn kind<T>(r: lossgraph_tensor::Result<T>) -> ErrorKind {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.kind(),
    }
}

#[test]
fn constructors_reject_counts_that_wrap() {
    assert_eq!(
        kind(Tensor::<f32>::from_vec(vec![], WRAPS)),
        ErrorKind::ShapeMismatch
    );
    assert_eq!(kind(Tensor::<f32>::zeros(WRAPS)), ErrorKind::ShapeMismatch);
    assert_eq!(kind(Tensor::<f64>::ones(WRAPS)), ErrorKind::ShapeMismatch);
    assert_eq!(kind(Tensor::full(WRAPS, 1i64)), ErrorKind::ShapeMismatch);
    assert_eq!(
        kind(Tensor::<f32>::randn(WRAPS, 0.0, 1.0, 0)),
        ErrorKind::ShapeMismatch
    );
    assert_eq!(
        kind(Tensor::<f32>::rand_uniform(WRAPS, 0.0, 1.0, 0)),
        ErrorKind::ShapeMismatch
    );
    // a zero dim does not hide a wrapping extent: the strides would wrap
    assert_eq!(
        kind(Tensor::<f32>::from_vec(vec![], [0, 1 << 32, 1 << 32])),
        ErrorKind::ShapeMismatch
    );
    // the report: this was accepted, then `sum` panicked on it
    let e = Tensor::<f32>::from_vec(vec![], [1usize << 32, 1 << 32]).unwrap_err();
    assert!(e.to_string().contains("[4294967296, 4294967296]"), "{e}");
}

#[test]
fn constructors_return_an_error_for_memory_that_does_not_exist() {
    assert_eq!(kind(Tensor::<f32>::zeros(HUGE)), ErrorKind::OutOfMemory);
    assert_eq!(
        kind(Tensor::<f64>::ones([1 << 62, 4])),
        ErrorKind::ShapeMismatch
    );
    assert_eq!(
        kind(Tensor::<f32>::zeros([1 << 62, 4])),
        ErrorKind::ShapeMismatch
    );
    assert_eq!(kind(Tensor::full(HUGE, 0i64)), ErrorKind::OutOfMemory);
    assert_eq!(kind(Tensor::<f32>::arange(1 << 60)), ErrorKind::OutOfMemory);
    assert_eq!(kind(Tensor::arange_i64(1 << 60)), ErrorKind::OutOfMemory);
    assert_eq!(
        kind(Tensor::<f32>::randn(HUGE, 0.0, 1.0, 0)),
        ErrorKind::OutOfMemory
    );
    assert_eq!(
        kind(Tensor::<f64>::rand_uniform(HUGE, 0.0, 1.0, 0)),
        ErrorKind::OutOfMemory
    );
    let ids = Tensor::from_vec(vec![0i64, 1, 2], [3]).unwrap();
    assert_eq!(
        kind(Tensor::<f32>::one_hot(&ids, 1 << 63)),
        ErrorKind::ShapeMismatch
    );
    assert_eq!(
        kind(Tensor::<f32>::one_hot(&ids, 1 << 59)),
        ErrorKind::OutOfMemory
    );
    // and a normal request still works after the refusals
    assert_eq!(Tensor::<f32>::zeros([2, 3]).unwrap().to_vec(), vec![0.0; 6]);
}

#[test]
fn shape_changing_ops_check_their_counts() {
    let empty = Tensor::<f32>::zeros([0, 4]).unwrap();
    assert_eq!(kind(empty.reshape(WRAPS)), ErrorKind::ShapeMismatch);
    assert_eq!(
        kind(empty.reshape([0, 1 << 62, 8])),
        ErrorKind::ShapeMismatch
    );
    // broadcasting two empty tensors to an extent of 2⁶⁴
    let a = Tensor::<f32>::zeros([1 << 32, 1, 0]).unwrap();
    let b = Tensor::<f32>::zeros([1, 1 << 32, 0]).unwrap();
    assert_eq!(kind(a.add(&b)), ErrorKind::ShapeMismatch);
    assert_eq!(kind(a.mul(&b)), ErrorKind::ShapeMismatch);
    let one = Tensor::<f32>::zeros([1]).unwrap();
    assert_eq!(
        kind(one.broadcast_to(&Shape::from(WRAPS))),
        ErrorKind::ShapeMismatch
    );
    assert_eq!(
        kind(one.broadcast_to(&Shape::from(HUGE))),
        ErrorKind::OutOfMemory
    );
    // concat of one tensor with itself whose joined length wraps
    let wide = Tensor::<f32>::zeros([0, 1 << 63]).unwrap();
    assert_eq!(
        kind(Tensor::concat(&[&wide, &wide], 1)),
        ErrorKind::ShapeMismatch
    );
    let quarter = Tensor::<f32>::zeros([0, 1 << 62]).unwrap();
    let four = [&quarter, &quarter, &quarter, &quarter];
    assert_eq!(kind(Tensor::stack(&four, 0)), ErrorKind::ShapeMismatch);
    // matmul of two empty operands whose product is 2⁶⁶ or 2⁶⁰ elements
    let (l, r) = (
        Tensor::<f32>::zeros([1 << 33, 0]).unwrap(),
        Tensor::<f32>::zeros([0, 1 << 33]).unwrap(),
    );
    assert_eq!(kind(l.matmul(&r)), ErrorKind::ShapeMismatch);
    let (l, r) = (
        Tensor::<f32>::zeros([1 << 30, 0]).unwrap(),
        Tensor::<f32>::zeros([0, 1 << 30]).unwrap(),
    );
    assert_eq!(kind(l.matmul(&r)), ErrorKind::OutOfMemory);
    // adjoint ops that take the caller's shape
    let idx = Tensor::from_vec(vec![0i64], [1]).unwrap();
    assert_eq!(
        kind(Tensor::index_add(
            &Shape::from([1usize << 62, 4]),
            0,
            &idx,
            &Tensor::<f32>::zeros([1, 4]).unwrap()
        )),
        ErrorKind::ShapeMismatch
    );
    assert_eq!(
        kind(Tensor::index_add(
            &Shape::from([1usize << 58, 4]),
            0,
            &idx,
            &Tensor::<f32>::zeros([1, 4]).unwrap()
        )),
        ErrorKind::OutOfMemory
    );
    assert_eq!(
        kind(Tensor::scatter_add(
            &Shape::from([1usize << 62, 4]),
            0,
            &Tensor::from_vec(vec![0i64], [1, 1]).unwrap(),
            &Tensor::<f32>::zeros([1, 1]).unwrap()
        )),
        ErrorKind::ShapeMismatch
    );
}

/// A batch of 0 against a batch of 1: the 1 broadcasts to 0 and the product
/// is empty. (Found by the registry/tensor fuzz door: the batch was taken as
/// the larger of the two, so the product read a matrix out of the empty
/// side's buffer and crashed with SIGSEGV.)
#[test]
fn an_empty_batch_against_a_batch_of_one_is_empty() {
    let empty = Tensor::<f32>::from_vec(vec![], [0, 2, 3]).unwrap();
    let one = Tensor::<f32>::from_vec(vec![1.0; 12], [1, 3, 4]).unwrap();
    assert_eq!(empty.matmul(&one).unwrap().dims(), &[0, 2, 4]);
    let one_left = Tensor::<f32>::from_vec(vec![1.0; 6], [1, 2, 3]).unwrap();
    let empty_right = Tensor::<f32>::from_vec(vec![], [0, 3, 4]).unwrap();
    assert_eq!(one_left.matmul(&empty_right).unwrap().dims(), &[0, 2, 4]);
    let ta = Tensor::<f64>::from_vec(vec![], [0, 3, 2]).unwrap();
    let tb = Tensor::<f64>::from_vec(vec![1.0; 12], [1, 3, 4]).unwrap();
    assert_eq!(ta.matmul_tn(&tb).unwrap().dims(), &[0, 2, 4]);
}
