//! The tape: an append-only arena of nodes in creation order, so that walking
//! it backwards is a topological order. [`Var`] is a cheap handle into it.

use crate::check::{self, Notes, Warning};
use crate::error::{Error, Phase, Result, TensorSummary};
use lossgraph_tensor::{Float, Shape, Tensor};
use smallvec::SmallVec;
use std::cell::RefCell;
use std::rc::Rc;

/// Gradients a backward rule returns, one per input (None for "not needed").
pub type Grads<T> = SmallVec<[Option<Tensor<T>>; 2]>;

/// A backward rule: given the output's gradient and which inputs need one,
/// return one optional gradient per input.
pub(crate) type BackwardFn<T> = Box<dyn Fn(&Tensor<T>, &[bool]) -> Result<Grads<T>>>;

struct Node<T: Float> {
    op: Rc<str>,
    value: Tensor<T>,
    parents: SmallVec<[usize; 2]>,
    backward: Option<BackwardFn<T>>,
    requires_grad: bool,
    /// Set for an op that records no backward rule although an input needs a
    /// gradient: backward then fails instead of dropping the gradient.
    no_backward: bool,
}

struct TapeInner<T: Float> {
    nodes: Vec<Node<T>>,
    grad_enabled: bool,
    anomaly: bool,
    /// Check mode (see [`crate::check`]) and what it has found and noted.
    check: bool,
    notes: Notes,
}

/// A reverse-mode tape. Cloning it clones the handle, not the nodes.
///
/// Make one per training step (or per graph) and drop it after `backward`:
/// its nodes hold the step's intermediate values, and dropping the tape (with
/// its vars) frees them. Parameters become leaves without a data copy.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0], [3])?);
/// let y = x.mul(&x)?.sum_all()?; // Σ x²
/// let grads = y.backward()?;
/// assert_eq!(grads.get(&x).unwrap().to_vec(), vec![2.0, 4.0, 6.0]);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
pub struct Tape<T: Float> {
    inner: Rc<RefCell<TapeInner<T>>>,
}

impl<T: Float> Clone for Tape<T> {
    fn clone(&self) -> Self {
        Tape {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Float> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> std::fmt::Debug for Tape<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tape({} nodes)", self.len())
    }
}

/// A value on a tape: a node id plus a handle to its tape. Cheap to clone.
pub struct Var<T: Float> {
    id: usize,
    tape: Tape<T>,
}

impl<T: Float> Clone for Var<T> {
    fn clone(&self) -> Self {
        Var {
            id: self.id,
            tape: self.tape.clone(),
        }
    }
}

impl<T: Float> std::fmt::Debug for Var<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.tape.inner.borrow();
        let n = &inner.nodes[self.id];
        write!(f, "Var#{}({}, {:?})", self.id, n.op, n.value)
    }
}

impl<T: Float> Tape<T> {
    /// An empty tape with gradients enabled, anomaly mode off, and check
    /// mode off unless `LOSSGRAPH_CHECK` asks for it
    /// ([`check::env_default`]).
    pub fn new() -> Self {
        Tape {
            inner: Rc::new(RefCell::new(TapeInner {
                nodes: Vec::new(),
                grad_enabled: true,
                anomaly: false,
                check: check::env_default(),
                notes: Notes::default(),
            })),
        }
    }

    /// Number of nodes recorded.
    pub fn len(&self) -> usize {
        self.inner.borrow().nodes.len()
    }
    /// Whether no node has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether two handles name the same tape.
    pub fn same(&self, other: &Tape<T>) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    /// A leaf that requires a gradient (a parameter or an input to
    /// differentiate). The tensor's storage is shared, not copied.
    pub fn leaf(&self, value: Tensor<T>) -> Var<T> {
        self.push_leaf(value, true, "leaf")
    }
    /// A leaf that needs no gradient (data, targets, masks).
    pub fn constant(&self, value: Tensor<T>) -> Var<T> {
        self.push_leaf(value, false, "constant")
    }

    fn push_leaf(&self, value: Tensor<T>, requires_grad: bool, op: &str) -> Var<T> {
        let mut inner = self.inner.borrow_mut();
        let requires_grad = requires_grad && inner.grad_enabled;
        inner.nodes.push(Node {
            op: Rc::from(op),
            value,
            parents: SmallVec::new(),
            backward: None,
            requires_grad,
            no_backward: false,
        });
        Var {
            id: inner.nodes.len() - 1,
            tape: self.clone(),
        }
    }

    /// Whether ops record backward rules (off inside [`Tape::no_grad`]).
    pub fn grad_enabled(&self) -> bool {
        self.inner.borrow().grad_enabled
    }
    /// Turn gradient recording on or off; returns the previous setting.
    pub fn set_grad_enabled(&self, on: bool) -> bool {
        std::mem::replace(&mut self.inner.borrow_mut().grad_enabled, on)
    }
    /// Run `f` with gradient recording off: ops compute values only, and
    /// nothing they produce requires a gradient.
    pub fn no_grad<R>(&self, f: impl FnOnce() -> R) -> R {
        let prev = self.set_grad_enabled(false);
        let r = f();
        self.set_grad_enabled(prev);
        r
    }

    /// Turn anomaly mode on or off; returns the previous setting. In anomaly
    /// mode every op's output and every gradient is checked for NaN/±∞: the
    /// first op that produces one fails with [`Error::Anomaly`]; an op that
    /// receives one from a leaf or a constant (which no op made: data with a
    /// NaN in it), or from an op recorded while anomaly mode was off, fails
    /// with [`Error::NonFiniteInput`]; and a non-finite output gradient given
    /// to [`Var::backward_with`] is refused the same way. Off, it costs one
    /// branch per op.
    pub fn set_anomaly_mode(&self, on: bool) -> bool {
        std::mem::replace(&mut self.inner.borrow_mut().anomaly, on)
    }
    /// Whether anomaly mode is on.
    pub fn anomaly_mode(&self) -> bool {
        self.inner.borrow().anomaly
    }

    /// Turn check mode on or off; returns the previous setting. In check
    /// mode the tape and the losses look for the common loss mistakes that
    /// produce no NaN (probabilities given to a logits loss, padding averaged
    /// in, a mean averaged twice, …) and record a typed [`Warning`] for each,
    /// printed to stderr once per site; values and gradients never change.
    /// Off, it costs one branch per op. See [`crate::check`] for the list.
    pub fn set_check_mode(&self, on: bool) -> bool {
        std::mem::replace(&mut self.inner.borrow_mut().check, on)
    }
    /// Whether check mode is on.
    pub fn check_mode(&self) -> bool {
        self.inner.borrow().check
    }
    /// Record a warning on this tape and print it to stderr if its site has
    /// not printed before in this process. The losses call it in check mode;
    /// it records whatever the mode, so code of your own can report through
    /// it too (a multi-term objective's [`check::dominant_term`], say).
    pub fn warn(&self, warning: Warning) {
        check::print_once(&warning);
        self.inner.borrow_mut().notes.warnings.push(warning);
    }
    /// The warnings recorded so far, oldest first.
    pub fn warnings(&self) -> Vec<Warning> {
        self.inner.borrow().notes.warnings.clone()
    }
    /// Take the warnings recorded so far out of the tape.
    pub fn take_warnings(&self) -> Vec<Warning> {
        std::mem::take(&mut self.inner.borrow_mut().notes.warnings)
    }

    /// Check mode's note on a custom op's output `out`: a one-element output
    /// is a loss term (check 9), and a mean one (`mean_of`: the dims of what
    /// it averaged) must not be averaged again (check 6).
    pub(crate) fn note_custom(&self, out: &Var<T>, op: &str, mean_of: Option<&[usize]>) {
        let mut inner = self.inner.borrow_mut();
        if !inner.check || inner.nodes[out.id].value.numel() != 1 {
            return;
        }
        inner.notes.terms.insert(out.id, op.to_string());
        if let Some(dims) = mean_of {
            inner
                .notes
                .means
                .insert(out.id, check::Mean::over(op, dims));
        }
    }

    /// Record an op's output with its parents and backward rule. Ops on
    /// [`Var`] and [`crate::CustomOp`]s go through here.
    ///
    /// When gradients are off, or no parent requires one, the rule is dropped
    /// at once (it may hold saved tensors) and the node is a constant.
    pub(crate) fn record(
        &self,
        op: &str,
        value: Tensor<T>,
        parents: &[&Var<T>],
        backward: Option<BackwardFn<T>>,
    ) -> Result<Var<T>> {
        for p in parents {
            if !p.tape.same(self) {
                return Err(Error::TapeMismatch { op: op.to_string() });
            }
        }
        let mut inner = self.inner.borrow_mut();
        if inner.anomaly {
            // an input that is not finite came from an op that anomaly mode
            // would have stopped, unless nothing checked it: a leaf or a
            // constant (user data), or an op recorded with the mode off
            let bad_input = parents
                .iter()
                .enumerate()
                .find(|(_, p)| !inner.nodes[p.id].value.all_finite());
            if let Some((k, p)) = bad_input {
                let from = &inner.nodes[p.id];
                return Err(Error::NonFiniteInput {
                    op: op.to_string(),
                    input: k,
                    from: match &*from.op {
                        "leaf" | "constant" => format!("a {}", from.op),
                        other => format!("the output of `{other}`"),
                    },
                    value: Box::new(summary(&from.value)),
                });
            }
        }
        if inner.anomaly && !value.all_finite() {
            // every input is finite (checked above): this op made it
            let inputs = parents
                .iter()
                .map(|p| summary(&inner.nodes[p.id].value))
                .collect();
            return Err(Error::Anomaly {
                op: op.to_string(),
                phase: Phase::Forward,
                output: summary(&value),
                inputs,
            });
        }
        // check mode looks at the inputs after the node is recorded, when
        // a constant's parents are no longer kept
        let parent_ids: SmallVec<[usize; 2]> = if inner.check {
            parents.iter().map(|p| p.id).collect()
        } else {
            SmallVec::new()
        };
        let requires_grad =
            inner.grad_enabled && parents.iter().any(|p| inner.nodes[p.id].requires_grad);
        let no_backward = requires_grad && backward.is_none();
        let (parents, backward) = if requires_grad {
            (parents.iter().map(|p| p.id).collect(), backward)
        } else {
            (SmallVec::new(), None)
        };
        inner.nodes.push(Node {
            op: Rc::from(op),
            value,
            parents,
            backward,
            requires_grad,
            no_backward,
        });
        let id = inner.nodes.len() - 1;
        if inner.check {
            let found = {
                let TapeInner { nodes, notes, .. } = &mut *inner;
                let inputs: SmallVec<[check::Input<'_, T>; 2]> = parent_ids
                    .iter()
                    .map(|&p| check::Input {
                        id: p,
                        op: &nodes[p].op,
                        value: &nodes[p].value,
                    })
                    .collect();
                check::primitive(notes, id, op, &inputs, &nodes[id].value)
            };
            drop(inner);
            if let Some(w) = found {
                self.warn(w);
            }
        }
        Ok(Var {
            id,
            tape: self.clone(),
        })
    }

    /// Reverse pass from `root` seeded with `seed` (same shape as root); in
    /// check mode, then check 9 on the loss terms it went through.
    fn backward_from(&self, root: usize, seed: Tensor<T>) -> Result<Gradients<T>> {
        let terms = {
            let inner = self.inner.borrow();
            let below_root = inner.notes.terms.range(..root + 1).count();
            inner.check && below_root >= 2
        };
        let mut reached = Vec::new();
        let grads = self.reverse(root, seed, terms.then_some(&mut reached))?;
        if reached.len() >= 2 {
            self.check_terms(reached)?;
        }
        // only leaves keep a gradient; intermediates were taken
        Ok(Gradients {
            tape: self.clone(),
            grads,
        })
    }

    /// Check 9: one reverse pass per loss term that `backward` reached,
    /// seeded with the gradient that reached it (its weight in the root), for
    /// the norm of each term's weighted gradient over every leaf.
    fn check_terms(&self, mut reached: Vec<(usize, Tensor<T>)>) -> Result<()> {
        reached.sort_by_key(|(id, _)| *id); // tape order: the same labels every step
        let labels = {
            let inner = self.inner.borrow();
            check::term_labels(reached.iter().map(|(id, _)| inner.notes.terms[id].as_str()))
        };
        let mut norms = Vec::with_capacity(reached.len());
        for ((id, seed), label) in reached.into_iter().zip(labels) {
            let grads = self.reverse(id, seed, None)?;
            let sq: f64 = grads
                .iter()
                .flatten()
                .flat_map(|g| g.as_slice().iter().map(|v| v.as_f64() * v.as_f64()))
                .sum();
            norms.push((label, sq.sqrt()));
        }
        if let Some(w) = check::dominant_term(&norms) {
            self.warn(w);
        }
        Ok(())
    }

    /// The reverse pass itself: the gradient of every leaf. When `reached`
    /// is given, the gradient arriving at each noted loss term is kept there.
    fn reverse(
        &self,
        root: usize,
        seed: Tensor<T>,
        mut reached: Option<&mut Vec<(usize, Tensor<T>)>>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let inner = self.inner.borrow();
        if inner.anomaly && !seed.all_finite() {
            return Err(Error::NonFiniteInput {
                op: inner.nodes[root].op.to_string(),
                input: 0,
                from: "the output gradient given to backward".to_string(),
                value: Box::new(summary(&seed)),
            });
        }
        let mut grads: Vec<Option<Tensor<T>>> = vec![None; root + 1];
        if inner.nodes[root].requires_grad {
            grads[root] = Some(seed);
        }
        for i in (0..=root).rev() {
            let node = &inner.nodes[i];
            if !node.requires_grad || node.parents.is_empty() && !node.no_backward {
                continue; // a constant, or a leaf whose gradient stays in `grads`
            }
            let Some(g) = grads[i].take() else { continue };
            if let Some(r) = reached.as_deref_mut() {
                if inner.notes.terms.contains_key(&i) {
                    r.push((i, g.clone()));
                }
            }
            let rule = match &node.backward {
                Some(rule) => rule,
                None => {
                    return Err(Error::NoBackward {
                        op: node.op.to_string(),
                    })
                }
            };
            let needs: SmallVec<[bool; 4]> = node
                .parents
                .iter()
                .map(|&p| inner.nodes[p].requires_grad)
                .collect();
            let out = rule(&g, &needs)?;
            if out.len() != node.parents.len() {
                return Err(Error::BadGradient {
                    op: node.op.to_string(),
                    reason: format!("{} gradients for {} inputs", out.len(), node.parents.len()),
                });
            }
            for (k, (&p, pg)) in node.parents.iter().zip(out).enumerate() {
                if !needs[k] {
                    continue;
                }
                let pg = pg.ok_or_else(|| Error::MissingGradient {
                    op: node.op.to_string(),
                    input: k,
                })?;
                let pshape = inner.nodes[p].value.shape();
                if pg.shape() != pshape {
                    return Err(Error::BadGradient {
                        op: node.op.to_string(),
                        reason: format!(
                            "gradient {k} has shape {:?}, its input {:?}",
                            pg.shape(),
                            pshape
                        ),
                    });
                }
                if inner.anomaly && !pg.all_finite() && g.all_finite() {
                    return Err(Error::Anomaly {
                        op: node.op.to_string(),
                        phase: Phase::Backward,
                        output: summary(&pg),
                        inputs: node
                            .parents
                            .iter()
                            .map(|&q| summary(&inner.nodes[q].value))
                            .collect(),
                    });
                }
                match &mut grads[p] {
                    Some(acc) => acc.add_assign(&pg)?,
                    slot @ None => *slot = Some(pg),
                }
            }
        }
        Ok(grads)
    }
}

fn summary<T: Float>(t: &Tensor<T>) -> TensorSummary {
    let (min, max, non_finite) = t.value_range();
    TensorSummary {
        shape: t.dims().to_vec(),
        min,
        max,
        non_finite,
    }
}

/// The gradients of one backward pass, keyed by leaf [`Var`].
pub struct Gradients<T: Float> {
    tape: Tape<T>,
    grads: Vec<Option<Tensor<T>>>,
}

impl<T: Float> std::fmt::Debug for Gradients<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.grads.iter().filter(|g| g.is_some()).count();
        write!(f, "Gradients({n} leaves)")
    }
}

impl<T: Float> Gradients<T> {
    /// The gradient of a leaf, or None when the leaf needs no gradient or the
    /// output does not depend on it.
    pub fn get(&self, var: &Var<T>) -> Option<&Tensor<T>> {
        if !var.tape.same(&self.tape) {
            return None;
        }
        self.grads.get(var.id).and_then(|g| g.as_ref())
    }
    /// The gradient of a leaf, zeros when the output does not depend on it.
    pub fn get_or_zeros(&self, var: &Var<T>) -> Tensor<T> {
        self.get(var)
            .cloned()
            .unwrap_or_else(|| var.value().zeros_like())
    }
    /// Take a leaf's gradient out of the store.
    pub fn take(&mut self, var: &Var<T>) -> Option<Tensor<T>> {
        if !var.tape.same(&self.tape) {
            return None;
        }
        self.grads.get_mut(var.id).and_then(|g| g.take())
    }
}

impl<T: Float> Var<T> {
    /// The node id (its position on the tape).
    pub fn id(&self) -> usize {
        self.id
    }
    /// The tape this var lives on.
    pub fn tape(&self) -> &Tape<T> {
        &self.tape
    }
    /// The value (shares storage; no copy).
    pub fn value(&self) -> Tensor<T> {
        self.tape.inner.borrow().nodes[self.id].value.clone()
    }
    /// The value's shape.
    pub fn shape(&self) -> Shape {
        self.tape.inner.borrow().nodes[self.id]
            .value
            .shape()
            .clone()
    }
    /// The value's dims.
    pub fn dims(&self) -> Vec<usize> {
        self.shape().dims().to_vec()
    }
    /// The name of the op that produced this var.
    pub fn op_name(&self) -> String {
        self.tape.inner.borrow().nodes[self.id].op.to_string()
    }
    /// Whether a gradient flows to this var.
    pub fn requires_grad(&self) -> bool {
        self.tape.inner.borrow().nodes[self.id].requires_grad
    }
    /// The same value as a new constant: gradients stop here.
    pub fn detach(&self) -> Var<T> {
        self.tape.constant(self.value())
    }
    /// The single value of a one-element var.
    ///
    /// # Errors
    /// `ShapeMismatch` when the var does not hold exactly one element.
    pub fn item(&self) -> Result<T> {
        Ok(self.value().item()?)
    }

    /// Backpropagate from this one-element output (seed 1).
    ///
    /// The tape keeps every node and rule, so `backward` may be called again,
    /// on this output or on any other: each call is an independent reverse
    /// pass that returns fresh gradients (equal to the first call's, never
    /// added to them; PyTorch instead frees the graph unless asked to retain
    /// it, and accumulates into `.grad`). A fused loss that wrote its
    /// gradient during forward hands that buffer to the first call and
    /// recomputes it for later ones, so every call costs a full backward.
    ///
    /// # Errors
    /// [`Error::NotScalar`] for a larger output; [`Error::NoBackward`] or
    /// [`Error::MissingGradient`] when a rule is missing on the way.
    pub fn backward(&self) -> Result<Gradients<T>> {
        let shape = self.shape();
        if shape.numel() != 1 {
            return Err(Error::NotScalar {
                shape: shape.dims().to_vec(),
            });
        }
        self.tape.backward_from(self.id, Tensor::ones(shape)?)
    }
    /// Backpropagate an explicit output gradient (a vector–Jacobian product).
    ///
    /// # Errors
    /// `ShapeMismatch` when `grad` does not have this var's shape; otherwise as
    /// [`Var::backward`].
    pub fn backward_with(&self, grad: Tensor<T>) -> Result<Gradients<T>> {
        let shape = self.shape();
        if grad.shape() != &shape {
            return Err(lossgraph_tensor::Error::shape(
                "backward_with",
                &[shape.dims(), grad.dims()],
                "the output gradient must have the output's shape",
            )
            .into());
        }
        self.tape.backward_from(self.id, grad)
    }

    /// Record a node whose parents are `parents` and whose rule is `rule`.
    pub(crate) fn record(
        &self,
        op: &str,
        value: Tensor<T>,
        parents: &[&Var<T>],
        rule: impl Fn(&Tensor<T>, &[bool]) -> Result<Grads<T>> + 'static,
    ) -> Result<Var<T>> {
        self.tape.record(op, value, parents, Some(Box::new(rule)))
    }

    /// Record an op with no gradient (comparisons, argmax-like results): its
    /// output is a constant, whatever its inputs.
    pub(crate) fn record_constant(&self, op: &str, value: Tensor<T>) -> Result<Var<T>> {
        Ok(self.tape.push_leaf(value, false, op))
    }
}
