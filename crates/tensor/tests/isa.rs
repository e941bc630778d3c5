//! The instruction-set cap: `LOSSGRAPH_ISA` lowers the path [`vectorized`]
//! takes, never raises it. `.ci/run` runs the kernel and loss tests once per
//! path the CPU has, with the variable set; this test checks, in each of
//! those runs, that the cap took effect.

use lossgraph_tensor::simd::{self, Isa, ISA_ENV};

#[test]
fn the_cap_in_the_environment_is_the_path_taken() {
    let detected = simd::detected_isa();
    let want = match std::env::var(ISA_ENV) {
        Ok(v) => Isa::from_name(&v).map_or(detected, |cap| cap.min(detected)),
        Err(_) => detected,
    };
    assert_eq!(simd::isa(), want, "{ISA_ENV}={:?}", std::env::var(ISA_ENV));
    assert_eq!(simd::has_fma(), want >= Isa::Avx2);
    eprintln!("isa: {} (detected {})", want.name(), detected.name());
}

#[test]
fn names_round_trip_and_order_by_width() {
    for i in Isa::ALL {
        assert_eq!(Isa::from_name(i.name()), Some(i));
    }
    assert_eq!(Isa::from_name("sse9"), None);
    assert!(Isa::Baseline < Isa::Avx2 && Isa::Avx2 < Isa::Avx512);
}

/// The same kernel gives the same sums on every path within the stated
/// rounding: run under each cap by `.ci/run`, this exercises whichever path
/// the cap selects against a plain f64 reference.
#[test]
fn a_row_kernel_agrees_with_an_f64_reference_on_this_path() {
    let x: Vec<f32> = (0..1000)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
        .collect();
    let got = simd::vectorized(
        #[inline(always)]
        || simd::sum(&x),
    );
    let want: f64 = x.iter().map(|&v| f64::from(v)).sum();
    assert!((f64::from(got) - want).abs() <= 1e-3, "{got} vs {want}");
    let m = simd::vectorized(
        #[inline(always)]
        || simd::max(&x),
    );
    assert_eq!(m, x.iter().cloned().fold(f32::MIN, f32::max));
}
