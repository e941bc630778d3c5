//! Layers: [`Linear`], the activations, [`Sequential`] and the [`Mlp`] builder.
//!
//! A layer holds [`ParamId`]s, not tensors: its parameters live in a
//! [`ParamStore`], and [`Module::forward`] reads this step's leaves from a
//! [`Bound`].

use crate::init::Init;
use crate::params::{Bound, ParamId, ParamStore};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::{Float, Tensor};
use rand::SeedableRng;

/// Anything with a forward pass over bound parameters.
pub trait Module<T: Float> {
    /// Apply the layer to `x` with this step's parameters.
    ///
    /// # Errors
    /// `ShapeMismatch` for an input of the wrong shape; `StoreMismatch` when
    /// `params` is bound from another store.
    fn forward(&self, params: &Bound<T>, x: &Var<T>) -> Result<Var<T>>;
}

/// An elementwise activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// `x`.
    Identity,
    /// `max(x, 0)`.
    #[default]
    Relu,
    /// GELU, tanh approximation (see [`gelu`]).
    Gelu,
    /// `tanh x`.
    Tanh,
    /// `1/(1 + e^−x)`.
    Sigmoid,
}

impl Activation {
    /// Apply the activation.
    ///
    /// # Errors
    /// Only those of the underlying ops (none for finite inputs).
    pub fn apply<T: Float>(&self, x: &Var<T>) -> Result<Var<T>> {
        match self {
            Activation::Identity => Ok(x.clone()),
            Activation::Relu => relu(x),
            Activation::Gelu => gelu(x),
            Activation::Tanh => tanh(x),
            Activation::Sigmoid => sigmoid(x),
        }
    }
}

impl<T: Float> Module<T> for Activation {
    fn forward(&self, _params: &Bound<T>, x: &Var<T>) -> Result<Var<T>> {
        self.apply(x)
    }
}

/// `max(x, 0)`; gradient `[x > 0]`.
///
/// # Errors
/// None in practice; `Result` for uniformity with the other ops.
pub fn relu<T: Float>(x: &Var<T>) -> Result<Var<T>> {
    x.relu()
}

/// `tanh x`; gradient `1 − tanh² x`.
///
/// # Errors
/// As [`relu`].
pub fn tanh<T: Float>(x: &Var<T>) -> Result<Var<T>> {
    x.tanh()
}

/// `σ(x) = 1/(1 + e^−x)`; gradient `σ(1 − σ)`.
///
/// # Errors
/// As [`relu`].
pub fn sigmoid<T: Float>(x: &Var<T>) -> Result<Var<T>> {
    x.sigmoid()
}

/// GELU with the tanh approximation (PyTorch's `gelu(approximate="tanh")`):
///
/// `gelu(x) ≈ ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`
///
/// composed from primitive ops, so its gradient is the exact gradient of this
/// approximation. It differs from the exact `x·Φ(x)` by less than about 5e-4.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let x = tape.leaf(Tensor::from_vec(vec![-1.0, 0.0, 1.0], [3])?);
/// let y = lossgraph_nn::gelu(&x)?.value().to_vec();
/// assert!((y[2] - 0.841192).abs() < 1e-6 && y[1] == 0.0);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// As [`relu`].
pub fn gelu<T: Float>(x: &Var<T>) -> Result<Var<T>> {
    let k = T::of((2.0 / std::f64::consts::PI).sqrt());
    let inner = x.powi(3)?.mul_scalar(T::of(0.044715))?.add(x)?;
    let t = inner.mul_scalar(k)?.tanh()?.add_scalar(T::one())?;
    x.mul(&t)?.mul_scalar(T::of(0.5))
}

/// A fully connected layer `y = x·Wᵀ + b`, with `W` stored `[out, in]` and
/// `b` `[out]` (PyTorch's layout and parameter names `weight`, `bias`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linear {
    weight: ParamId,
    bias: ParamId,
    in_features: usize,
    out_features: usize,
}

impl Linear {
    /// Register `{name}.weight` (drawn from `init`, seeded) and `{name}.bias`
    /// (zeros) in `params`.
    ///
    /// ```
    /// use lossgraph_nn::{Init, Linear, ParamStore};
    /// let mut params = ParamStore::<f32>::new();
    /// let fc = Linear::new(&mut params, "fc", 3, 2, Init::xavier_uniform(), 7)?;
    /// assert_eq!(params.names(), vec!["fc.weight", "fc.bias"]);
    /// assert_eq!(params.value(fc.weight())?.dims(), &[2, 3]);
    /// # Ok::<(), lossgraph_autodiff::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidOption` for a taken name or a bad `init`.
    pub fn new<T: Float>(
        params: &mut ParamStore<T>,
        name: &str,
        in_features: usize,
        out_features: usize,
        init: Init,
        seed: u64,
    ) -> Result<Linear> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Self::new_with_rng(params, name, in_features, out_features, init, &mut rng)
    }

    /// As [`Linear::new`], drawing the weight from the caller's generator.
    ///
    /// # Errors
    /// As [`Linear::new`].
    pub fn new_with_rng<T: Float, R: rand::Rng + ?Sized>(
        params: &mut ParamStore<T>,
        name: &str,
        in_features: usize,
        out_features: usize,
        init: Init,
        rng: &mut R,
    ) -> Result<Linear> {
        let w = init.tensor::<T, R>(&[out_features, in_features], rng)?;
        // check both names before registering either
        let (wn, bn) = (format!("{name}.weight"), format!("{name}.bias"));
        if params.id(&wn).is_some() || params.id(&bn).is_some() {
            return Err(crate::params::option_err(
                "Linear::new",
                format!("parameters named `{name}.*` already exist"),
            ));
        }
        let weight = params.add(wn, w)?;
        let bias = params.add(bn, Tensor::zeros([out_features])?)?;
        Ok(Linear {
            weight,
            bias,
            in_features,
            out_features,
        })
    }

    /// The weight's id (`[out, in]`).
    pub fn weight(&self) -> ParamId {
        self.weight
    }
    /// The bias's id (`[out]`).
    pub fn bias(&self) -> ParamId {
        self.bias
    }
    /// Input width.
    pub fn in_features(&self) -> usize {
        self.in_features
    }
    /// Output width.
    pub fn out_features(&self) -> usize {
        self.out_features
    }
}

impl<T: Float> Module<T> for Linear {
    /// `x [N, in] → [N, out]` (or batched `[B, N, in]`).
    fn forward(&self, params: &Bound<T>, x: &Var<T>) -> Result<Var<T>> {
        let (w, b) = (params.var(self.weight)?, params.var(self.bias)?);
        x.matmul_nt(w)?.add(b)
    }
}

/// Layers applied in order.
pub struct Sequential<T: Float> {
    layers: Vec<Box<dyn Module<T>>>,
}

impl<T: Float> Default for Sequential<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> std::fmt::Debug for Sequential<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sequential({} layers)", self.layers.len())
    }
}

impl<T: Float> Sequential<T> {
    /// No layers (the identity).
    pub fn new() -> Self {
        Sequential { layers: Vec::new() }
    }
    /// Append a layer.
    pub fn push(mut self, layer: impl Module<T> + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }
    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }
    /// Whether there is no layer.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl<T: Float> Module<T> for Sequential<T> {
    fn forward(&self, params: &Bound<T>, x: &Var<T>) -> Result<Var<T>> {
        let mut h = x.clone();
        for layer in &self.layers {
            h = layer.forward(params, &h)?;
        }
        Ok(h)
    }
}

/// A multi-layer perceptron: `Linear` layers of the given widths with an
/// activation between them (none after the last).
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_nn::{Activation, Init, Mlp, Module, ParamStore};
/// use lossgraph_tensor::Tensor;
/// let mut params = ParamStore::<f32>::new();
/// let act = Activation::Relu;
/// let mlp = Mlp::new(&mut params, "mlp", &[4, 8, 3], act, Init::kaiming_uniform(act), 0)?;
/// assert_eq!(params.names(), vec!["mlp.0.weight", "mlp.0.bias", "mlp.1.weight", "mlp.1.bias"]);
/// let tape = Tape::new();
/// let bound = params.bind(&tape);
/// let y = mlp.forward(&bound, &tape.constant(Tensor::zeros([5, 4])?))?;
/// assert_eq!(y.dims(), vec![5, 3]);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    layers: Vec<Linear>,
    activation: Activation,
}

impl Mlp {
    /// Register layers `{name}.{i}.weight`/`.bias` for consecutive pairs of
    /// `sizes`, weights drawn from `init` by one generator seeded with `seed`.
    ///
    /// # Errors
    /// `InvalidOption` for fewer than two sizes, a taken name or a bad `init`.
    /// Nothing is registered on error.
    pub fn new<T: Float>(
        params: &mut ParamStore<T>,
        name: &str,
        sizes: &[usize],
        activation: Activation,
        init: Init,
        seed: u64,
    ) -> Result<Mlp> {
        if sizes.len() < 2 {
            return Err(lossgraph_tensor::Error::option(
                "Mlp::new",
                "sizes",
                format!("need an input and an output width, got {sizes:?}"),
            )
            .into());
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        // build in a scratch copy so that an error leaves `params` unchanged
        let mut scratch = params.clone();
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                Linear::new_with_rng(
                    &mut scratch,
                    &format!("{name}.{i}"),
                    w[0],
                    w[1],
                    init,
                    &mut rng,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        *params = scratch;
        Ok(Mlp { layers, activation })
    }

    /// The linear layers in order.
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }
    /// The activation between layers.
    pub fn activation(&self) -> Activation {
        self.activation
    }
}

impl<T: Float> Module<T> for Mlp {
    fn forward(&self, params: &Bound<T>, x: &Var<T>) -> Result<Var<T>> {
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(params, &h)?;
            if i + 1 < self.layers.len() {
                h = self.activation.apply(&h)?;
            }
        }
        Ok(h)
    }
}
