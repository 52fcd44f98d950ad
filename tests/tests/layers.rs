//! gconv-core's non-convolution blocks against direct computations in f64, and their
//! error values.

mod common;

use common::{random_vec, rng, tolerance};
use gconv_core::layers::{Reduce, channel_affine, dense, global_avg_pool, group_pool, relu};
use gconv_core::{Buffer, Error};

#[test]
fn group_pool_max_and_mean() {
    let (items, nt, plane) = (3, 8, 10);
    let x = random_vec(&mut rng(1), items * nt * plane);
    let mut y = vec![f32::NAN; items * plane];
    group_pool(Reduce::Max, items, nt, plane, &x, &mut y).unwrap();
    for i in 0..items {
        for p in 0..plane {
            let want = (0..nt)
                .map(|t| x[(i * nt + t) * plane + p])
                .fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(y[i * plane + p], want);
        }
    }
    group_pool(Reduce::Mean, items, nt, plane, &x, &mut y).unwrap();
    for i in 0..items {
        for p in 0..plane {
            let values = (0..nt).map(|t| f64::from(x[(i * nt + t) * plane + p]));
            let want = values.clone().sum::<f64>() / nt as f64;
            // An f32 sum of `nt` values, then one division: within
            // `(nt + 1) eps` of the mean of the absolute values.
            let mean_abs = values.map(f64::abs).sum::<f64>() / nt as f64;
            let tol = (nt + 1) as f64 * f64::from(f32::EPSILON) * mean_abs;
            assert!((f64::from(y[i * plane + p]) - want).abs() <= tol);
        }
    }
    assert_eq!(
        group_pool(Reduce::Max, items, nt, plane, &x[1..], &mut y),
        Err(Error::BufferLength {
            buffer: Buffer::Input,
            expected: 240,
            found: 239
        })
    );
}

#[test]
fn channel_affine_is_per_g_channel() {
    let (n, c, per) = (2, 3, 4 * 5);
    let x = random_vec(&mut rng(2), n * c * per);
    let (scale, shift) = ([0.5, -2.0, 3.0], [1.0, 0.0, -1.0]);
    let mut y = x.clone();
    channel_affine(c, per, &scale, &shift, &mut y).unwrap();
    for (i, (&a, &b)) in x.iter().zip(&y).enumerate() {
        let ch = (i / per) % c;
        assert_eq!(b, scale[ch] * a + shift[ch]);
    }
    assert!(channel_affine(c, per, &scale[..2], &shift, &mut y).is_err());
    assert!(channel_affine(c, per, &scale, &shift, &mut y[1..]).is_err());
}

#[test]
fn relu_gap_and_dense() {
    let mut v = vec![-1.0, 0.0, 2.0, f32::NAN];
    relu(&mut v);
    assert_eq!(&v[..3], &[0.0, 0.0, 2.0]);
    assert!(v[3].is_nan());

    let x = random_vec(&mut rng(3), 4 * 9);
    let mut g = vec![0.0; 4];
    global_avg_pool(4, 9, &x, &mut g).unwrap();
    for p in 0..4 {
        let values = x[p * 9..(p + 1) * 9].iter().map(|&v| f64::from(v));
        let want = values.clone().sum::<f64>() / 9.0;
        // As the group mean: `(n + 1) eps` of the mean of the absolute values.
        let mean_abs = values.map(f64::abs).sum::<f64>() / 9.0;
        let tol = 10.0 * f64::from(f32::EPSILON) * mean_abs;
        assert!((f64::from(g[p]) - want).abs() <= tol);
    }
    assert!(global_avg_pool(4, 0, &[], &mut g).is_err());

    let (batch, fi, fo) = (3, 5, 4);
    let xin = random_vec(&mut rng(4), batch * fi);
    let w = random_vec(&mut rng(5), fo * fi);
    let b = random_vec(&mut rng(6), fo);
    let mut y = vec![f32::NAN; batch * fo];
    dense(batch, fi, fo, &xin, &w, Some(&b), &mut y).unwrap();
    for n in 0..batch {
        for j in 0..fo {
            let products = (0..fi).map(|i| f64::from(w[j * fi + i]) * f64::from(xin[n * fi + i]));
            let want: f64 = f64::from(b[j]) + products.clone().sum::<f64>();
            // The convolutions' rule: `fi` products and the bias.
            let abs_sum = products.map(f64::abs).sum::<f64>();
            let tol = tolerance(fi, abs_sum, f64::from(b[j]));
            assert!((f64::from(y[n * fo + j]) - want).abs() <= tol);
        }
    }
    assert_eq!(
        dense(batch, fi, fo, &xin, &w[1..], None, &mut y),
        Err(Error::BufferLength {
            buffer: Buffer::Weight,
            expected: 20,
            found: 19
        })
    );
}
