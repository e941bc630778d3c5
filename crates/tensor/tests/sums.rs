//! Sums and means that add up correctly at any length (#19): f32 sums of 10M
//! elements against an f64 reference, whole and along each axis. A serial
//! f32 loop gave the mean of 10M copies of 1.3954935 as 1.2676 (9% off).

use lossgraph_tensor::Tensor;

/// The spacing of f32 values at `x`.
fn ulp(x: f32) -> f64 {
    let x = x.abs();
    f64::from(f32::from_bits(x.to_bits() + 1) - x)
}

/// `got` is within `k` ulp of the exact `want`.
fn within_ulps(got: f32, want: f64, k: f64, what: &str) {
    let err = (f64::from(got) - want).abs();
    assert!(
        err <= k * ulp(want as f32),
        "{what}: {got} vs {want} ({:.2} ulp)",
        err / ulp(want as f32)
    );
}

/// Exact enough: f64 with a compensated (Neumaier) sum.
fn reference(x: &[f32]) -> f64 {
    compensated(x.iter().map(|&v| f64::from(v)))
}

/// Neumaier's compensated sum of `values`.
fn compensated(values: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for v in values {
        let t = s + v;
        c += if s.abs() >= v.abs() {
            (s - t) + v
        } else {
            (v - t) + s
        };
        s = t;
    }
    s + c
}

/// Values of mixed sign and magnitude from a fixed stream.
fn mixed(n: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 40) as f32 / (1u64 << 24) as f32;
            (u - 0.3) * if i % 97 == 0 { 1e3 } else { 1.0 }
        })
        .collect()
}

const N: usize = 10_000_000;

#[test]
fn f32_sums_and_means_of_10m_elements_are_within_an_ulp_or_two() {
    for (name, data) in [("constant", vec![1.395_493_5f32; N]), ("mixed", mixed(N))] {
        let want = reference(&data);
        let t = Tensor::from_vec(data.clone(), [N]).unwrap();
        within_ulps(
            t.sum_all().item().unwrap(),
            want,
            1.0,
            &format!("{name} sum_all"),
        );
        within_ulps(
            t.mean_all().item().unwrap(),
            want / N as f64,
            1.0,
            &format!("{name} mean_all"),
        );
        within_ulps(
            t.sum(0, false).unwrap().item().unwrap(),
            want,
            1.0,
            &format!("{name} sum(0)"),
        );
        within_ulps(
            t.mean(0, false).unwrap().item().unwrap(),
            want / N as f64,
            2.0,
            &format!("{name} mean(0)"),
        );

        // [4, N/4] along the last axis (contiguous rows) and [N/4, 4] along
        // the first (a strided axis): each output against its own reference
        let rows = Tensor::from_vec(data.clone(), [4, N / 4]).unwrap();
        let sums = rows.sum(1, false).unwrap();
        let means = rows.mean(1, false).unwrap();
        for (r, chunk) in data.chunks(N / 4).enumerate() {
            let w = reference(chunk);
            within_ulps(sums.as_slice()[r], w, 1.0, &format!("{name} row {r} sum"));
            within_ulps(
                means.as_slice()[r],
                w / (N / 4) as f64,
                2.0,
                &format!("{name} row {r} mean"),
            );
        }
        let cols = Tensor::from_vec(data.clone(), [N / 4, 4]).unwrap();
        let sums = cols.sum(0, true).unwrap();
        assert_eq!(sums.dims(), &[1, 4]);
        for c in 0..4 {
            let column: Vec<f32> = data.iter().skip(c).step_by(4).copied().collect();
            within_ulps(
                sums.as_slice()[c],
                reference(&column),
                1.0,
                &format!("{name} column {c} sum"),
            );
        }
        // a middle axis: [2, N/8, 4] summed over axis 1
        let mid = Tensor::from_vec(data.clone(), [2, N / 8, 4]).unwrap();
        let sums = mid.sum(1, false).unwrap();
        for o in 0..2 {
            let slab = &data[o * N / 2..(o + 1) * N / 2];
            for c in 0..4 {
                let column: Vec<f32> = slab.iter().skip(c).step_by(4).copied().collect();
                within_ulps(
                    sums.as_slice()[o * 4 + c],
                    reference(&column),
                    1.0,
                    &format!("{name} [{o}, :, {c}]"),
                );
            }
        }
    }
}

/// f64 sums of 10M elements: within a few ε of the compensated reference
/// (a serial loop's bound is n·ε).
#[test]
fn f64_sums_of_10m_elements_are_accurate() {
    let data: Vec<f64> = mixed(N).into_iter().map(|v| f64::from(v) + 0.1).collect();
    let want = compensated(data.iter().copied());
    let abs: f64 = data.iter().map(|v| v.abs()).sum();
    let t = Tensor::from_vec(data, [N]).unwrap();
    let got = t.sum_all().item().unwrap();
    // the tree's bound: (64 + log2(N / 4096) + 1)·ε·Σ|x|
    let bound = (64.0 + 12.0 + 1.0) * f64::EPSILON * abs;
    assert!(
        (got - want).abs() <= bound,
        "{got} vs {want} (bound {bound})"
    );
}

/// Sums are reproducible: the same bits on every call (the tree's shape
/// does not depend on the threads), and equal to the sum of the halves'
/// sums where the split is on the tree's own boundary.
#[test]
fn sums_are_reproducible() {
    let data = mixed(1 << 20);
    let t = Tensor::from_vec(data, [1 << 20]).unwrap();
    let first = t.sum_all().item().unwrap();
    for _ in 0..5 {
        assert_eq!(t.sum_all().item().unwrap().to_bits(), first.to_bits());
    }
    // no elements: along an empty axis, zeros; beside one, an empty result
    assert_eq!(
        Tensor::<f32>::zeros([2, 3, 0])
            .unwrap()
            .sum(1, false)
            .unwrap()
            .dims(),
        &[2, 0]
    );
    assert_eq!(
        Tensor::<f32>::zeros([0, 4])
            .unwrap()
            .sum(0, false)
            .unwrap()
            .to_vec(),
        vec![0.0; 4]
    );
    let empty = Tensor::<f32>::zeros([3, 0]).unwrap();
    assert_eq!(empty.sum(1, false).unwrap().to_vec(), vec![0.0; 3]);
    assert_eq!(empty.sum_all().item().unwrap(), 0.0);
    assert!(empty.mean_all().item().unwrap().is_nan());
}
