//! Every entry point that takes outside data, as a function of raw bytes.
//!
//! Each harness reads structure out of the bytes (shapes, option values, op
//! names, a checkpoint's own bytes), calls the public API, and returns
//! normally whatever it gets back: an `Ok` or a typed error. A panic or an
//! abort is the bug. Two drivers run the same harnesses: the `cargo fuzz`
//! targets in `fuzz/` (coverage-guided, under AddressSanitizer on nightly) and
//! `tests/doors.rs` (proptest, a bounded number of cases in `cargo test`).
//!
//! The harnesses cap what they ask for (a few thousand elements), except where
//! the size itself is the point (`tensor_shapes` asks for huge shapes, which
//! must be refused, not allocated).

use crate::losses::catalog::{self, Size, CATALOG};
use crate::losses::registry::{build, Call, Flavor, InputValue, OptValue};
use crate::nn::{checkpoint, Activation, Init, Mlp, ParamStore};
use crate::tensor::{Shape, Tensor};
use lossgraph_autodiff::Tape;

/// Reads values out of fuzz bytes; past the end it reads zeros.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }
    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    /// The next 8 bytes as a little-endian `u64`.
    pub fn u64(&mut self) -> u64 {
        (0..8).fold(0u64, |a, i| a | (u64::from(self.u8()) << (8 * i)))
    }
    /// A yes or no, from the low bit of the next byte.
    pub fn coin(&mut self) -> bool {
        self.u8() & 1 == 0
    }
    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.u8() as usize % n
        }
    }
    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    /// A real number drawn from magnitudes that break naive formulas: 0, ±1,
    /// tiny, huge, infinities, NaN, and plain values.
    pub fn real(&mut self) -> f64 {
        const EDGES: [f64; 12] = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            1e-30,
            -1e30,
            1e4,
            -1e4,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        match self.u8() % 4 {
            0 => self.pick(&EDGES),
            _ => (self.u8() as f64 - 128.0) / 16.0,
        }
    }
    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.pos.min(self.data.len())..]
    }
}

/// Dims from the bytes: up to 4, each small, zero, or huge (up to 2⁶³).
fn dims(r: &mut Reader<'_>) -> Vec<usize> {
    (0..r.below(5))
        .map(|_| match r.u8() % 4 {
            0 => 0,
            1 => 1usize << (r.u8() % 64),
            _ => r.below(6),
        })
        .collect()
}

/// Tensor constructors and shape-changing ops on shapes from the bytes.
/// Huge shapes must come back as `ShapeMismatch` or `OutOfMemory`.
pub fn tensor_shapes(data: &[u8]) {
    let mut r = Reader::new(data);
    let (a, b) = (Shape::from(dims(&mut r)), Shape::from(dims(&mut r)));
    // never allocate more than a small buffer for real: refuse big requests
    // through the checked count before calling an allocating constructor.
    // "Small" bounds the extent (zero dims counted as 1), not the element
    // count: [2^32, 0] holds nothing, but its sum over axis 1 is 2^32 zeros,
    // a 16 GiB buffer that the allocator grants and the loop then fills.
    let small = |s: &Shape| {
        s.dims()
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d.max(1)))
            .is_some_and(|n| n <= 4096)
    };
    let _ = Tensor::<f32>::from_vec(vec![0.0; r.below(64)], a.clone());
    let _ = Tensor::<f32>::from_vec(vec![], a.clone());
    let huge_ok = |n: usize| n >= 1 << 40; // refused before any page is touched
    for s in [&a, &b] {
        match s.checked_numel("doors") {
            Ok(n) if n <= 4096 || huge_ok(n) => {
                let _ = Tensor::<f64>::zeros(s.clone());
                let _ = Tensor::full(s.clone(), 1i64);
            }
            _ => {}
        }
    }
    if !(small(&a) && small(&b)) {
        return;
    }
    let (x, y) = (
        Tensor::<f32>::full(a.clone(), 0.5).unwrap_or_else(|_| Tensor::scalar(0.0)),
        Tensor::<f32>::full(b.clone(), 2.0).unwrap_or_else(|_| Tensor::scalar(0.0)),
    );
    let _ = x.add(&y).and_then(|z| z.sum_to_shape(x.shape()));
    let _ = x.reshape(b.clone());
    let _ = x.broadcast_to(&b);
    let _ = x.matmul(&y);
    let axis = r.below(5);
    let _ = x.sum(axis, r.coin());
    let _ = x.softmax();
    let _ = Tensor::concat(&[&x, &y], axis);
    let _ = Tensor::stack(&[&x, &x], axis);
    let _ = x.narrow(axis, r.below(4), r.below(4));
    let _ = x.permute(&[r.below(4), r.below(4)]);
    let idx = Tensor::from_vec(vec![r.u8() as i64 - 2, r.below(3) as i64], [2]);
    if let Ok(idx) = idx {
        let _ = x.index_select(axis, &idx);
        let _ = Tensor::<f32>::one_hot(&idx, r.below(5));
    }
}

/// A safetensors checkpoint from the bytes, loaded into a small model's
/// store: either as raw bytes, or as a real checkpoint with bytes flipped.
/// On error the store must be unchanged.
pub fn checkpoint_bytes(data: &[u8]) {
    let mut r = Reader::new(data);
    let mut params = ParamStore::<f32>::new();
    let Ok(_) = Mlp::new(
        &mut params,
        "m",
        &[3, 4, 2],
        Activation::Relu,
        Init::xavier_uniform(),
        0,
    ) else {
        return;
    };
    let bytes = if r.coin() {
        r.rest().to_vec()
    } else {
        let Ok(mut good) = checkpoint::to_bytes(&params) else {
            return;
        };
        for _ in 0..r.below(8) {
            let at = r.u64() as usize % good.len().max(1);
            if let Some(b) = good.get_mut(at) {
                *b = r.u8();
            }
        }
        good.truncate(good.len().saturating_sub(r.below(3) * r.below(64)));
        good
    };
    let before = checkpoint::to_bytes(&params).ok();
    if checkpoint::from_bytes(&bytes, &mut params).is_err() {
        assert_eq!(
            checkpoint::to_bytes(&params).ok(),
            before,
            "a failed load changed the store"
        );
    }
}

/// An option value from the bytes, of any type, valid or not.
fn option_value(r: &mut Reader<'_>) -> OptValue {
    match r.u8() % 5 {
        0 => OptValue::Num(r.real()),
        1 => OptValue::Bool(r.coin()),
        2 => OptValue::Str(
            r.pick(&[
                "mean",
                "sum",
                "none",
                "batchmean",
                "sigmoid",
                "hinge",
                "ipo",
                "",
                "x",
            ])
            .to_string(),
        ),
        3 => OptValue::List((0..r.below(4)).map(|_| r.real()).collect()),
        _ => {
            let n = r.below(6);
            let data = (0..n).map(|_| r.real()).collect();
            OptValue::Tensor(Tensor::from_vec(data, [n]).unwrap_or_else(|_| Tensor::scalar(0.0)))
        }
    }
}

/// A registry call from the bytes: any op of the catalog (or a misspelt
/// name), a valid sample of it, then options and inputs overwritten with
/// values of any type, shape and magnitude; built fused and naive, in f64
/// and f32, and backpropagated. Returns how many of the three builds were
/// accepted (and so ran forward and backward), so a driver can check that
/// its inputs reach the kernels and not only the validators.
pub fn registry_call(data: &[u8]) -> usize {
    let mut r = Reader::new(data);
    let i = r.below(CATALOG.len() + 1);
    let op = CATALOG.get(i).map_or("no_such_loss", |o| o.name);
    let families = catalog::option_families(op);
    let opts = families
        .get(r.below(families.len()))
        .cloned()
        .unwrap_or_default();
    // sizes up to 9 rows of 9: past the 8-wide vector loops, with tails
    let size = Size::new(r.below(10), r.below(10));
    let Some(mut call) = catalog::call(op, &opts, size, r.u64()) else {
        let bogus = Call {
            op: op.to_string(),
            ..Call::default()
        };
        let _ = build(&Tape::<f64>::new(), &bogus, Flavor::Fused);
        return 0;
    };
    // what to break: 0 nothing (a valid call), 1 values of any magnitude in
    // the sampled inputs' own shapes, 2 options, 3 input shapes and types
    match r.u8() % 4 {
        0 => {}
        1 => extreme_values(&mut r, &mut call),
        2 => any_options(&mut r, &mut call),
        _ => any_inputs(&mut r, &mut call),
    }
    usize::from(run_call::<f64>(&call, Flavor::Fused))
        + usize::from(run_call::<f32>(&call, Flavor::Fused))
        + usize::from(run_call::<f64>(&call, Flavor::Naive))
}

/// Overwrite a few elements of the real inputs with values from
/// [`Reader::real`] (0, ±1e-30, ±1e4, ±inf, NaN, ...), shapes unchanged.
fn extreme_values(r: &mut Reader<'_>, call: &mut Call) {
    for input in call.inputs.values_mut() {
        if let InputValue::Real(t) = input {
            let mut v = t.to_vec();
            for _ in 0..r.below(4) {
                let at = r.below(v.len());
                if let Some(x) = v.get_mut(at) {
                    *x = r.real();
                }
            }
            if let Ok(n) = Tensor::from_vec(v, t.shape().clone()) {
                *t = n;
            }
        }
    }
}

/// Set one to three options, by name from every op's vocabulary (and a
/// misspelt one), to values of any type.
fn any_options(r: &mut Reader<'_>, call: &mut Call) {
    const NAMES: [&str; 24] = [
        "reduction",
        "margin",
        "delta",
        "beta",
        "tau",
        "taus",
        "weight",
        "pos_weight",
        "ignore_index",
        "label_smoothing",
        "temperature",
        "alpha",
        "gamma",
        "eps",
        "p",
        "variant",
        "log_target",
        "full",
        "squared",
        "symmetric",
        "normalize",
        "per_row",
        "chunk",
        "bogus",
    ];
    for _ in 0..1 + r.below(3) {
        call.options
            .insert(r.pick(&NAMES).to_string(), option_value(r));
    }
}

/// Replace one or two inputs with tensors of any shape (up to 256 elements),
/// integer or real.
fn any_inputs(r: &mut Reader<'_>, call: &mut Call) {
    let inputs: Vec<String> = call.inputs.keys().cloned().collect();
    for _ in 0..1 + r.below(2) {
        let Some(name) = inputs.get(r.below(inputs.len())) else {
            break;
        };
        let d = dims(r);
        let shape = Shape::from(d.clone());
        if shape.checked_numel("doors").is_ok_and(|n| n <= 256) {
            let n = shape.numel();
            let v = if r.coin() {
                let ids = (0..n).map(|_| r.u8() as i64 - 100).collect();
                Tensor::from_vec(ids, d).map(InputValue::Int)
            } else {
                let xs = (0..n).map(|_| r.real()).collect();
                Tensor::from_vec(xs, d).map(InputValue::Real)
            };
            if let Ok(v) = v {
                call.inputs.insert(name.clone(), v);
            }
        }
    }
}

/// Build and backpropagate; whether the build was accepted.
fn run_call<T: crate::tensor::Float>(call: &Call, flavor: Flavor) -> bool {
    let tape = Tape::<T>::new();
    let Ok(b) = build(&tape, call, flavor) else {
        return false;
    };
    let _ = b.output.backward_with(b.output.value().ones_like());
    true
}

/// A conformance case file from the bytes, parsed and every case run: the
/// bytes as text, or a real case file with bytes flipped.
pub fn case_file(data: &[u8], sample: &str) {
    let mut r = Reader::new(data);
    let text = if r.coin() {
        String::from_utf8_lossy(r.rest()).into_owned()
    } else {
        let mut b = sample.as_bytes().to_vec();
        for _ in 0..1 + r.below(6) {
            let at = r.u64() as usize % b.len().max(1);
            if let Some(x) = b.get_mut(at) {
                *x = r.pick(b"0123456789-.,:[]{}\"e ");
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    };
    if let Ok(cases) = crate::losses::conformance::parse_file(&text) {
        for case in cases.iter().take(4) {
            for dtype in &case.dtypes {
                let _ = crate::losses::conformance::run_case(case, dtype);
            }
        }
    }
}

/// Op names and `plot`'s op forms (`^2`, `:KEY=V[,V...]`), valid and not.
const CLI_OPS: &[&str] = &[
    "mse",
    "huber",
    "cross_entropy",
    "bce_with_logits",
    "triplet",
    "info_nce",
    "dpo",
    "quantile",
    "kl_div",
    "sigmoid_focal",
    "hinge",
    "no_such_loss",
    "huber^2",
    "huber:delta=0.5,1,2",
    "quantile:taus=0.1,0.9",
    "dpo:variant=ipo,hinge",
    "sigmoid_focal:gamma=0,2:alpha=-1",
    "mse:",
    ":",
    "mse:delta=1",
    "huber:delta=-1",
    "huber:delta=",
    "huber:=1",
];
/// Numbers on and past the edges of what the numeric flags take.
const CLI_NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "-1",
    "401",
    "100000",
    "100001",
    "100000000000",
    "18446744073709551616",
    "nan",
    "1e308",
    "x",
];
/// `LO,HI` ranges, valid and not.
const CLI_RANGES: &[&str] = &[
    "-5,5",
    "5,-5",
    "0,0",
    "nan,1",
    "-1e308,1e308",
    "0.1,0.9",
    "1,2,3",
    "-inf,0",
    ",",
    "",
];
/// Each command's flags and the values each takes (none: a switch).
const CLI_FLAGS: &[(&str, &str, &[&str])] = &[
    (
        "plot",
        "--opt",
        &[
            "delta=1",
            "delta=0.5,2",
            "gamma=0,1,2,3,4,5",
            "margin=1e308",
            "beta=nan",
            "=1",
            "x",
        ],
    ),
    (
        "plot",
        "--against",
        &["residual", "pred", "logit", "margin", "p_t", "x"],
    ),
    (
        "plot",
        "--preset",
        &[
            "regression",
            "focal",
            "margins",
            "temperature",
            "reductions",
            "x",
        ],
    ),
    ("plot", "--range", CLI_RANGES),
    ("plot", "--loss-range", CLI_RANGES),
    ("plot", "--grad-range", CLI_RANGES),
    ("plot", "--points", CLI_NUMBERS),
    ("plot", "--layout", &["stacked", "side", "x"]),
    (
        "plot",
        "--size",
        &["200x200", "300x250", "0x0", "8001x10", "x", "199x200"],
    ),
    ("plot", "--title", &["", "a title", "\u{1F600}"]),
    (
        "plot",
        "--note",
        &[
            "",
            "a note",
            "a much longer note that the legend must wrap or cut",
        ],
    ),
    ("gradcheck", "--all", &[]),
    ("gradcheck", "--dtype", &["f32", "f64", "f16"]),
    ("gradcheck", "--seed", CLI_NUMBERS),
    ("bench", "--quick", &[]),
    ("bench", "--op", CLI_OPS),
    ("bench", "--reps", CLI_NUMBERS),
    ("bench", "--retain-heap", &[]),
    ("bench", "--huge-pages", &[]),
    ("bench", "--warm-each", &[]),
    ("bench", "--json", &["rows.json"]),
];

/// The command line from the bytes: a command, then its own flags with
/// values from their lists above ([`CLI_FLAGS`]: on and past each flag's
/// edges), op names as positional arguments, and now and then a stray word
/// or a number of any magnitude; parsed by the CLI's own parser. What parses
/// is run when it is cheap and writes nothing outside a scratch folder:
/// `plot` (its `--out` set to a file there) and `gradcheck` of at most two
/// ops; `bench` and `conformance` are parsed only (a bench run takes seconds
/// to minutes; the case-file door covers what `conformance` reads). Returns
/// the command that parsed, if any, and whether it ran and succeeded.
pub fn cli_args(data: &[u8]) -> Option<(crate::cli::CommandKind, bool)> {
    use crate::cli::{run, Cli, CommandKind};
    use clap::Parser;
    let mut r = Reader::new(data);
    let command = r.pick(&[
        "plot",
        "plot",
        "plot",
        "gradcheck",
        "bench",
        "conformance",
        "help",
    ]);
    let flags: Vec<_> = CLI_FLAGS.iter().filter(|f| f.0 == command).collect();
    let mut args = vec!["lossgraph".to_string(), command.to_string()];
    for _ in 0..r.below(6) {
        match r.u8() % 16 {
            0 => args.push(format!("{}", r.real())),
            1 => args.push(
                r.pick(&["--help", "--version", "-h", "--no-such-flag", ""])
                    .into(),
            ),
            2..=7 => args.push(r.pick(CLI_OPS).into()),
            _ if flags.is_empty() => args.push(r.pick(CLI_OPS).into()),
            _ => {
                let (_, flag, values) = *flags[r.below(flags.len())];
                args.push(flag.into());
                if !values.is_empty() {
                    args.push(r.pick(values).into());
                }
            }
        }
    }
    // a folder of its own per call: drivers run harnesses on several
    // threads of one process at once, and each call removes its folder
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch =
        std::env::temp_dir().join(format!("lossgraph-cli-door-{}-{call}", std::process::id()));
    if command == "plot" {
        let ext = r.pick(&["svg", "png", "txt"]);
        args.push("--out".into());
        args.push(scratch.join(format!("door.{ext}")).display().to_string());
    }
    let cli = Cli::try_parse_from(&args).ok()?;
    let kind = cli.kind();
    let cheap = match kind {
        CommandKind::Plot => true,
        CommandKind::Gradcheck => !args.iter().any(|a| a == "--all") && args.len() <= 4,
        CommandKind::Bench | CommandKind::Conformance => false,
    };
    let mut succeeded = false;
    if cheap && std::fs::create_dir_all(&scratch).is_ok() {
        let code = run(cli);
        let _ = std::fs::remove_dir_all(&scratch);
        succeeded = code == crate::cli::SUCCESS;
    }
    Some((kind, succeeded))
}
