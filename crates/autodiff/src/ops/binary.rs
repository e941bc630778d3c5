//! Elementwise ops of two inputs with NumPy broadcasting. Each rule computes
//! the gradient at the output's shape, then sums it back to each input's shape.

use super::{unbroadcast, zip};
use crate::error::Result;
use crate::tape::{Grads, Var};
use lossgraph_tensor::{broadcast_map, Float, Tensor};
use smallvec::smallvec;

impl<T: Float> Var<T> {
    /// Record a broadcasting binary op whose rule gives (da, db) at the output
    /// shape; unbroadcasting happens here, once.
    fn binary(
        &self,
        other: &Var<T>,
        op: &str,
        out: Tensor<T>,
        rule: impl Fn(&Tensor<T>, &[bool]) -> Result<(Option<Tensor<T>>, Option<Tensor<T>>)> + 'static,
    ) -> Result<Var<T>> {
        let (sa, sb) = (self.shape(), other.shape());
        self.record(op, out, &[self, other], move |g, needs| {
            let (da, db) = rule(g, needs)?;
            let da = match da {
                Some(d) if needs[0] => Some(unbroadcast(d, &sa)?),
                _ => None,
            };
            let db = match db {
                Some(d) if needs[1] => Some(unbroadcast(d, &sb)?),
                _ => None,
            };
            let grads: Grads<T> = smallvec![da, db];
            Ok(grads)
        })
    }

    /// `a + b`; rules `g`, `g`.
    pub fn add(&self, other: &Var<T>) -> Result<Var<T>> {
        let y = self.value().add(&other.value())?;
        self.binary(other, "add", y, |g, _| {
            Ok((Some(g.clone()), Some(g.clone())))
        })
    }
    /// `a − b`; rules `g`, `−g`.
    pub fn sub(&self, other: &Var<T>) -> Result<Var<T>> {
        let y = self.value().sub(&other.value())?;
        self.binary(other, "sub", y, |g, n| {
            Ok((Some(g.clone()), n[1].then(|| g.neg())))
        })
    }
    /// `a · b`; rules `g·b`, `g·a`.
    pub fn mul(&self, other: &Var<T>) -> Result<Var<T>> {
        let (a, b) = (self.value(), other.value());
        let y = a.mul(&b)?;
        self.binary(other, "mul", y, move |g, n| {
            Ok((
                n[0].then(|| g.mul(&b)).transpose()?,
                n[1].then(|| g.mul(&a)).transpose()?,
            ))
        })
    }
    /// `a / b`; rules `g/b`, `−g·a/b²`.
    pub fn div(&self, other: &Var<T>) -> Result<Var<T>> {
        let (a, b) = (self.value(), other.value());
        let y = a.div(&b)?;
        let yc = y.clone();
        self.binary(other, "div", y, move |g, n| {
            let da = n[0].then(|| g.div(&b)).transpose()?;
            // −g·a/b² = −(g/b)·y, with y = a/b at the output shape
            let db = if n[1] {
                Some(g.div(&b)?.mul(&yc)?.neg())
            } else {
                None
            };
            Ok((da, db))
        })
    }
    /// Elementwise maximum; the gradient goes to the larger input, split
    /// evenly at ties (as PyTorch).
    pub fn maximum(&self, other: &Var<T>) -> Result<Var<T>> {
        self.extremum(other, "maximum", true)
    }
    /// Elementwise minimum; the gradient goes to the smaller input, split
    /// evenly at ties (as PyTorch).
    pub fn minimum(&self, other: &Var<T>) -> Result<Var<T>> {
        self.extremum(other, "minimum", false)
    }
    fn extremum(&self, other: &Var<T>, op: &'static str, max: bool) -> Result<Var<T>> {
        let (a, b) = (self.value(), other.value());
        let y = if max { a.maximum(&b)? } else { a.minimum(&b)? };
        let half = T::of(0.5);
        // the winners are found in backward, not here: a forward-only use
        // (inference, a metric) then costs one pass and no extra buffer
        self.binary(other, op, y, move |g, _| {
            // share of the gradient that goes to `a`: 1, ½ at a tie, else 0
            let wa = broadcast_map(op, &a, &b, move |a, b| {
                let wins = if max { a > b } else { a < b };
                if wins {
                    T::one()
                } else if a == b {
                    half
                } else {
                    T::zero()
                }
            })?;
            let da = g.mul(&wa)?;
            let db = zip(g, &da, |g, d| g - d)?;
            Ok((Some(da), Some(db)))
        })
    }
    /// `aᵇ`; rules `g·b·aᵇ⁻¹` and `g·aᵇ·ln a` (0 where a = 0 and b ≥ 0, as PyTorch).
    pub fn pow(&self, other: &Var<T>) -> Result<Var<T>> {
        let (a, b) = (self.value(), other.value());
        let y = a.pow(&b)?;
        let yc = y.clone();
        self.binary(other, "pow", y, move |g, n| {
            let da = if n[0] {
                let d = broadcast_map("pow", &a, &b, |a, b| {
                    if b == T::zero() {
                        T::zero()
                    } else {
                        b * a.powf(b - T::one())
                    }
                })?;
                Some(g.mul(&d)?)
            } else {
                None
            };
            let db = if n[1] {
                let la = broadcast_map("pow", &a, &b, |a, b| {
                    if a == T::zero() && b >= T::zero() {
                        T::zero()
                    } else {
                        a.ln()
                    }
                })?;
                Some(g.mul(&yc)?.mul(&la)?)
            } else {
                None
            };
            Ok((da, db))
        })
    }

    /// `cond ? a : b` elementwise, for a constant mask `cond` (nonzero selects
    /// `a`); all three broadcast. Rules: `g` masked to each side.
    pub fn where_select(cond: &Tensor<T>, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        let y = Tensor::where_select(cond, &a.value(), &b.value())?;
        let c = cond.clone();
        a.binary(b, "where", y, move |g, n| {
            let zero = Tensor::zeros(g.shape())?;
            let da = n[0]
                .then(|| Tensor::where_select(&c, g, &zero))
                .transpose()?;
            let db = n[1]
                .then(|| Tensor::where_select(&c, &zero, g))
                .transpose()?;
            Ok((da, db))
        })
    }

    /// 1 where `a > b`, else 0 — a constant (no gradient flows through).
    pub fn gt(&self, other: &Var<T>) -> Result<Var<T>> {
        self.record_constant("gt", self.value().gt(&other.value())?)
    }
    /// 1 where `a ≥ b`, else 0 — a constant.
    pub fn ge(&self, other: &Var<T>) -> Result<Var<T>> {
        self.record_constant("ge", self.value().ge(&other.value())?)
    }
    /// 1 where `a < b`, else 0 — a constant.
    pub fn lt(&self, other: &Var<T>) -> Result<Var<T>> {
        self.record_constant("lt", self.value().lt(&other.value())?)
    }
    /// 1 where `a ≤ b`, else 0 — a constant.
    pub fn le(&self, other: &Var<T>) -> Result<Var<T>> {
        self.record_constant("le", self.value().le(&other.value())?)
    }
}
