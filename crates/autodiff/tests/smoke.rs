use lossgraph_autodiff::{gradcheck, GradcheckOptions, Tape};
use lossgraph_tensor::Tensor;

#[test]
fn mlp_like_graph_passes_gradcheck() {
    let x = Tensor::<f64>::randn([4, 3], 0.0, 1.0, 1).unwrap();
    let w = Tensor::<f64>::randn([5, 3], 0.0, 1.0, 2).unwrap();
    let b = Tensor::<f64>::randn([5], 0.0, 1.0, 3).unwrap();
    let r = gradcheck(
        |v| {
            v[0].matmul_nt(&v[1])?
                .add(&v[2])?
                .tanh()?
                .log_softmax()?
                .sum(1, false)
        },
        &[x, w, b],
        &GradcheckOptions::default(),
    )
    .unwrap();
    assert!(r.passed(), "{r:?}");
}

#[test]
fn fan_out_accumulates() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![3.0], [1]).unwrap());
    let y = x.mul(&x).unwrap().add(&x).unwrap().sum_all().unwrap();
    let g = y.backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec(), vec![7.0]);
}
