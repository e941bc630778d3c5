//! Learning-rate schedules.

use lossgraph_autodiff::Result;

/// Linear warm-up, then cosine decay:
///
/// ```text
/// lr(s) = base·s/warmup                                       s < warmup
/// lr(s) = min + (base − min)·½·(1 + cos(π·(s − warmup)/(total − warmup)))
///                                                             warmup ≤ s < total
/// lr(s) = min                                                 s ≥ total
/// ```
///
/// As Hugging Face's `get_cosine_schedule_with_warmup` (with a floor `min`):
/// the rate starts at 0 on step 0, reaches `base` at step `warmup` and `min`
/// at step `total`. Steps count from 0; call `lr(step)` before each update.
///
/// ```
/// use lossgraph_nn::CosineSchedule;
/// let s = CosineSchedule::new(1.0, 0.0, 10, 110)?;
/// assert_eq!(s.lr(5), 0.5); // half-way through warm-up
/// assert_eq!(s.lr(10), 1.0); // the peak
/// assert!((s.lr(60) - 0.5).abs() < 1e-12); // half-way through the decay
/// assert_eq!(s.lr(110), 0.0);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineSchedule {
    /// The peak rate, reached at the end of warm-up.
    pub base_lr: f64,
    /// The floor the cosine decays to.
    pub min_lr: f64,
    /// Steps of linear warm-up from 0.
    pub warmup_steps: usize,
    /// The step at which the rate reaches `min_lr`.
    pub total_steps: usize,
}

impl CosineSchedule {
    /// A validated schedule.
    ///
    /// # Errors
    /// `InvalidOption` unless `0 ≤ min_lr ≤ base_lr` (both finite) and
    /// `warmup_steps ≤ total_steps`.
    pub fn new(base_lr: f64, min_lr: f64, warmup_steps: usize, total_steps: usize) -> Result<Self> {
        let op = "CosineSchedule";
        crate::optim::check_range(op, "min_lr", min_lr, 0.0, None)?;
        crate::optim::check_range(op, "base_lr", base_lr, min_lr, None)?;
        if warmup_steps > total_steps {
            return Err(lossgraph_tensor::Error::option(
                op,
                "warmup_steps",
                format!("warm-up of {warmup_steps} steps is longer than the {total_steps} in all"),
            )
            .into());
        }
        Ok(CosineSchedule {
            base_lr,
            min_lr,
            warmup_steps,
            total_steps,
        })
    }

    /// The rate for `step` (0-based). Never panics, whatever the fields hold.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * step as f64 / self.warmup_steps as f64;
        }
        if step >= self.total_steps {
            return self.min_lr;
        }
        let progress =
            (step - self.warmup_steps) as f64 / (self.total_steps - self.warmup_steps) as f64;
        let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.min_lr + (self.base_lr - self.min_lr) * cos
    }
}
