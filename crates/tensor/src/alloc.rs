//! Fallible allocation for buffers whose size comes from a shape.
//!
//! A shape read from a case file, a checkpoint or a caller can ask for more
//! memory than exists. `vec![v; n]` aborts the process when the allocator
//! refuses; these helpers check the element count ([`Shape::checked_numel`])
//! and reserve with `try_reserve_exact`, so the caller gets an error instead.

use crate::error::{Error, Result};
use crate::float::Element;
use crate::shape::Shape;

/// An empty vector with room for exactly the elements of `shape`, or an
/// error naming `op` and the shape.
pub(crate) fn try_with_capacity<T: Element>(op: &str, shape: &Shape) -> Result<Vec<T>> {
    let n = shape.checked_numel(op)?;
    if let Some(mut v) = crate::pool::reuse(n) {
        v.clear();
        return Ok(v);
    }
    // `n` is the shape's true count here, so the message's product is exact
    let mut out = Vec::new();
    out.try_reserve_exact(n).map_err(|_| Error::OutOfMemory {
        op: op.to_string(),
        shape: shape.dims().to_vec(),
        elem_bytes: std::mem::size_of::<T>(),
    })?;
    Ok(out)
}

/// A buffer of `shape`'s element count filled with `v`.
pub(crate) fn try_filled<T: Element>(op: &str, shape: &Shape, v: T) -> Result<Vec<T>> {
    let mut out = try_with_capacity(op, shape)?;
    // `try_with_capacity` checked the count, so `numel` cannot wrap here
    out.resize(shape.numel(), v);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn a_count_that_wraps_is_a_shape_error() {
        let e = try_filled("t", &Shape::from([1usize << 32, 1 << 32]), 0f32).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "Miri stops at an allocation it cannot make instead of returning null"
    )]
    fn memory_that_does_not_exist_is_an_error_not_an_abort() {
        // 2^60 f32 = 4 EiB: fits in usize, no allocator can give it
        let e = try_filled("t", &Shape::from([1usize << 60]), 0f32).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfMemory);
        assert!(e.to_string().contains("[1152921504606846976]"), "{e}");
    }

    #[test]
    fn a_normal_buffer_is_filled() {
        assert_eq!(
            try_filled("t", &Shape::from([2, 3]), 7i64).unwrap(),
            vec![7; 6]
        );
        assert!(try_filled("t", &Shape::from([0, 3]), 1.0f64)
            .unwrap()
            .is_empty());
    }
}
