//! The fast paths (row and column broadcasts, row reductions along the last
//! axis, the one-sweep softmax backward rules) against plain element loops
//! written here from the definitions, at sizes on both sides of the
//! parallel threshold and with the special values each path must carry.

use lossgraph_tensor::{Shape, Tensor};

/// `f` at each output element of the broadcast of `a` and `b`, read
/// through NumPy's rules one index at a time.
fn broadcast_by_hand(
    a: &Tensor<f64>,
    b: &Tensor<f64>,
    f: impl Fn(f64, f64) -> f64,
) -> (Vec<usize>, Vec<f64>) {
    let nd = a.ndim().max(b.ndim());
    let pad = |t: &Tensor<f64>| {
        let mut d = vec![1; nd - t.ndim()];
        d.extend_from_slice(t.dims());
        d
    };
    let (da, db) = (pad(a), pad(b));
    let out: Vec<usize> = da.iter().zip(&db).map(|(&x, &y)| x.max(y)).collect();
    let n: usize = out.iter().product();
    let index = |dims: &[usize], at: &[usize]| {
        dims.iter()
            .zip(at)
            .fold(0, |acc, (&d, &i)| acc * d + if d == 1 { 0 } else { i })
    };
    let mut vals = Vec::with_capacity(n);
    let mut at = vec![0usize; nd];
    for _ in 0..n {
        vals.push(f(
            a.as_slice()[index(&da, &at)],
            b.as_slice()[index(&db, &at)],
        ));
        for d in (0..nd).rev() {
            at[d] += 1;
            if at[d] < out[d] {
                break;
            }
            at[d] = 0;
        }
    }
    (out, vals)
}

#[test]
fn row_and_column_broadcasts_match_the_definition() {
    let cases: [(&[usize], &[usize]); 7] = [
        (&[5, 7], &[7]),
        (&[5, 7], &[5, 1]),
        (&[3, 5, 7], &[3, 5, 1]),
        (&[3, 5, 7], &[1, 7]),
        (&[600, 300], &[600, 1]), // past the parallel threshold
        (&[600, 300], &[300]),
        (&[5, 1], &[5, 7]), // the column on the left
    ];
    for (i, (sa, sb)) in cases.iter().enumerate() {
        let a = Tensor::<f64>::randn(*sa, 0.0, 1.0, i as u64).unwrap();
        let mut b = Tensor::<f64>::randn(*sb, 0.0, 1.0, 100 + i as u64).unwrap();
        b.make_mut()[0] = f64::NAN;
        for (name, got, f) in [
            (
                "sub",
                a.sub(&b).unwrap(),
                (|x, y| x - y) as fn(f64, f64) -> f64,
            ),
            ("div", a.div(&b).unwrap(), |x, y| x / y),
        ] {
            let (dims, want) = broadcast_by_hand(&a, &b, f);
            assert_eq!(got.dims(), &dims[..], "{name} {sa:?} {sb:?}");
            for (g, w) in got.as_slice().iter().zip(&want) {
                assert!(
                    g.to_bits() == w.to_bits(),
                    "{name} {sa:?} {sb:?}: {g} vs {w}"
                );
            }
        }
        // and the swapped order
        let (_, want) = broadcast_by_hand(&b, &a, |x, y| x - y);
        let got = b.sub(&a).unwrap();
        for (g, w) in got.as_slice().iter().zip(&want) {
            assert!(
                g.to_bits() == w.to_bits(),
                "swapped {sa:?} {sb:?}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn last_axis_reductions_match_the_definition() {
    for (rows, n) in [(3usize, 1usize), (4, 31), (5, 200), (300, 1100)] {
        let mut x = Tensor::<f64>::randn([rows, n], 0.0, 30.0, n as u64).unwrap();
        {
            let v = x.make_mut();
            v[0] = f64::NAN; // row 0 carries a NaN
            if rows > 2 {
                v[2 * n..3 * n].fill(f64::NEG_INFINITY); // row 2 is all −∞
            }
        }
        let max = x.max(1, false).unwrap();
        let min = x.min(1, true).unwrap();
        let lse = x.logsumexp(1, false).unwrap();
        assert_eq!(min.dims(), &[rows, 1]);
        for (r, row) in x.as_slice().chunks(n).enumerate() {
            let nan = row.iter().any(|v| v.is_nan());
            let hi = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lo = row.iter().copied().fold(f64::INFINITY, f64::min);
            let (want_max, want_min) = if nan { (f64::NAN, f64::NAN) } else { (hi, lo) };
            let want_lse = if nan || !hi.is_finite() {
                if nan {
                    f64::NAN
                } else {
                    hi
                }
            } else {
                hi + row.iter().map(|v| (v - hi).exp()).sum::<f64>().ln()
            };
            let same = |g: f64, w: f64, tol: f64| {
                (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol * w.abs().max(1.0)
            };
            assert!(same(max.as_slice()[r], want_max, 0.0), "max row {r}");
            assert!(same(min.as_slice()[r], want_min, 0.0), "min row {r}");
            assert!(
                same(lse.as_slice()[r], want_lse, 1e-14),
                "logsumexp row {r}: {} vs {want_lse}",
                lse.as_slice()[r]
            );
        }
    }
}

/// The first index of the row's maximum (`max`) or minimum, a NaN winning,
/// by one scan as the definition reads.
fn arg_extreme_by_hand(row: &[f64], max: bool) -> i64 {
    let mut best = 0;
    for (k, &v) in row.iter().enumerate() {
        if v.is_nan() {
            return k as i64;
        }
        let better = if max { v > row[best] } else { v < row[best] };
        if better {
            best = k;
        }
    }
    best as i64
}

#[test]
fn argmax_and_argmin_match_the_definition_along_rows_and_columns() {
    for (rows, n) in [(3usize, 1usize), (4, 31), (6, 200), (300, 1100)] {
        // few distinct values, so that most rows hold ties
        let mut x = Tensor::<f64>::randn([rows, n], 0.0, 2.0, n as u64)
            .unwrap()
            .map(f64::round);
        {
            let v = x.make_mut();
            v[n / 2] = f64::NAN; // row 0 carries a NaN mid-row
            if rows > 2 {
                v[2 * n..3 * n].fill(f64::NEG_INFINITY); // row 2 is all −∞
            }
            if rows > 3 {
                v[3 * n + n - 1] = f64::INFINITY; // row 3: +∞ at the end
            }
        }
        let xt = x.transpose(0, 1).unwrap(); // the strided path
        for max in [true, false] {
            let (rows_path, cols_path) = if max {
                (x.argmax(1, false).unwrap(), xt.argmax(0, false).unwrap())
            } else {
                (x.argmin(1, false).unwrap(), xt.argmin(0, false).unwrap())
            };
            for (r, row) in x.as_slice().chunks(n).enumerate() {
                let want = arg_extreme_by_hand(row, max);
                assert_eq!(rows_path.as_slice()[r], want, "max={max} row {r}");
                assert_eq!(cols_path.as_slice()[r], want, "max={max} column {r}");
            }
        }
    }
}

#[test]
fn softmax_backward_rules_match_the_composite_formulas() {
    for (rows, n) in [(1usize, 1usize), (3, 5), (40, 1000)] {
        let x = Tensor::<f64>::randn([rows, n], 0.0, 3.0, 7).unwrap();
        let g = Tensor::<f64>::randn([rows, n], 0.0, 1.0, 8).unwrap();
        let last = Shape::from([rows, 1]);
        // y ⊙ (g − Σ g⊙y) and g − e^y Σ g, as separate tensor passes
        let y = x.softmax();
        let s = g.mul(&y).unwrap().sum(1, true).unwrap();
        assert_eq!(s.shape(), &last);
        let want = y.mul(&g.sub(&s).unwrap()).unwrap();
        let got = y.softmax_backward(&g).unwrap();
        let ly = x.log_softmax();
        let sg = g.sum(1, true).unwrap();
        let want_log = g.sub(&ly.exp().mul(&sg).unwrap()).unwrap();
        let got_log = ly.log_softmax_backward(&g).unwrap();
        for (got, want) in [(got, want), (got_log, want_log)] {
            for (a, b) in got.as_slice().iter().zip(want.as_slice()) {
                assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
    }
    let y = Tensor::<f32>::full([2, 3], 0.5).unwrap();
    let g = Tensor::<f32>::full([3, 2], 1.0).unwrap();
    assert!(y.softmax_backward(&g).is_err());
    assert!(y.log_softmax_backward(&g).is_err());
}
