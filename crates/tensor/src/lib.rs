//! # lossgraph-tensor
//!
//! Dense tensors for lossgraph: contiguous row-major storage shared behind an
//! `Arc`, shapes on `smallvec`, and plain kernels over slices (elementwise with
//! NumPy broadcasting, reductions, softmax, matrix products through
//! `gemm`, layout and indexing). This crate knows nothing of
//! gradients; `lossgraph-autodiff` records these kernels on a tape.
//!
//! Every fallible function returns [`Result`]; bad shapes, axes and indices
//! are errors, never panics.
//!
//! ```
//! use lossgraph_tensor::Tensor;
//! let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3])?;
//! let bias = Tensor::from_vec(vec![10.0f32, 20.0, 30.0], [3])?;
//! let y = x.add(&bias)?; // broadcasts over rows
//! assert_eq!(y.to_vec(), vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
//! assert_eq!(y.sum(1, false)?.to_vec(), vec![66.0, 75.0]);
//! # Ok::<(), lossgraph_tensor::Error>(())
//! ```

mod alloc;
mod binary;
mod error;
mod float;
mod index;
mod layout;
mod linalg;
pub mod parallel;
pub mod pool;
mod reduce;
mod shape;
pub mod simd;
mod softmax;
mod tensor;
mod unary;

pub use binary::broadcast_map;
pub use error::{Error, ErrorKind, Result};
pub use float::{DType, Element, Float};
pub use index::check_indices;
pub use linalg::{matmul_into, matmul_t, Trans};
pub use shape::{broadcast_shapes, broadcasts_to, Shape};
pub use softmax::{logsumexp_row, softmax_row};
pub use tensor::{IndexTensor, Tensor};
pub use unary::{sigmoid, softplus};
