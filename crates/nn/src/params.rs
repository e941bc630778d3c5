//! Named parameters that persist across steps.
//!
//! A [`ParamStore`] owns the parameter tensors of a model in the order the
//! layers registered them. Each step, [`ParamStore::bind`] makes every
//! parameter a leaf of that step's tape (sharing its storage: no copy); after
//! `backward`, [`Bound::grads`] collects one gradient per parameter into a
//! [`ParamGrads`], which an [`Optimizer`](crate::Optimizer) applies to the
//! store in place.
//!
//! The optimizer updates a parameter without a copy when nothing else shares
//! its storage, so drop the step's tape (and its vars and gradients) before
//! stepping. [`ParamStore::value_and_grad`] does the whole step and drops the
//! tape for you.

use lossgraph_autodiff::{Error, Gradients, Result, Tape, Var};
use lossgraph_tensor::{Float, Tensor};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh tag for each store, so a [`ParamId`] from one store is never
/// silently used with another.
fn next_store_tag() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One named parameter.
#[derive(Debug, Clone)]
pub struct Param<T: Float> {
    name: String,
    value: Tensor<T>,
}

impl<T: Float> Param<T> {
    /// The parameter's name (unique within its store).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The current value.
    pub fn value(&self) -> &Tensor<T> {
        &self.value
    }
}

/// A handle to one parameter of one [`ParamStore`]; layers keep these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParamId {
    store: u64,
    index: usize,
}

impl ParamId {
    /// The parameter's position in its store (registration order).
    pub fn index(&self) -> usize {
        self.index
    }
}

/// The parameters of a model: named tensors in registration order.
///
/// Each store has its own identity: a [`ParamId`] (and so a layer) built on
/// one store is an error with another. A `clone` keeps the identity — it is
/// a snapshot the same layers and optimizer work with (restore it with
/// `params = snapshot.clone()`); cloning copies no data.
///
/// ```
/// use lossgraph_nn::ParamStore;
/// use lossgraph_tensor::Tensor;
/// let mut params = ParamStore::<f32>::new();
/// let w = params.add("w", Tensor::zeros([2, 3])?)?;
/// assert_eq!(params.value(w)?.dims(), &[2, 3]);
/// assert_eq!(params.names(), vec!["w"]);
/// assert!(params.add("w", Tensor::zeros([1])?).is_err()); // names are unique
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ParamStore<T: Float> {
    tag: u64,
    params: Vec<Param<T>>,
    by_name: HashMap<String, usize>,
}

impl<T: Float> Default for ParamStore<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> ParamStore<T> {
    /// An empty store.
    pub fn new() -> Self {
        ParamStore {
            tag: next_store_tag(),
            params: Vec::new(),
            by_name: HashMap::new(),
        }
    }

    /// Register a parameter under a unique `name`.
    ///
    /// # Errors
    /// `InvalidOption` when the name is taken, empty, or `__metadata__` (a
    /// name the checkpoint format reserves).
    pub fn add(&mut self, name: impl Into<String>, value: Tensor<T>) -> Result<ParamId> {
        let name = name.into();
        if name.is_empty() || name == "__metadata__" {
            return Err(option_err(
                "ParamStore::add",
                format!("`{name}` is not a usable name"),
            ));
        }
        if self.by_name.contains_key(&name) {
            return Err(option_err(
                "ParamStore::add",
                format!("a parameter named `{name}` already exists"),
            ));
        }
        let index = self.params.len();
        self.by_name.insert(name.clone(), index);
        self.params.push(Param { name, value });
        Ok(ParamId {
            store: self.tag,
            index,
        })
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }
    /// Whether the store holds no parameter.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
    /// Total number of scalar elements over all parameters.
    pub fn num_elements(&self) -> usize {
        self.params.iter().map(|p| p.value.numel()).sum()
    }
    /// The names in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.params.iter().map(|p| p.name.as_str()).collect()
    }
    /// The parameters in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Param<T>> {
        self.params.iter()
    }
    /// The id of the parameter called `name`.
    pub fn id(&self, name: &str) -> Option<ParamId> {
        self.by_name.get(name).map(|&index| ParamId {
            store: self.tag,
            index,
        })
    }
    /// The value of the parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor<T>> {
        self.by_name.get(name).map(|&i| &self.params[i].value)
    }

    /// The value of parameter `id`.
    ///
    /// # Errors
    /// `StoreMismatch` when `id` belongs to another store.
    pub fn value(&self, id: ParamId) -> Result<&Tensor<T>> {
        let i = self.check_id("ParamStore::value", id)?;
        Ok(&self.params[i].value)
    }

    /// Replace the value of the parameter called `name` by one of the same shape.
    ///
    /// # Errors
    /// `InvalidOption` for an unknown name; `ShapeMismatch` for another shape.
    pub fn set(&mut self, name: &str, value: Tensor<T>) -> Result<()> {
        let i = *self
            .by_name
            .get(name)
            .ok_or_else(|| option_err("ParamStore::set", format!("no parameter named `{name}`")))?;
        let old = &mut self.params[i].value;
        if old.shape() != value.shape() {
            return Err(lossgraph_tensor::Error::shape(
                "ParamStore::set",
                &[old.dims(), value.dims()],
                format!("parameter `{name}` keeps its shape"),
            )
            .into());
        }
        *old = value;
        Ok(())
    }

    /// Make every parameter a leaf of `tape` for one step. The leaves share
    /// the parameters' storage (no copy).
    ///
    /// ```
    /// use lossgraph_autodiff::Tape;
    /// use lossgraph_nn::ParamStore;
    /// use lossgraph_tensor::Tensor;
    /// let mut params = ParamStore::<f64>::new();
    /// let w = params.add("w", Tensor::from_vec(vec![1.0, 2.0], [2])?)?;
    /// let tape = Tape::new();
    /// let bound = params.bind(&tape);
    /// let loss = bound.var(w)?.square()?.sum_all()?;
    /// let grads = bound.grads(loss.backward()?);
    /// assert_eq!(grads.get(w).unwrap().to_vec(), vec![2.0, 4.0]);
    /// # Ok::<(), lossgraph_autodiff::Error>(())
    /// ```
    pub fn bind(&self, tape: &Tape<T>) -> Bound<T> {
        Bound {
            store: self.tag,
            tape: tape.clone(),
            vars: self
                .params
                .iter()
                .map(|p| tape.leaf(p.value.clone()))
                .collect(),
        }
    }

    /// One whole step: a fresh tape, [`bind`](Self::bind), `f` builds the
    /// (one-element) loss, backward, and the gradients collected. The tape is
    /// dropped before this returns, so an optimizer can then update the
    /// parameters without copying them.
    ///
    /// # Errors
    /// Whatever `f` returns; [`Error::TapeMismatch`] when the loss is not on
    /// the bound tape; [`Error::NotScalar`] when it has more than one
    /// element; errors of the backward pass.
    pub fn value_and_grad(
        &self,
        f: impl FnOnce(&Bound<T>) -> Result<Var<T>>,
    ) -> Result<(T, ParamGrads<T>)> {
        let tape = Tape::new();
        let bound = self.bind(&tape);
        let loss = f(&bound)?;
        if !loss.tape().same(&tape) {
            // its gradients would all be None: fail rather than train on nothing
            return Err(Error::TapeMismatch {
                op: "ParamStore::value_and_grad".into(),
            });
        }
        let grads = bound.grads(loss.backward()?);
        let value = loss.item()?;
        Ok((value, grads))
    }

    pub(crate) fn tag(&self) -> u64 {
        self.tag
    }
    pub(crate) fn param_mut(&mut self, index: usize) -> &mut Tensor<T> {
        &mut self.params[index].value
    }
    /// Replace values by index after a caller validated them (checkpoints).
    pub(crate) fn replace_all(&mut self, values: Vec<(usize, Tensor<T>)>) {
        for (i, v) in values {
            self.params[i].value = v;
        }
    }

    fn check_id(&self, op: &str, id: ParamId) -> Result<usize> {
        if id.store != self.tag || id.index >= self.params.len() {
            return Err(store_err(op, "the parameter id belongs to another store"));
        }
        Ok(id.index)
    }
}

/// The parameters of a [`ParamStore`] bound to one step's tape.
pub struct Bound<T: Float> {
    store: u64,
    tape: Tape<T>,
    vars: Vec<Var<T>>,
}

impl<T: Float> std::fmt::Debug for Bound<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bound({} params)", self.vars.len())
    }
}

impl<T: Float> Bound<T> {
    /// The tape the parameters are bound to (for inputs: `tape().constant(x)`).
    pub fn tape(&self) -> &Tape<T> {
        &self.tape
    }
    /// The leaf of parameter `id` on this step's tape.
    ///
    /// # Errors
    /// `StoreMismatch` when `id` belongs to another store; `InvalidOption`
    /// when it was added after this binding.
    pub fn var(&self, id: ParamId) -> Result<&Var<T>> {
        if id.store != self.store {
            return Err(store_err(
                "Bound::var",
                "the parameter id belongs to another store",
            ));
        }
        self.vars
            .get(id.index)
            .ok_or_else(|| option_err("Bound::var", "the parameter was added after bind()".into()))
    }
    /// The leaves, in the store's order.
    pub fn vars(&self) -> &[Var<T>] {
        &self.vars
    }
    /// One gradient per parameter out of a backward pass's store; `None` for
    /// a parameter the loss does not depend on (optimizers skip those, as
    /// PyTorch skips a parameter whose `.grad` is `None`).
    pub fn grads(&self, mut grads: Gradients<T>) -> ParamGrads<T> {
        ParamGrads {
            store: self.store,
            grads: self.vars.iter().map(|v| grads.take(v)).collect(),
        }
    }
}

/// One optional gradient per parameter of a [`ParamStore`], in its order.
/// Holds no tape: keeping it alive costs only the gradient tensors.
#[derive(Debug, Clone)]
pub struct ParamGrads<T: Float> {
    store: u64,
    grads: Vec<Option<Tensor<T>>>,
}

impl<T: Float> ParamGrads<T> {
    /// Gradients computed some other way (accumulated over micro-batches,
    /// averaged across workers…), one slot per parameter of `params` in its
    /// order; `None` skips a parameter.
    ///
    /// # Errors
    /// `InvalidOption` for a slot count other than `params.len()`;
    /// `ShapeMismatch` for a gradient whose shape is not its parameter's.
    pub fn new(params: &ParamStore<T>, grads: Vec<Option<Tensor<T>>>) -> Result<Self> {
        let g = ParamGrads {
            store: params.tag(),
            grads,
        };
        g.check_fits("ParamGrads::new", params)?;
        Ok(g)
    }

    /// The gradient of parameter `id` (None if absent or from another store).
    pub fn get(&self, id: ParamId) -> Option<&Tensor<T>> {
        if id.store != self.store {
            return None;
        }
        self.grads.get(id.index).and_then(|g| g.as_ref())
    }
    /// Number of slots (one per parameter bound).
    pub fn len(&self) -> usize {
        self.grads.len()
    }
    /// Whether there is no slot.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }
    /// The slots in parameter order.
    pub fn iter(&self) -> impl Iterator<Item = Option<&Tensor<T>>> {
        self.grads.iter().map(|g| g.as_ref())
    }
    /// The Euclidean norm of all gradients together (accumulated in f64).
    pub fn global_norm(&self) -> f64 {
        self.grads
            .iter()
            .flatten()
            .flat_map(|g| g.as_slice())
            .map(|&v| v.as_f64() * v.as_f64())
            .sum::<f64>()
            .sqrt()
    }
    /// Add `other`'s gradients to these, slot by slot (`None` counts as
    /// zero): how gradients of micro-batches, shards or terms are summed.
    ///
    /// # Errors
    /// `StoreMismatch` when `other` was taken for another store;
    /// `InvalidOption` for another slot count; `ShapeMismatch` for a slot of
    /// another shape. Nothing is added on error.
    pub fn add(&mut self, other: &ParamGrads<T>) -> Result<()> {
        const OP: &str = "ParamGrads::add";
        if other.store != self.store {
            return Err(store_err(
                OP,
                "the gradients were taken for another parameter store",
            ));
        }
        if other.grads.len() != self.grads.len() {
            return Err(option_err(
                OP,
                format!(
                    "{} gradient slots added to {}",
                    other.grads.len(),
                    self.grads.len()
                ),
            ));
        }
        for (a, b) in self.grads.iter().zip(&other.grads) {
            if let (Some(a), Some(b)) = (a, b) {
                if a.shape() != b.shape() {
                    return Err(lossgraph_tensor::Error::shape(
                        OP,
                        &[a.dims(), b.dims()],
                        "a gradient slot has another shape",
                    )
                    .into());
                }
            }
        }
        for (a, b) in self.grads.iter_mut().zip(&other.grads) {
            match (a, b) {
                (Some(a), Some(b)) => a.add_assign(b)?, // shapes checked above
                (a @ None, Some(b)) => *a = Some(b.clone()),
                (_, None) => {}
            }
        }
        Ok(())
    }
    /// The Euclidean norm of the gradients of `ids` only (accumulated in
    /// f64; an absent gradient counts as zero): the gradient pressure on a
    /// chosen part of the model.
    ///
    /// # Errors
    /// `StoreMismatch` when an id belongs to another store.
    pub fn norm_of(&self, ids: &[ParamId]) -> Result<f64> {
        Ok(self.dot_of(self, ids)?.sqrt())
    }
    /// `Σ ⟨self_p, other_p⟩` over the parameters `ids` (in f64; an absent
    /// gradient counts as zero): with [`Self::norm_of`], the cosine between
    /// two gradients on a chosen part of the model.
    ///
    /// # Errors
    /// `StoreMismatch` when `other` or an id belongs to another store.
    pub fn dot_of(&self, other: &ParamGrads<T>, ids: &[ParamId]) -> Result<f64> {
        const OP: &str = "ParamGrads::dot_of";
        if other.store != self.store || ids.iter().any(|id| id.store != self.store) {
            return Err(store_err(
                OP,
                "the gradients or ids belong to another store",
            ));
        }
        let mut s = 0.0;
        for id in ids {
            if let (Some(a), Some(b)) = (self.slot(id.index), other.slot(id.index)) {
                s += a
                    .as_slice()
                    .iter()
                    .zip(b.as_slice())
                    .map(|(&x, &y)| x.as_f64() * y.as_f64())
                    .sum::<f64>();
            }
        }
        Ok(s)
    }
    /// Multiply every gradient by `s` in place.
    pub fn scale(&mut self, s: T) {
        for g in self.grads.iter_mut().flatten() {
            for v in g.make_mut() {
                *v *= s;
            }
        }
    }

    /// Check these gradients fit `params` (same store, one per parameter, same
    /// shapes) before any optimizer touches a parameter.
    pub(crate) fn check_fits(&self, op: &str, params: &ParamStore<T>) -> Result<()> {
        if self.store != params.tag() {
            return Err(store_err(
                op,
                "the gradients were taken for another parameter store",
            ));
        }
        if self.grads.len() != params.len() {
            return Err(option_err(
                op,
                format!(
                    "{} gradient slots for {} parameters",
                    self.grads.len(),
                    params.len()
                ),
            ));
        }
        for (g, p) in self.grads.iter().zip(params.iter()) {
            if let Some(g) = g {
                if g.shape() != p.value.shape() {
                    return Err(lossgraph_tensor::Error::shape(
                        op,
                        &[p.value.dims(), g.dims()],
                        format!("gradient of `{}` has another shape", p.name),
                    )
                    .into());
                }
            }
        }
        Ok(())
    }
    pub(crate) fn slot(&self, index: usize) -> Option<&Tensor<T>> {
        self.grads.get(index).and_then(|g| g.as_ref())
    }
}

/// The `StoreMismatch` error of `op`, with `reason` saying what belongs to
/// which store.
pub(crate) fn store_err(op: &str, reason: &str) -> Error {
    Error::StoreMismatch {
        op: op.to_string(),
        reason: reason.to_string(),
    }
}

/// An `InvalidOption` error about a parameter, as the autodiff error type.
pub(crate) fn option_err(op: &str, reason: String) -> Error {
    lossgraph_tensor::Error::option(op, "param", reason).into()
}
