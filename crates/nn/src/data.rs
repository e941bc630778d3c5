//! Data handling: a seeded train/test split, seeded minibatches, and row
//! selection by index.

use lossgraph_autodiff::Result;
use lossgraph_tensor::{Element, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Split `0..n` at random into (train, test) index lists, the test list
/// holding `⌈n·test_fraction⌉` indices (as scikit-learn's
/// `train_test_split`). Both lists are in shuffled order; the same seed
/// gives the same split.
///
/// ```
/// let (train, test) = lossgraph_nn::train_test_split(10, 0.25, 42)?;
/// assert_eq!((train.len(), test.len()), (7, 3));
/// let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
/// all.sort();
/// assert_eq!(all, (0..10).collect::<Vec<_>>());
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `InvalidOption` when `test_fraction` is outside [0, 1] or NaN.
pub fn train_test_split(
    n: usize,
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(0.0..=1.0).contains(&test_fraction) {
        return Err(lossgraph_tensor::Error::option(
            "train_test_split",
            "test_fraction",
            format!("must lie in [0, 1], got {test_fraction}"),
        )
        .into());
    }
    let n_test = ((n as f64 * test_fraction).ceil() as usize).min(n);
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let train = idx.split_off(n_test);
    Ok((train, idx))
}

/// Minibatches of indices, reshuffled each epoch from a seed.
///
/// Epoch `e` is shuffled by a generator seeded from `(seed, e)`, so any epoch
/// can be replayed on its own (e.g. after resuming from a checkpoint), and
/// every epoch visits each index exactly once (the last batch may be short
/// unless [`drop_last`](Batches::drop_last) is set).
///
/// ```
/// use lossgraph_nn::Batches;
/// let batches = Batches::new(10, 4, 0)?;
/// let epoch: Vec<Vec<usize>> = batches.epoch(0).collect();
/// assert_eq!(epoch.iter().map(|b| b.len()).collect::<Vec<_>>(), vec![4, 4, 2]);
/// assert_eq!(batches.epoch(0).collect::<Vec<_>>(), epoch); // reproducible
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batches {
    indices: Vec<usize>,
    batch_size: usize,
    seed: u64,
    shuffle: bool,
    drop_last: bool,
}

impl Batches {
    /// Batches of `batch_size` over `0..n`, shuffled.
    ///
    /// # Errors
    /// `InvalidOption` for a zero batch size.
    pub fn new(n: usize, batch_size: usize, seed: u64) -> Result<Self> {
        Self::over((0..n).collect(), batch_size, seed)
    }
    /// Batches over the given indices (e.g. the train half of
    /// [`train_test_split`]), shuffled.
    ///
    /// # Errors
    /// `InvalidOption` for a zero batch size.
    pub fn over(indices: Vec<usize>, batch_size: usize, seed: u64) -> Result<Self> {
        if batch_size == 0 {
            return Err(lossgraph_tensor::Error::option(
                "Batches",
                "batch_size",
                "must be at least 1",
            )
            .into());
        }
        Ok(Batches {
            indices,
            batch_size,
            seed,
            shuffle: true,
            drop_last: false,
        })
    }
    /// Shuffle each epoch (default) or keep the given order.
    pub fn shuffle(mut self, on: bool) -> Self {
        self.shuffle = on;
        self
    }
    /// Drop a last batch shorter than the batch size (default: keep it).
    pub fn drop_last(mut self, on: bool) -> Self {
        self.drop_last = on;
        self
    }
    /// Number of batches per epoch.
    pub fn len(&self) -> usize {
        let n = self.indices.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }
    /// Whether an epoch has no batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batches of epoch `epoch`.
    pub fn epoch(&self, epoch: u64) -> impl Iterator<Item = Vec<usize>> {
        let mut order = self.indices.clone();
        if self.shuffle {
            let seed = mix(self.seed, epoch);
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        }
        let (size, count) = (self.batch_size, self.len());
        (0..count).map(move |b| {
            let end = ((b + 1) * size).min(order.len());
            order[b * size..end].to_vec()
        })
    }
}

/// A per-epoch seed from the base seed (SplitMix64 finaliser of both), so
/// that nearby seeds and epochs give unrelated streams.
fn mix(seed: u64, epoch: u64) -> u64 {
    let mut z = seed ^ epoch.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The rows `rows` of `x` (along axis 0), in that order; works for features
/// (`Tensor<f32>`/`Tensor<f64>`) and class ids (`Tensor<i64>`) alike.
///
/// ```
/// use lossgraph_nn::select_rows;
/// use lossgraph_tensor::Tensor;
/// let x = Tensor::from_vec(vec![0.0f32, 1.0, 10.0, 11.0, 20.0, 21.0], [3, 2])?;
/// assert_eq!(select_rows(&x, &[2, 0])?.to_vec(), vec![20.0, 21.0, 0.0, 1.0]);
/// let y = Tensor::from_vec(vec![7i64, 8, 9], [3])?;
/// assert_eq!(select_rows(&y, &[1])?.to_vec(), vec![8]);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `InvalidOption` for a 0-d `x`; `InvalidTarget` for a row out of range.
pub fn select_rows<T: Element>(x: &Tensor<T>, rows: &[usize]) -> Result<Tensor<T>> {
    let Some(&n) = x.dims().first() else {
        return Err(lossgraph_tensor::Error::option(
            "select_rows",
            "x",
            "a 0-d tensor has no rows",
        )
        .into());
    };
    let idx = rows
        .iter()
        .map(|&r| {
            i64::try_from(r).ok().filter(|_| r < n).ok_or_else(|| {
                lossgraph_tensor::Error::target(
                    "select_rows",
                    format!("row {r} is outside [0, {n})"),
                )
            })
        })
        .collect::<std::result::Result<Vec<i64>, _>>()?;
    Ok(x.index_select(0, &Tensor::from_slice(&idx))?)
}
