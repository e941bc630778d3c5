//! Checkpoints in the [safetensors](https://github.com/huggingface/safetensors)
//! format: one tensor per parameter, under the parameter's name, as `F32` or
//! `F64` little-endian — readable by PyTorch's `safetensors.torch.load_file`.
//!
//! Loading is all or nothing: the file must hold exactly the store's names,
//! each with the store's dtype and shape, and every tensor is decoded and
//! checked before any parameter is replaced.

use crate::params::ParamStore;
use lossgraph_autodiff::{Error, Result};
use lossgraph_tensor::{DType, Float, Tensor};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::any::Any;
use std::path::Path;

/// The safetensors dtype of `T`.
fn dtype_of<T: Float>() -> Result<Dtype> {
    match T::DTYPE {
        DType::F32 => Ok(Dtype::F32),
        DType::F64 => Ok(Dtype::F64),
        other => Err(io(format!("no checkpoint dtype for {other}"))),
    }
}

/// The bytes of `t`, little-endian, bit for bit.
fn to_le_bytes<T: Float>(t: &Tensor<T>) -> Result<Vec<u8>> {
    let any: &dyn Any = t;
    if let Some(t) = any.downcast_ref::<Tensor<f32>>() {
        Ok(t.as_slice().iter().flat_map(|v| v.to_le_bytes()).collect())
    } else if let Some(t) = any.downcast_ref::<Tensor<f64>>() {
        Ok(t.as_slice().iter().flat_map(|v| v.to_le_bytes()).collect())
    } else {
        Err(io(format!("no checkpoint encoding for {}", T::DTYPE)))
    }
}

/// A tensor of `T` from little-endian bytes of `T`'s width, bit for bit.
fn from_le_bytes<T: Float>(bytes: &[u8], dims: &[usize]) -> Result<Tensor<T>> {
    let boxed: Box<dyn Any> = match T::DTYPE {
        DType::F32 => {
            let v: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Box::new(Tensor::from_vec(v, dims)?)
        }
        DType::F64 => {
            let v: Vec<f64> = bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect();
            Box::new(Tensor::from_vec(v, dims)?)
        }
        other => return Err(io(format!("no checkpoint encoding for {other}"))),
    };
    boxed
        .downcast::<Tensor<T>>()
        .map(|t| *t)
        .map_err(|_| io("checkpoint element type mismatch".into()))
}

/// Each parameter as (name, dims, little-endian bytes).
type Encoded<'a> = Vec<(&'a str, Vec<usize>, Vec<u8>)>;

fn encode<T: Float>(params: &ParamStore<T>) -> Result<Encoded<'_>> {
    params
        .iter()
        .map(|p| Ok((p.name(), p.value().dims().to_vec(), to_le_bytes(p.value())?)))
        .collect()
}

fn views<'a>(encoded: &'a Encoded<'_>, dtype: Dtype) -> Result<Vec<(&'a str, TensorView<'a>)>> {
    encoded
        .iter()
        .map(|(name, dims, bytes)| {
            let view = TensorView::new(dtype, dims.clone(), bytes).map_err(st_err)?;
            Ok((*name, view))
        })
        .collect()
}

/// The store as safetensors bytes.
///
/// ```
/// use lossgraph_nn::{checkpoint, ParamStore};
/// use lossgraph_tensor::Tensor;
/// let mut params = ParamStore::<f32>::new();
/// params.add("w", Tensor::from_vec(vec![1.0, -0.5], [2])?)?;
/// let bytes = checkpoint::to_bytes(&params)?;
/// let mut other = ParamStore::<f32>::new();
/// other.add("w", Tensor::zeros([2])?)?;
/// checkpoint::from_bytes(&bytes, &mut other)?;
/// assert_eq!(other.get("w").unwrap().to_vec(), vec![1.0, -0.5]);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `Io` when serialisation fails.
pub fn to_bytes<T: Float>(params: &ParamStore<T>) -> Result<Vec<u8>> {
    let encoded = encode(params)?;
    safetensors::serialize(views(&encoded, dtype_of::<T>()?)?, None).map_err(st_err)
}

/// Load safetensors bytes into `params`, replacing every parameter.
///
/// # Errors
/// `Io` for bytes that are not a safetensors file, for names missing from
/// the file or not in the store, and for a dtype other than the store's;
/// `ShapeMismatch` for a tensor of another shape. On any error `params` is
/// left unchanged.
pub fn from_bytes<T: Float>(bytes: &[u8], params: &mut ParamStore<T>) -> Result<()> {
    let dtype = dtype_of::<T>()?;
    let file = SafeTensors::deserialize(bytes).map_err(st_err)?;
    let mut missing: Vec<&str> = params
        .names()
        .into_iter()
        .filter(|n| file.tensor(n).is_err())
        .collect();
    let mut unexpected: Vec<String> = file
        .names()
        .into_iter()
        .filter(|n| params.get(n).is_none())
        .map(|n| n.to_string())
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        missing.sort_unstable();
        unexpected.sort_unstable();
        return Err(io(format!(
            "checkpoint does not match the model: missing {missing:?}, unexpected {unexpected:?}"
        )));
    }
    let mut values = Vec::with_capacity(params.len());
    for (i, p) in params.iter().enumerate() {
        let view = file.tensor(p.name()).map_err(st_err)?;
        if view.dtype() != dtype {
            return Err(io(format!(
                "checkpoint holds `{}` as {:?}, the model as {:?}",
                p.name(),
                view.dtype(),
                dtype
            )));
        }
        if view.shape() != p.value().dims() {
            return Err(lossgraph_tensor::Error::shape(
                "checkpoint::load",
                &[p.value().dims(), view.shape()],
                format!(
                    "parameter `{}` has another shape in the checkpoint",
                    p.name()
                ),
            )
            .into());
        }
        values.push((i, from_le_bytes::<T>(view.data(), view.shape())?));
    }
    params.replace_all(values);
    Ok(())
}

/// Save the store to a safetensors file at `path` (written to a temporary
/// file beside it, then renamed over it, so a crash never leaves half a file).
///
/// # Errors
/// `Io` when the file cannot be written.
pub fn save<T: Float>(path: impl AsRef<Path>, params: &ParamStore<T>) -> Result<()> {
    let encoded = encode(params)?;
    let views = views(&encoded, dtype_of::<T>()?)?;
    safetensors::serialize_to_file(views, None, path.as_ref()).map_err(|e| {
        io(format!(
            "cannot write checkpoint {}: {e}",
            path.as_ref().display()
        ))
    })
}

/// Load a safetensors file into `params`; as [`from_bytes`], all or nothing.
///
/// # Errors
/// `Io` when the file cannot be read; otherwise as [`from_bytes`].
pub fn load<T: Float>(path: impl AsRef<Path>, params: &mut ParamStore<T>) -> Result<()> {
    let path = path.as_ref();
    let bytes = std::fs::read(path)
        .map_err(|e| io(format!("cannot read checkpoint {}: {e}", path.display())))?;
    from_bytes(&bytes, params)
}

fn io(msg: String) -> Error {
    Error::Io(msg)
}

fn st_err(e: safetensors::SafeTensorError) -> Error {
    io(format!("safetensors: {e}"))
}
