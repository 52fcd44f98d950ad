//! Multi-threaded forward pass, bitwise identical to the single-threaded one.
//!
//! A layer on the fast path (the default wherever it applies) runs on a rayon pool of
//! the requested size, split by images or by output-plane tiles as described in
//! [`crate::fast`]; without the `rayon` feature it runs on the calling thread. A layer
//! on the direct or the blocked path is split on `std::thread::scope` as follows.
//!
//! # How the direct path is split
//!
//! The output `(N, C_out, |G|, H', W')` is a sequence of `N * C_out` blocks, one per
//! (image, output G-channel) pair, in C order: block `u = n * C_out + o` holds the
//! `|G|` planes `y[n][o]` and starts at `u * |G| * H' * W'`. [`forward_into_threads`]
//! cuts this sequence into `T` contiguous runs of nearly equal length (run `t` is
//! blocks `t * U / T .. (t + 1) * U / T`, `U = N * C_out`), so every thread owns one
//! contiguous part of the output:
//!
//! * when `N` is a multiple of `T`, every run is a batch of whole images (the input,
//!   the output and the kernel call are the batch slices);
//! * otherwise a run may start or end inside an image; that image's part is computed
//!   for the output G-channels `o0..o1` alone, with the rows `o0*|G| .. o1*|G|` of the
//!   expanded bank `(C_out*|G|, C_in*nti, K, K)` (contiguous), the bias values
//!   `b[o0..o1]` and a [`ConvShape`] with `out_channels = o1 - o0` and `batch = 1`.
//!
//! Each output value is computed by the same core kernel
//! ([`lifting_conv_expanded`] or [`group_conv_expanded`]) from the same input, bank
//! rows and bias, in the same order of operations as in one call over the whole
//! tensor (the kernel computes every output plane on its own), so the result does
//! not depend on the thread count, bit for bit.
//!
//! The blocked path ([`gconv_core::blocked`]) is split the same way, with the raw
//! weight rows `o0..o1` of `(C_out, C_in, nti, K, K)` (contiguous) instead of bank
//! rows: it computes each output G-channel from its own packed blocks, so its result
//! does not depend on the thread count either.

use std::thread;

use gconv_core::conv::{group::group_conv_expanded, lifting::lifting_conv_expanded};
use gconv_core::plan::Algorithm;
use gconv_core::{ConvGeometry, ConvShape, Domain, Group, blocked};

use crate::any::AnyConv;
use crate::error::Error;
use crate::layer::{GConv, InputDomain};
use crate::tensor::Tensor;

/// Forward pass of `layer` on `x` into `out` (layout `(N, C_out, |G|, H', W')`, exactly
/// [`output_len`](ConvGeometry::output_len) values) on up to `threads` threads; see
/// the [module docs](self) for the split. Returns the number of threads that had
/// work, at least 1 and at most `threads`:
///
/// * fast path: `min(threads, N)` pieces of whole images when `N >= threads`, else
///   the number of tile ranges each image's `C_out*|G|/4` output-plane tiles were cut
///   into. The pool is built on the first call with a given count and reused.
/// * direct and blocked paths: `min(threads, N * C_out)` (there are only `N * C_out` blocks to
///   share out); `T - 1` scoped threads are spawned on every call (their start-up cost
///   is part of the call's time) and the calling thread takes the first run.
///
/// With one thread this is [`AnyConv::forward_into`] on the calling thread.
///
/// The output is bitwise identical to [`AnyConv::forward_into`] for every thread
/// count.
///
/// # Errors
/// [`Error::Usage`] for `threads == 0`; otherwise exactly the errors of
/// [`AnyConv::forward_into`] (wrong input shape, kernel larger than the padded input,
/// wrong output length), reported before anything is written.
pub fn forward_into_threads(
    layer: &AnyConv,
    x: &Tensor,
    out: &mut [f32],
    threads: usize,
) -> Result<usize, Error> {
    match layer {
        AnyConv::Z2C4(l) => forward_split(l, x, out, threads),
        AnyConv::C4C4(l) => forward_split(l, x, out, threads),
        AnyConv::Z2D4(l) => forward_split(l, x, out, threads),
        AnyConv::D4D4(l) => forward_split(l, x, out, threads),
    }
}

/// One kernel call's share of a run: images `n0..n0 + images` and output G-channels
/// `o0..o1` (`images > 1` only for whole images, `o0 = 0`, `o1 = C_out`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    n0: usize,
    images: usize,
    o0: usize,
    o1: usize,
}

/// Splits the block run `u0..u1` (blocks `u = n * c_out + o`) into the fewest pieces
/// the kernel can compute: a tail of one image's G-channels, whole images, a head of
/// another image's G-channels (each possibly absent), in order.
fn pieces(u0: usize, u1: usize, c_out: usize) -> impl Iterator<Item = Piece> {
    let mut u = u0;
    core::iter::from_fn(move || {
        if u >= u1 {
            return None;
        }
        let (n, o) = (u / c_out, u % c_out);
        let whole = (u1 - u) / c_out;
        let piece = if o == 0 && whole > 0 {
            Piece {
                n0: n,
                images: whole,
                o0: 0,
                o1: c_out,
            }
        } else {
            Piece {
                n0: n,
                images: 1,
                o0: o,
                o1: c_out.min(o + (u1 - u)),
            }
        };
        u += piece.images * (piece.o1 - piece.o0);
        Some(piece)
    })
}

/// The split of [`forward_into_threads`], once for every pair.
fn forward_split<G: Group, D: InputDomain>(
    layer: &GConv<G, D>,
    x: &Tensor,
    out: &mut [f32],
    threads: usize,
) -> Result<usize, Error> {
    if threads == 0 {
        return Err(Error::Usage(
            "the thread count must be at least 1".to_string(),
        ));
    }
    let geo = layer.geometry(x.shape())?;
    let algorithm = layer.algorithm(x.shape())?;
    if matches!(algorithm, Algorithm::Fast | Algorithm::Fourier) {
        return forward_fast(layer, x, out, threads);
    }
    let blocks = geo.batch() * geo.out_channels();
    let threads = threads.min(blocks).max(1);
    if threads == 1 || out.len() != geo.output_len() {
        // One thread, or a wrong output length: the plain forward pass reports its
        // own `BufferLength` error, word for word.
        layer.forward_into(x, out)?;
        return Ok(1);
    }

    let block_len = geo.nto() * geo.out_height() * geo.out_width();
    let mut runs = Vec::with_capacity(threads);
    let mut rest = out;
    for t in 0..threads {
        let (u0, u1) = (t * blocks / threads, (t + 1) * blocks / threads);
        let (run, tail) = rest.split_at_mut((u1 - u0) * block_len);
        runs.push((u0, u1, run));
        rest = tail;
    }

    let results: Vec<Result<(), gconv_core::Error>> = thread::scope(|scope| {
        let mut runs = runs.into_iter();
        let first = runs.next();
        let handles: Vec<_> = runs
            .map(|(u0, u1, run)| {
                scope.spawn(move || run_blocks(layer, algorithm, &geo, x, u0, u1, run))
            })
            .collect();
        let mut results = Vec::with_capacity(threads);
        if let Some((u0, u1, run)) = first {
            results.push(run_blocks(layer, algorithm, &geo, x, u0, u1, run));
        }
        for handle in handles {
            match handle.join() {
                Ok(result) => results.push(result),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    });
    for result in results {
        result.map_err(|source| Error::Core {
            layer: format!("{} conv", GConv::<G, D>::name()),
            source,
        })?;
    }
    Ok(threads)
}

/// The fast path on a rayon pool of `threads` threads (kept for later calls with the
/// same count), or on the calling thread without the `rayon` feature.
fn forward_fast<G: Group, D: InputDomain>(
    layer: &GConv<G, D>,
    x: &Tensor,
    out: &mut [f32],
    threads: usize,
) -> Result<usize, Error> {
    #[cfg(feature = "rayon")]
    {
        if threads > 1 {
            let pool = pool(threads)?;
            return pool.install(|| layer.forward_into_par(x, out));
        }
    }
    let _ = threads;
    layer.forward_into(x, out).map(|()| 1)
}

/// A rayon pool of exactly `threads` threads, built on first use and kept.
#[cfg(feature = "rayon")]
fn pool(threads: usize) -> Result<std::sync::Arc<rayon::ThreadPool>, Error> {
    use std::sync::{Arc, Mutex};
    static POOLS: Mutex<Vec<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(Vec::new());
    let mut pools = POOLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, p)) = pools.iter().find(|(n, _)| *n == threads) {
        return Ok(Arc::clone(p));
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {threads} threads: {e}")))?;
    let p = Arc::new(p);
    pools.push((threads, Arc::clone(&p)));
    Ok(p)
}

/// Computes the blocks `u0..u1` into `run` (their part of the output, in order) on
/// the direct or the blocked path (`algorithm`).
fn run_blocks<G: Group, D: InputDomain>(
    layer: &GConv<G, D>,
    algorithm: Algorithm,
    geo: &ConvGeometry,
    x: &Tensor,
    u0: usize,
    u1: usize,
    run: &mut [f32],
) -> Result<(), gconv_core::Error> {
    let c_out = geo.out_channels();
    let image_len = geo.in_channels() * geo.nti() * geo.height() * geo.width();
    let block_len = geo.nto() * geo.out_height() * geo.out_width();
    let bank_block = geo.nto() * geo.terms_per_output();
    let raw_block = geo.terms_per_output();
    let (input, bank, bias) = (x.data(), layer.bank(), layer.bias());
    let weight = layer.weight().data();
    let mut scratch = match algorithm {
        Algorithm::Blocked => vec![0.0; blocked::scratch_len_for(geo)],
        _ => Vec::new(),
    };
    let mut rest = run;
    for p in pieces(u0, u1, c_out) {
        let (output, tail) = rest.split_at_mut(p.images * (p.o1 - p.o0) * block_len);
        rest = tail;
        let shape = ConvShape {
            batch: p.images,
            in_channels: geo.in_channels(),
            out_channels: p.o1 - p.o0,
            height: geo.height(),
            width: geo.width(),
            kernel: geo.kernel(),
            stride: geo.stride(),
            padding: layer.padding(),
        };
        let input = &input[p.n0 * image_len..(p.n0 + p.images) * image_len];
        let bias = bias.map(|b| &b[p.o0..p.o1]);
        if algorithm == Algorithm::Blocked {
            let weight = &weight[p.o0 * raw_block..p.o1 * raw_block];
            blocked::forward::<G>(D::DOMAIN, &shape, input, weight, bias, output, &mut scratch)?;
            continue;
        }
        let bank = &bank[p.o0 * bank_block..p.o1 * bank_block];
        match D::DOMAIN {
            Domain::Z2 => lifting_conv_expanded::<G>(&shape, input, bank, bias, output)?,
            Domain::Group => group_conv_expanded::<G>(&shape, input, bank, bias, output)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::any::Pair;
    use gconv_core::Padding;

    const PAIRS: [Pair; 4] = [Pair::Z2C4, Pair::C4C4, Pair::Z2D4, Pair::D4D4];

    /// A layer with a non-zero bias (the seeded constructor's bias is zero).
    fn layer(pair: Pair, c_in: usize, c_out: usize, padding: Padding, stride: usize) -> AnyConv {
        let seeded = AnyConv::new(pair, c_in, c_out, 3, stride, padding, 11).unwrap();
        let bias = (0..c_out).map(|o| 0.25 * o as f32 - 0.3).collect();
        AnyConv::from_weights(pair, seeded.weight().clone(), Some(bias), stride, padding).unwrap()
    }

    fn input(pair: Pair, batch: usize, c_in: usize, size: usize) -> Tensor {
        let mut shape = vec![batch, c_in, pair.from().planes(), size, size];
        if pair.from().planes() == 1 {
            shape.remove(2);
        }
        Tensor::from_fn(shape, |i| ((i * 7919) % 23) as f32 / 7.0 - 1.5)
    }

    #[test]
    fn every_thread_count_is_bitwise_identical_to_one_thread() {
        for pair in PAIRS {
            for (padding, stride, path) in [
                (Padding::Same, 1, crate::ConvPath::Fast),
                (Padding::Valid, 2, crate::ConvPath::Fast),
                (Padding::Same, 1, crate::ConvPath::Direct),
                (Padding::Valid, 2, crate::ConvPath::Direct),
            ] {
                let mut l = layer(pair, 3, 5, padding, stride);
                l.set_path(path);
                for batch in [1, 3] {
                    let x = input(pair, batch, 3, 7);
                    let expected = l.forward(&x).unwrap();
                    assert!(expected.data().iter().any(|v| *v != 0.0));
                    for threads in 1..=4 {
                        let mut out = vec![f32::NAN; expected.len()];
                        let used = forward_into_threads(&l, &x, &mut out, threads).unwrap();
                        assert!(used >= 1 && used <= threads, "{pair:?} batch {batch}");
                        let same = out
                            .iter()
                            .zip(expected.data())
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{pair:?} {padding:?} batch {batch} threads {threads}");
                    }
                }
            }
        }
    }

    #[test]
    fn direct_path_threads_are_capped_by_the_number_of_blocks() {
        let mut l = layer(Pair::C4C4, 2, 3, Padding::Valid, 1);
        l.set_path(crate::ConvPath::Direct);
        let x = input(Pair::C4C4, 1, 2, 5);
        let expected = l.forward(&x).unwrap();
        let mut out = vec![0.0; expected.len()];
        assert_eq!(forward_into_threads(&l, &x, &mut out, 8).unwrap(), 3);
        assert_eq!(out, expected.data());
        let empty = input(Pair::C4C4, 0, 2, 5);
        assert_eq!(forward_into_threads(&l, &empty, &mut [], 4).unwrap(), 1);
    }

    #[test]
    fn fast_path_threads_are_capped_by_images_or_tiles() {
        // 3 output G-channels on C4: 12 planes, 3 tiles of 4.
        let mut l = layer(Pair::C4C4, 2, 3, Padding::Valid, 1);
        l.set_path(crate::ConvPath::Fast);
        let x = input(Pair::C4C4, 1, 2, 5);
        let expected = l.forward(&x).unwrap();
        let mut out = vec![0.0; expected.len()];
        assert_eq!(forward_into_threads(&l, &x, &mut out, 8).unwrap(), 3);
        assert_eq!(out, expected.data());
        assert_eq!(forward_into_threads(&l, &x, &mut out, 2).unwrap(), 2);
        assert_eq!(out, expected.data());
        let x5 = input(Pair::C4C4, 5, 2, 5);
        let expected = l.forward(&x5).unwrap();
        let mut out = vec![0.0; expected.len()];
        // 5 images on 2 threads: runs of 3 and 2 images.
        assert_eq!(forward_into_threads(&l, &x5, &mut out, 2).unwrap(), 2);
        assert_eq!(out, expected.data());
        let empty = input(Pair::C4C4, 0, 2, 5);
        assert_eq!(forward_into_threads(&l, &empty, &mut [], 4).unwrap(), 1);
    }

    #[test]
    fn runs_split_into_tails_whole_images_and_heads() {
        let p = |n0, images, o0, o1| Piece { n0, images, o0, o1 };
        // 3 images of 3 G-channels, 2 runs: blocks 0..4 and 4..9.
        assert_eq!(
            pieces(0, 4, 3).collect::<Vec<_>>(),
            [p(0, 1, 0, 3), p(1, 1, 0, 1)]
        );
        assert_eq!(
            pieces(4, 9, 3).collect::<Vec<_>>(),
            [p(1, 1, 1, 3), p(2, 1, 0, 3)]
        );
        assert_eq!(pieces(0, 6, 3).collect::<Vec<_>>(), [p(0, 2, 0, 3)]);
        assert_eq!(
            pieces(2, 10, 3).collect::<Vec<_>>(),
            [p(0, 1, 2, 3), p(1, 2, 0, 3), p(3, 1, 0, 1)]
        );
        assert_eq!(pieces(1, 2, 5).collect::<Vec<_>>(), [p(0, 1, 1, 2)]);
        assert_eq!(pieces(3, 3, 5).count(), 0);
    }

    #[test]
    fn errors_are_those_of_the_plain_forward() {
        let l = layer(Pair::Z2D4, 2, 3, Padding::Valid, 1);
        let x = input(Pair::Z2D4, 2, 2, 5);
        let len = l.geometry(x.shape()).unwrap().output_len();
        let mut out = vec![0.0; len];
        let zero = forward_into_threads(&l, &x, &mut out, 0).unwrap_err();
        assert!(matches!(zero, Error::Usage(_)), "{zero}");
        for threads in [1, 3] {
            let mut short = vec![7.0; len - 1];
            let err = forward_into_threads(&l, &x, &mut short, threads).unwrap_err();
            assert_eq!(err, l.forward_into(&x, &mut short).unwrap_err());
            assert!(short.iter().all(|v| *v == 7.0));
            let wrong = input(Pair::Z2D4, 2, 3, 5);
            let err = forward_into_threads(&l, &wrong, &mut out, threads).unwrap_err();
            assert_eq!(err, l.forward_into(&wrong, &mut out).unwrap_err());
            let small = input(Pair::Z2D4, 2, 2, 2);
            let err = forward_into_threads(&l, &small, &mut out, threads).unwrap_err();
            assert!(err.to_string().contains("larger"), "{err}");
        }
    }
}
