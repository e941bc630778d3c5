//! Contrastive, ranking and preference losses: they score relations between
//! items — distances between embeddings (`contrastive`, `triplet`), a query
//! against a batch of keys (`info_nce`), or the order of two scores
//! (`margin_ranking`, `bradley_terry`, `dpo`) — rather than one prediction
//! against one target.

mod bradley_terry;
mod contrastive;
mod dpo;
mod info_nce;
mod margin_ranking;
mod pointwise;
mod triplet;

pub use bradley_terry::{bradley_terry, BradleyTerryOptions};
pub use contrastive::{contrastive, ContrastiveOptions};
pub use dpo::{dpo, DpoOptions, DpoVariant};
pub use info_nce::{info_nce, InfoNceOptions};
pub use margin_ranking::{margin_ranking, MarginRankingOptions};
pub use triplet::{triplet, TripletOptions};

use crate::common::{first_where, CHUNK};
use crate::registry::{Args, Flavor};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::parallel::PAR_THRESHOLD;
use lossgraph_tensor::{Error, Float, Tensor};
use rayon::prelude::*;
use std::ops::Range;

/// `InvalidTarget` unless every element of the label tensor `t` is one of
/// `set` (NaN passes through, as non-finite inputs do).
fn check_labels<T: Float>(op: &str, what: &str, t: &Tensor<T>, set: [f64; 2]) -> Result<()> {
    let [a, b] = set.map(T::of);
    let x = t.as_slice();
    // a vectorised count over rayon first, a search only on failure
    if let Some(i) = first_where(
        x,
        #[inline(always)]
        move |y| !(y.is_nan() || y == a || y == b),
    ) {
        let y = x[i];
        return Err(Error::target(op, format!("{what}[{i}] = {y} is not {a} or {b}")).into());
    }
    Ok(())
}

/// Rows per task of the row-wise kernels (`contrastive`, `triplet`,
/// `info_nce`): about [`CHUNK`] elements, at least one row.
fn rows_per_task(d: usize) -> usize {
    (CHUNK / d.max(1)).max(1)
}

/// Run `f(rows, outs)` over fixed blocks of the `rows` rows of width `d`
/// (over rayon once there are [`PAR_THRESHOLD`] elements), where `outs` are
/// the pieces of `M` optional outputs belonging to those rows: an output
/// given with width `w` holds `w` elements per row (`d` for a per-element
/// gradient, 1 for a per-row value). Each output must be `rows·w` long.
/// The blocks do not depend on the thread count, so neither do results.
pub(super) fn for_row_blocks<'a, E: Send, const M: usize>(
    rows: usize,
    d: usize,
    outs: [(Option<&'a mut [E]>, usize); M],
    f: impl Fn(Range<usize>, [Option<&'a mut [E]>; M]) + Sync + Send,
) {
    let per = rows_per_task(d);
    let blocks = rows.div_ceil(per);
    let mut pieces: Vec<[Option<&'a mut [E]>; M]> =
        (0..blocks).map(|_| std::array::from_fn(|_| None)).collect();
    for (k, (o, w)) in outs.into_iter().enumerate() {
        let Some(mut rest) = o else { continue };
        for (b, p) in pieces.iter_mut().enumerate() {
            let len = (per.min(rows - b * per)) * w;
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
            p[k] = Some(head);
            rest = tail;
        }
    }
    let run = |(b, p): (usize, [Option<&'a mut [E]>; M])| f(b * per..((b + 1) * per).min(rows), p);
    if rows * d < PAR_THRESHOLD {
        pieces.into_iter().enumerate().for_each(run);
    } else {
        pieces.into_par_iter().enumerate().for_each(run);
    }
}

/// Naive twins of this family.
pub mod naive {
    pub use super::bradley_terry::bradley_terry_naive as bradley_terry;
    pub use super::contrastive::contrastive_naive as contrastive;
    pub use super::dpo::dpo_naive as dpo;
    pub use super::info_nce::info_nce_naive as info_nce;
    pub use super::margin_ranking::margin_ranking_naive as margin_ranking;
    pub use super::triplet::triplet_naive as triplet;
}

/// Build an op of this family from registry arguments; `None` for other ops.
pub(crate) fn build<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Option<Result<Var<T>>> {
    Some(match a.op() {
        "contrastive" => build_contrastive(a, flavor),
        "triplet" => build_triplet(a, flavor),
        "info_nce" => build_info_nce(a, flavor),
        "margin_ranking" => build_margin_ranking(a, flavor),
        "bradley_terry" => build_bradley_terry(a, flavor),
        "dpo" => build_dpo(a, flavor),
        _ => return None,
    })
}

fn build_contrastive<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = ContrastiveOptions {
        reduction: a.reduction()?,
        margin: a.num("margin", 1.0)?,
    };
    let (u, v, s) = (a.real("u")?, a.real("v")?, a.real("similar")?);
    match flavor {
        Flavor::Fused => contrastive(&u, &v, &s, &o),
        Flavor::Naive => naive::contrastive(&u, &v, &s, &o),
    }
}

fn build_triplet<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = TripletOptions {
        reduction: a.reduction()?,
        margin: a.num("margin", 1.0)?,
        squared: a.flag("squared", true)?,
    };
    let (x, p, n) = (a.real("anchor")?, a.real("positive")?, a.real("negative")?);
    match flavor {
        Flavor::Fused => triplet(&x, &p, &n, &o),
        Flavor::Naive => naive::triplet(&x, &p, &n, &o),
    }
}

fn build_info_nce<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = InfoNceOptions {
        reduction: a.reduction()?,
        temperature: a.num("temperature", 0.1)?,
        normalize: a.flag("normalize", true)?,
        symmetric: a.flag("symmetric", false)?,
    };
    let (q, k) = (a.real("query")?, a.real("key")?);
    match flavor {
        Flavor::Fused => info_nce(&q, &k, &o),
        Flavor::Naive => naive::info_nce(&q, &k, &o),
    }
}

fn build_margin_ranking<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = MarginRankingOptions {
        reduction: a.reduction()?,
        denominator: a.denominator()?,
        margin: a.num("margin", 0.0)?,
    };
    let (x, y, t) = (a.real("a")?, a.real("b")?, a.real("target")?);
    match flavor {
        Flavor::Fused => margin_ranking(&x, &y, &t, &o),
        Flavor::Naive => naive::margin_ranking(&x, &y, &t, &o),
    }
}

fn build_bradley_terry<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = BradleyTerryOptions {
        reduction: a.reduction()?,
        denominator: a.denominator()?,
        margin: a.num("margin", 0.0)?,
    };
    let (c, r) = (a.real("chosen")?, a.real("rejected")?);
    match flavor {
        Flavor::Fused => bradley_terry(&c, &r, &o),
        Flavor::Naive => naive::bradley_terry(&c, &r, &o),
    }
}

fn build_dpo<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = DpoOptions {
        reduction: a.reduction()?,
        denominator: a.denominator()?,
        beta: a.num("beta", 0.1)?,
        label_smoothing: a.num("label_smoothing", 0.0)?,
        variant: DpoVariant::parse(&a.string("variant", "sigmoid")?)?,
    };
    let pc = a.real("policy_chosen")?;
    let pr = a.real("policy_rejected")?;
    let rc = a.real("ref_chosen")?;
    let rr = a.real("ref_rejected")?;
    match flavor {
        Flavor::Fused => dpo(&pc, &pr, &rc, &rr, &o),
        Flavor::Naive => naive::dpo(&pc, &pr, &rc, &rr, &o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::Reduction;
    use lossgraph_autodiff::Tape;

    /// Empty batches (and empty embeddings) never panic: `mean` is 0,
    /// `none` is empty, and every gradient is zero-sized or zero.
    #[test]
    fn empty_inputs() {
        for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            for (n, d) in [(0, 3), (3, 0), (0, 0)] {
                let tape = Tape::<f64>::new();
                let x = || tape.leaf(Tensor::zeros([n, d]).unwrap());
                let s = tape.leaf(Tensor::zeros([n]).unwrap());
                let (a, b, c) = (x(), x(), x());
                let outs = vec![
                    contrastive(
                        &a,
                        &b,
                        &s,
                        &ContrastiveOptions {
                            reduction,
                            ..Default::default()
                        },
                    ),
                    triplet(
                        &a,
                        &b,
                        &c,
                        &TripletOptions {
                            reduction,
                            ..Default::default()
                        },
                    ),
                    triplet(
                        &a,
                        &b,
                        &c,
                        &TripletOptions {
                            reduction,
                            squared: false,
                            ..Default::default()
                        },
                    ),
                    info_nce(
                        &a,
                        &b,
                        &InfoNceOptions {
                            reduction,
                            ..Default::default()
                        },
                    ),
                    info_nce(
                        &a,
                        &b,
                        &InfoNceOptions {
                            reduction,
                            symmetric: true,
                            ..Default::default()
                        },
                    ),
                    margin_ranking(
                        &s,
                        &s,
                        &s.add_scalar(1.0).unwrap(),
                        &MarginRankingOptions {
                            reduction,
                            ..Default::default()
                        },
                    ),
                    bradley_terry(
                        &s,
                        &s,
                        &BradleyTerryOptions {
                            reduction,
                            ..Default::default()
                        },
                    ),
                    dpo(
                        &s,
                        &s,
                        &s,
                        &s,
                        &DpoOptions {
                            reduction,
                            ..Default::default()
                        },
                    ),
                ];
                for out in outs {
                    let out = out.unwrap();
                    let g = out
                        .backward_with(Tensor::ones(out.shape()).unwrap())
                        .unwrap();
                    assert!(out.value().all_finite(), "{n}x{d} {reduction:?}");
                    assert!(g.get_or_zeros(&a).all_finite() && g.get_or_zeros(&s).all_finite());
                }
            }
        }
    }
}
