#!/usr/bin/env bash
# Regenerate the figures of the guide: `bash docs/img/make.sh` from anywhere.
# Each figure is one `lossgraph plot` command; every curve's gradient comes
# from the tape (backward through the op built by name), not from a formula.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bin lossgraph
plot() { cargo run --quiet --release --bin lossgraph -- plot "$@"; }
out=docs/img

# mse, mae, huber δ=1, log_cosh, quantile τ=0.9 over residuals −5..5
plot --preset regression --out $out/regression.png

# gaussian_nll at var 0.5, 1, 2 against the residual (target 0) and
# poisson_nll against its log-rate pred, with counts 1 and 4 as targets
plot gaussian_nll:var=0.5,1,2 poisson_nll:target=1,4 --range -3,3 \
  --loss-range -2,8 --grad-range -8,8 \
  --title "Likelihood losses: gaussian_nll and poisson_nll" \
  --note "gaussian_nll: ½(log var + r²/var) with target 0, so x is the residual r; a smaller var gives a deeper, steeper bowl." \
  --note "poisson_nll (log_input): e^pred − target·pred with x = pred, the log-rate; the minimum is at pred = log target." \
  --out $out/regression-likelihood.png

# bce vs sigmoid_focal γ = 0, 1, 2, 5 against p_t
plot --preset focal --out $out/focal.png

# hinge, logistic, squared hinge (composed) against the margin y·s
plot --preset margins --out $out/margins.png

# multiclass losses against the true-class logit (3 classes, other logits 0)
plot cross_entropy:label_smoothing=0,0.1 softmax_focal:gamma=2 brier multi_margin \
  --against logit --range -6,6 \
  --title "Multiclass losses vs the true-class logit" \
  --note "3 classes, target class 0, the other two logits 0. multi_margin: Σ_{j≠y} max(0, 1 − z_y + z_j)/C, with p = 1." \
  --note "With label_smoothing 0.1 the loss never reaches 0 and its gradient turns positive for a large z_y: smoothing pulls an over-confident logit back." \
  --out $out/classification-softmax.png

# kl_logits at T = 1, 2, 4 against one student logit (teacher [2, 0, 0]),
# and gaussian_kl (logvar 0) against μ
plot kl_logits:temperature=1,2,4 gaussian_kl --range -4,6 \
  --loss-range 0,5 --grad-range -2.5,2.5 \
  --title "Probabilistic losses: distillation KL and the Gaussian KL" \
  --note "kl_logits: T²·KL(softmax(teacher/T) ‖ softmax(student/T)), student logits [x, 0, 0], teacher [2, 0, 0]; the minimum is at x = 2 for every T." \
  --note "gaussian_kl: ½(μ² + e^logvar − 1 − logvar) with logvar 0, so ½μ² (it leaves the panels for |μ| > 2.5)." \
  --out $out/probabilistic.png

# the softmax over one similarity row at τ = 1, 0.5, 0.1, 0.05
plot --preset temperature --out $out/temperature.png

# contrastive for similar and dissimilar pairs, triplet squared and not,
# against the distance (triplet: ‖a − p‖ with ‖a − n‖ = 2)
plot contrastive:similar=1,0 triplet:squared=true,false --range 0,3 \
  --title "Contrastive and triplet losses vs the distance" \
  --note "contrastive, margin 1: s·d² + (1 − s)·max(0, 1 − d)², with u = [d] and v = [0]." \
  --note "triplet, margin 1: anchor 0, positive at distance d, negative at 2; squared: max(0, d² − 4 + 1), not squared: max(0, d − 2 + 1)." \
  --note "At d = 0 the norm has no gradient; the op uses the subgradient 0 there, hence the dissimilar curve's jump." \
  --out $out/contrastive.png

# bradley_terry and dpo sigmoid / hinge / ipo (β = 0.5) against the margin h
plot bradley_terry dpo:variant=sigmoid,hinge,ipo:beta=0.5 --against margin --range -4,6 \
  --loss-range 0,6 --grad-range -3,3 \
  --title "Preference losses vs the preference margin h" \
  --note "bradley_terry: −log σ(chosen − rejected), x the score gap." \
  --note "dpo with β = 0.5, x = h (policy_chosen = h, the other three log-probabilities 0): sigmoid −log σ(βh), hinge max(0, 1 − βh), ipo (h − 1/(2β))²." \
  --out $out/preference.png

# which item gets how much gradient: token mean vs per-row mean
plot --preset reductions --out $out/reductions.png

# exercise 5 of docs/exercises.md: mse, mae, huber δ=1 over residuals −5..5
plot mse mae huber:delta=1 --range -5,5 \
  --title "Exercise 5: MSE, MAE and Huber (δ = 1) over residuals −5..5" \
  --note "Gradients from the tape: MSE 2r grows without bound, MAE sign(r) (0 at r = 0), Huber r inside |r| ≤ 1 and ±1 outside." \
  --out $out/exercise-gradients.png

# docs/objectives-and-scale.md: each term's gradient-norm share per epoch,
# drawn by the multitask example (fixed weights, uncertainty, GradNorm)
cargo run --quiet --release --example multitask >/dev/null
cp target/examples/multitask/shares.png $out/multitask-shares.png
