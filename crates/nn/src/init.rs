//! Seeded weight initialisation: Xavier/Glorot and Kaiming/He, uniform and
//! normal, with PyTorch's fan and gain conventions (`torch.nn.init`).
//!
//! For a weight of dims `[out, in, k…]`, `fan_in = in·Πk` and
//! `fan_out = out·Πk` (the receptive field `Πk` is 1 for a `Linear`).
//!
//! | scheme           | distribution                                  |
//! |------------------|-----------------------------------------------|
//! | Xavier uniform   | `U(−b, b)`, `b = gain·√(6/(fan_in+fan_out))`  |
//! | Xavier normal    | `N(0, σ²)`, `σ = gain·√(2/(fan_in+fan_out))`  |
//! | Kaiming uniform  | `U(−b, b)`, `b = gain·√(3/fan)`               |
//! | Kaiming normal   | `N(0, σ²)`, `σ = gain/√fan`                   |

use crate::layers::Activation;
use lossgraph_autodiff::Result;
use lossgraph_tensor::{Float, Tensor};
use rand::SeedableRng;

/// Which fan Kaiming initialisation keeps the variance of: `FanIn` for the
/// forward pass (PyTorch's default), `FanOut` for the backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FanMode {
    /// Preserve the variance of activations in the forward pass.
    #[default]
    FanIn,
    /// Preserve the variance of gradients in the backward pass.
    FanOut,
}

/// An initialisation scheme for a parameter tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Xavier/Glorot uniform.
    XavierUniform {
        /// Scale factor, see [`gain`].
        gain: f64,
    },
    /// Xavier/Glorot normal.
    XavierNormal {
        /// Scale factor, see [`gain`].
        gain: f64,
    },
    /// Kaiming/He uniform.
    KaimingUniform {
        /// Scale factor, see [`gain`].
        gain: f64,
        /// Which fan to normalise by.
        mode: FanMode,
    },
    /// Kaiming/He normal.
    KaimingNormal {
        /// Scale factor, see [`gain`].
        gain: f64,
        /// Which fan to normalise by.
        mode: FanMode,
    },
    /// `U(low, high)`.
    Uniform {
        /// Inclusive lower bound.
        low: f64,
        /// Exclusive upper bound.
        high: f64,
    },
    /// `N(mean, std²)`.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation (≥ 0).
        std: f64,
    },
    /// Every element the given constant.
    Constant(f64),
}

impl Init {
    /// Xavier uniform, gain 1 (for tanh layers use [`gain`]`(Activation::Tanh)`).
    pub fn xavier_uniform() -> Self {
        Init::XavierUniform { gain: 1.0 }
    }
    /// Xavier normal, gain 1.
    pub fn xavier_normal() -> Self {
        Init::XavierNormal { gain: 1.0 }
    }
    /// Kaiming uniform for layers followed by `act` (fan-in mode).
    pub fn kaiming_uniform(act: Activation) -> Self {
        Init::KaimingUniform {
            gain: gain(act),
            mode: FanMode::FanIn,
        }
    }
    /// Kaiming normal for layers followed by `act` (fan-in mode).
    pub fn kaiming_normal(act: Activation) -> Self {
        Init::KaimingNormal {
            gain: gain(act),
            mode: FanMode::FanIn,
        }
    }

    /// A tensor of `dims` drawn from `rng`.
    ///
    /// ```
    /// use lossgraph_nn::Init;
    /// use rand::SeedableRng;
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    /// let w = Init::xavier_uniform().tensor::<f32, _>(&[4, 6], &mut rng)?;
    /// let bound = (6.0f32 / 10.0).sqrt();
    /// assert!(w.as_slice().iter().all(|v| v.abs() <= bound));
    /// # Ok::<(), lossgraph_autodiff::Error>(())
    /// ```
    ///
    /// A tensor with no elements is returned as is, whatever the scheme.
    ///
    /// # Errors
    /// `InvalidOption` for Xavier/Kaiming on fewer than 2 dims, and for a non-finite or negative gain, std or bound.
    pub fn tensor<T: Float, R: rand::Rng + ?Sized>(
        &self,
        dims: &[usize],
        rng: &mut R,
    ) -> Result<Tensor<T>> {
        let finite = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(init_err(format!("{name} must be finite and >= 0, got {v}")))
            }
        };
        if dims.iter().product::<usize>() == 0 {
            return Ok(Tensor::zeros(dims)?); // nothing to draw
        }
        let uniform = |b: f64, rng: &mut R| -> Result<Tensor<T>> {
            if b == 0.0 {
                return Ok(Tensor::zeros(dims)?);
            }
            Ok(Tensor::rand_uniform_with(dims, -b, b, rng)?)
        };
        match *self {
            Init::XavierUniform { gain } => {
                let (fi, fo) = fans(dims)?;
                uniform(finite("gain", gain)? * (6.0 / (fi + fo) as f64).sqrt(), rng)
            }
            Init::XavierNormal { gain } => {
                let (fi, fo) = fans(dims)?;
                let std = finite("gain", gain)? * (2.0 / (fi + fo) as f64).sqrt();
                Ok(Tensor::randn_with(dims, 0.0, std, rng)?)
            }
            Init::KaimingUniform { gain, mode } => {
                let fan = fan(dims, mode)? as f64;
                uniform(finite("gain", gain)? * (3.0 / fan).sqrt(), rng)
            }
            Init::KaimingNormal { gain, mode } => {
                let fan = fan(dims, mode)? as f64;
                let std = finite("gain", gain)? / fan.sqrt();
                Ok(Tensor::randn_with(dims, 0.0, std, rng)?)
            }
            Init::Uniform { low, high } => Ok(Tensor::rand_uniform_with(dims, low, high, rng)?),
            Init::Normal { mean, std } => Ok(Tensor::randn_with(dims, mean, std, rng)?),
            Init::Constant(c) => Ok(Tensor::full(dims, T::of(c))?),
        }
    }

    /// A tensor of `dims` from a generator seeded with `seed`.
    ///
    /// # Errors
    /// As [`Init::tensor`].
    pub fn tensor_seeded<T: Float>(&self, dims: &[usize], seed: u64) -> Result<Tensor<T>> {
        self.tensor(dims, &mut rand::rngs::StdRng::seed_from_u64(seed))
    }
}

/// PyTorch's `calculate_gain`: 1 for identity and sigmoid, √2 for ReLU, 5/3
/// for tanh. PyTorch defines none for GELU; it gets ReLU's √2 here, as GELU
/// is ReLU-like for |x| ≫ 0.
pub fn gain(act: Activation) -> f64 {
    match act {
        Activation::Identity | Activation::Sigmoid => 1.0,
        Activation::Relu | Activation::Gelu => std::f64::consts::SQRT_2,
        Activation::Tanh => 5.0 / 3.0,
    }
}

/// `(fan_in, fan_out)` of a weight of `dims` `[out, in, k…]`.
///
/// # Errors
/// `InvalidOption` for fewer than 2 dims (as PyTorch).
pub fn fans(dims: &[usize]) -> Result<(usize, usize)> {
    if dims.len() < 2 {
        return Err(init_err(format!(
            "fan in and fan out need at least 2 dims, got {dims:?}"
        )));
    }
    let field: usize = dims[2..].iter().product();
    Ok((dims[1] * field, dims[0] * field))
}

fn fan(dims: &[usize], mode: FanMode) -> Result<usize> {
    let (fi, fo) = fans(dims)?;
    let f = match mode {
        FanMode::FanIn => fi,
        FanMode::FanOut => fo,
    };
    if f == 0 {
        return Err(init_err(format!("zero fan for dims {dims:?}")));
    }
    Ok(f)
}

fn init_err(reason: String) -> lossgraph_autodiff::Error {
    lossgraph_tensor::Error::option("init", "init", reason).into()
}
