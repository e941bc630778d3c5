//! Checkpoints and data handling.

use lossgraph_nn::{checkpoint, select_rows, train_test_split, Batches, ParamStore};
use lossgraph_tensor::{ErrorKind, Float, Tensor};
use std::collections::HashSet;

// ---- checkpoints ---------------------------------------------------------------

/// Values that a lossy round trip would change: signed zero, subnormals,
/// infinities, extremes, a NaN with a payload, and values with every
/// mantissa bit in use.
fn awkward<T: Float>(bits: impl Fn(u64) -> T) -> Vec<T> {
    let mut v = vec![
        T::zero(),
        -T::zero(),
        T::min_positive_value() / T::of(4.0), // subnormal
        T::infinity(),
        T::neg_infinity(),
        T::max_value(),
        T::min_value(),
        T::epsilon(),
        T::of(1.0 / 3.0),
        T::of(-2.0f64.sqrt()),
    ];
    v.push(bits(0)); // a NaN with a payload, built by the caller
    v
}

fn model<T: Float>(vals: Vec<T>) -> ParamStore<T> {
    let mut p = ParamStore::new();
    let n = vals.len();
    p.add("layer.0.weight", Tensor::from_vec(vals, [1, n]).unwrap())
        .unwrap();
    p.add("layer.0.bias", Tensor::randn([3], 0.0, 1.0, 5).unwrap())
        .unwrap();
    p.add("scalar", Tensor::scalar(T::of(7.25))).unwrap();
    p.add("empty", Tensor::zeros([0, 4]).unwrap()).unwrap();
    p
}

/// The same names and shapes, other values.
fn blank<T: Float>(like: &ParamStore<T>) -> ParamStore<T> {
    let mut p = ParamStore::new();
    for q in like.iter() {
        p.add(
            q.name(),
            Tensor::full(q.value().shape().clone(), T::of(-1.0)).unwrap(),
        )
        .unwrap();
    }
    p
}

fn bits_f32(p: &ParamStore<f32>) -> Vec<Vec<u32>> {
    p.iter()
        .map(|q| q.value().as_slice().iter().map(|v| v.to_bits()).collect())
        .collect()
}
fn bits_f64(p: &ParamStore<f64>) -> Vec<Vec<u64>> {
    p.iter()
        .map(|q| q.value().as_slice().iter().map(|v| v.to_bits()).collect())
        .collect()
}

#[test]
fn round_trip_is_bit_exact_f32() {
    let src = model::<f32>(awkward(|_| f32::from_bits(0x7fc0_1234)));
    let mut dst = blank(&src);
    checkpoint::from_bytes(&checkpoint::to_bytes(&src).unwrap(), &mut dst).unwrap();
    assert_eq!(bits_f32(&dst), bits_f32(&src));
    assert_eq!(dst.names(), src.names());
}

#[test]
fn round_trip_is_bit_exact_f64_through_a_file() {
    let src = model::<f64>(awkward(|_| f64::from_bits(0x7ff8_0000_dead_beef)));
    let dir = std::env::temp_dir().join(format!("lossgraph-nn-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    checkpoint::save(&path, &src).unwrap();
    checkpoint::save(&path, &src).unwrap(); // overwrites
    let mut dst = blank(&src);
    checkpoint::load(&path, &mut dst).unwrap();
    assert_eq!(bits_f64(&dst), bits_f64(&src));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reads_a_file_written_by_another_writer() {
    // what Python's `safetensors.torch.save_file({"w": tensor([[1., -2.]])})`
    // writes: u64 header length, JSON header padded with spaces to 8 bytes, data
    let header = br#"{"w":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}"#;
    let mut header = header.to_vec();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(&header);
    bytes.extend(1.0f32.to_le_bytes());
    bytes.extend((-2.0f32).to_le_bytes());
    let mut p = ParamStore::<f32>::new();
    p.add("w", Tensor::zeros([1, 2]).unwrap()).unwrap();
    checkpoint::from_bytes(&bytes, &mut p).unwrap();
    assert_eq!(p.get("w").unwrap().to_vec(), vec![1.0, -2.0]);
    // and what we write is that layout
    let ours = checkpoint::to_bytes(&p).unwrap();
    let n = u64::from_le_bytes(ours[..8].try_into().unwrap()) as usize;
    let json = std::str::from_utf8(&ours[8..8 + n]).unwrap();
    assert!(
        json.contains(r#""w":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}"#),
        "{json}"
    );
    assert_eq!(&ours[8 + n..], &bytes[8 + header.len()..]);
}

/// `load` must fail and leave every parameter as it was.
fn assert_rejected(bytes: &[u8], target: &mut ParamStore<f32>, kind: ErrorKind, needle: &str) {
    let before = bits_f32(target);
    let e = checkpoint::from_bytes(bytes, target).unwrap_err();
    assert_eq!(e.kind(), kind, "{e}");
    assert!(e.to_string().contains(needle), "`{e}` lacks `{needle}`");
    assert_eq!(bits_f32(target), before, "nothing half-loaded");
}

fn small(names: &[(&str, &[usize])]) -> ParamStore<f32> {
    let mut p = ParamStore::new();
    for (i, (name, dims)) in names.iter().enumerate() {
        p.add(
            *name,
            Tensor::rand_uniform(*dims, -1.0, 1.0, i as u64).unwrap(),
        )
        .unwrap();
    }
    p
}

#[test]
fn mismatched_checkpoints_are_rejected_whole() {
    let saved = small(&[("a", &[2, 3]), ("b", &[3]), ("c", &[4])]);
    let bytes = checkpoint::to_bytes(&saved).unwrap();

    // a missing name (the model has `d` the file lacks), listed before anything loads
    let mut t = small(&[("a", &[2, 3]), ("b", &[3]), ("c", &[4]), ("d", &[1])]);
    assert_rejected(&bytes, &mut t, ErrorKind::Other, "missing [\"d\"]");
    // an unexpected name
    let mut t = small(&[("a", &[2, 3]), ("b", &[3])]);
    assert_rejected(&bytes, &mut t, ErrorKind::Other, "unexpected [\"c\"]");
    // a shape mismatch in the last parameter: `a` and `b` stay unloaded too
    let mut t = small(&[("a", &[2, 3]), ("b", &[3]), ("c", &[2, 2])]);
    assert_rejected(&bytes, &mut t, ErrorKind::ShapeMismatch, "`c`");
    // same element count, other shape
    let mut t = small(&[("a", &[3, 2]), ("b", &[3]), ("c", &[4])]);
    assert_rejected(&bytes, &mut t, ErrorKind::ShapeMismatch, "`a`");
    // an f64 checkpoint into an f32 model
    let mut wide = ParamStore::<f64>::new();
    for q in saved.iter() {
        wide.add(q.name(), q.value().cast()).unwrap();
    }
    let mut t = small(&[("a", &[2, 3]), ("b", &[3]), ("c", &[4])]);
    assert_rejected(
        &checkpoint::to_bytes(&wide).unwrap(),
        &mut t,
        ErrorKind::Other,
        "F64",
    );
    // not a safetensors file at all, or a truncated one
    assert_rejected(b"not a checkpoint", &mut t, ErrorKind::Other, "safetensors");
    assert_rejected(
        &bytes[..bytes.len() - 1],
        &mut t,
        ErrorKind::Other,
        "safetensors",
    );
    assert_rejected(&[], &mut t, ErrorKind::Other, "safetensors");
    // a file that is not there
    let e = checkpoint::load("/nonexistent/dir/model.safetensors", &mut t).unwrap_err();
    assert!(matches!(e, lossgraph_autodiff::Error::Io(_)), "{e}");
    // a directory that is not there to save into
    assert!(checkpoint::save("/nonexistent/dir/model.safetensors", &saved).is_err());
}

// ---- data -------------------------------------------------------------------------

#[test]
fn batches_cover_every_index_once_per_epoch() {
    let b = Batches::new(103, 10, 7).unwrap();
    assert_eq!(b.len(), 11);
    let mut orders = Vec::new();
    for epoch in 0..5 {
        let batches: Vec<Vec<usize>> = b.epoch(epoch).collect();
        assert_eq!(batches.len(), 11);
        assert!(batches[..10].iter().all(|x| x.len() == 10) && batches[10].len() == 3);
        let flat: Vec<usize> = batches.concat();
        let mut sorted = flat.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..103).collect::<Vec<_>>());
        assert_ne!(flat, sorted, "shuffled");
        orders.push(flat);
    }
    // epochs differ from each other and replay exactly
    assert_eq!(orders.iter().collect::<HashSet<_>>().len(), 5);
    assert_eq!(b.epoch(3).flatten().collect::<Vec<_>>(), orders[3]);
    assert_eq!(
        Batches::new(103, 10, 7)
            .unwrap()
            .epoch(3)
            .flatten()
            .collect::<Vec<_>>(),
        orders[3]
    );
    assert_ne!(
        Batches::new(103, 10, 8)
            .unwrap()
            .epoch(3)
            .flatten()
            .collect::<Vec<_>>(),
        orders[3]
    );
}

#[test]
fn batch_options() {
    let b = Batches::new(10, 4, 0).unwrap().drop_last(true);
    assert_eq!(b.len(), 2);
    assert!(b.epoch(0).all(|x| x.len() == 4));
    let b = Batches::new(5, 2, 0).unwrap().shuffle(false);
    assert_eq!(
        b.epoch(9).collect::<Vec<_>>(),
        vec![vec![0, 1], vec![2, 3], vec![4]]
    );
    let b = Batches::over(vec![10, 20, 30], 2, 1).unwrap();
    let mut seen = b.epoch(0).flatten().collect::<Vec<_>>();
    seen.sort_unstable();
    assert_eq!(seen, vec![10, 20, 30]);
    assert!(Batches::new(0, 3, 0).unwrap().is_empty());
    assert_eq!(Batches::new(0, 3, 0).unwrap().epoch(0).count(), 0);
    assert_eq!(
        Batches::new(5, 0, 0).unwrap_err().kind(),
        ErrorKind::InvalidOption
    );
}

#[test]
fn split_is_seeded_disjoint_and_complete() {
    let (train, test) = train_test_split(100, 0.2, 3).unwrap();
    assert_eq!((train.len(), test.len()), (80, 20));
    let all: HashSet<usize> = train.iter().chain(&test).copied().collect();
    assert_eq!(all.len(), 100);
    assert_eq!(
        train_test_split(100, 0.2, 3).unwrap(),
        (train.clone(), test.clone())
    );
    assert_ne!(train_test_split(100, 0.2, 4).unwrap().1, test);
    assert_eq!(train_test_split(10, 0.01, 0).unwrap().1.len(), 1); // ⌈0.1⌉
    assert_eq!(train_test_split(10, 0.0, 0).unwrap().1.len(), 0);
    assert_eq!(train_test_split(10, 1.0, 0).unwrap().0.len(), 0);
    assert_eq!(train_test_split(0, 0.5, 0).unwrap(), (vec![], vec![]));
    for bad in [-0.1, 1.5, f64::NAN] {
        assert_eq!(
            train_test_split(10, bad, 0).unwrap_err().kind(),
            ErrorKind::InvalidOption
        );
    }
}

#[test]
fn select_rows_gathers_and_checks() {
    let x = Tensor::from_vec((0..12).map(|v| v as f64).collect(), [4, 3]).unwrap();
    let got = select_rows(&x, &[3, 3, 0]).unwrap();
    assert_eq!(got.dims(), &[3, 3]);
    assert_eq!(
        got.to_vec(),
        vec![9.0, 10.0, 11.0, 9.0, 10.0, 11.0, 0.0, 1.0, 2.0]
    );
    assert_eq!(select_rows(&x, &[]).unwrap().dims(), &[0, 3]);
    assert_eq!(
        select_rows(&x, &[4]).unwrap_err().kind(),
        ErrorKind::InvalidTarget
    );
    assert_eq!(
        select_rows(&x, &[usize::MAX]).unwrap_err().kind(),
        ErrorKind::InvalidTarget
    );
    let labels = Tensor::from_vec(vec![5i64, 6, 7, 8], [4]).unwrap();
    assert_eq!(select_rows(&labels, &[2, 1]).unwrap().to_vec(), vec![7, 6]);
    let s = Tensor::scalar(1.0f32);
    assert_eq!(
        select_rows(&s, &[0]).unwrap_err().kind(),
        ErrorKind::InvalidOption
    );
}
