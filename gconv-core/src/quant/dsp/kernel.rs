//! The DSP path's block kernel: `NP` output pixels of one output plane, summed over
//! every chunk of the band (one filter row of one pair of input planes).
//!
//! A *word* holds two int16 halves, `lo | hi << 16`. Input words pair two input
//! planes at one pixel (`x - zp_in` of input channels `2i` and `2i + 1`, same
//! orientation), weight words the matching two filter taps, so one `SMLAD`
//! (`acc += lo(x) * lo(w) + hi(x) * hi(w)`) does two multiply-adds. For block pixel
//! `j`, chunk `c` and tap `q`:
//!
//! ```text
//! acc[j] += smlad(x[c * pitch + j + q], w[c * K + q])      c in 0..chunks, q in 0..K
//! ```
//!
//! The chunks of a band lie `pitch` words apart in input and `K` words apart in the
//! weights, so the whole reduction is one linear walk. On Arm cores with the DSP
//! extension the `K = 3` blocks of 2, 3 and 4 pixels are `asm!` (`arm.rs`); this
//! portable form computes the same integers (exact sums, wrapping like `SMLAD`) and
//! is what the host tests and Miri run.

/// `acc + lo(x) * lo(w) + hi(x) * hi(w)` with the halves sign-extended, wrapping on
/// overflow like the Cortex-M `SMLAD` instruction.
#[inline(always)]
pub(crate) fn smlad(acc: i32, x: i32, w: i32) -> i32 {
    let (xl, xh) = (i32::from(x as i16), x >> 16);
    let (wl, wh) = (i32::from(w as i16), w >> 16);
    acc.wrapping_add(xl * wl).wrapping_add(xh * wh)
}

/// Packs two int16 values into a word, `lo | hi << 16`.
#[inline(always)]
pub(crate) const fn pack(lo: i32, hi: i32) -> i32 {
    ((lo as u32 & 0xFFFF) | ((hi as u32) << 16)) as i32
}

/// The portable block kernel (module docs) for `NP` pixels from `bias`: the
/// accumulators of the block whose first input word is `x[0]`, from the weight words
/// `w` (`chunks * k` words). Chunks whose words fall outside `x` or `w` are skipped;
/// the driver sizes both so that none does.
#[inline]
pub(crate) fn block<const NP: usize>(
    x: &[i32],
    pitch: usize,
    w: &[i32],
    k: usize,
    chunks: usize,
    bias: i32,
) -> [i32; NP] {
    let mut acc = [bias; NP];
    for c in 0..chunks {
        let (Some(xs), Some(ws)) = (
            x.get(c * pitch..).and_then(|r| r.get(..NP + k - 1)),
            w.get(c * k..).and_then(|r| r.get(..k)),
        ) else {
            debug_assert!(false, "chunk {c} outside the band or the filter");
            continue;
        };
        for (q, &wq) in ws.iter().enumerate() {
            for (a, &xv) in acc.iter_mut().zip(xs.iter().skip(q)) {
                *a = smlad(*a, xv, wq);
            }
        }
    }
    acc
}

/// Runs the blocks of one output row: `threes` blocks of 3 pixels, then one of
/// `last` (0, 2 or 4) pixels, from `x_row` (the row's first input word), writing
/// the accumulators of pixel `j` to `out[j]` (`out` holds at least
/// `3 * threes + last` words).
#[inline]
#[allow(clippy::too_many_arguments)]
pub(crate) fn row(
    x_row: &[i32],
    pitch: usize,
    w: &[i32],
    k: usize,
    chunks: usize,
    (threes, last): (usize, usize),
    bias: i32,
    out: &mut [i32],
) {
    let mut put = |j: usize, acc: &[i32]| {
        for (d, &v) in out.iter_mut().skip(j).zip(acc) {
            *d = v;
        }
    };
    for b in 0..threes {
        let j = 3 * b;
        put(
            j,
            &block::<3>(x_row.get(j..).unwrap_or(&[]), pitch, w, k, chunks, bias),
        );
    }
    let j = 3 * threes;
    let x = x_row.get(j..).unwrap_or(&[]);
    match last {
        2 => put(j, &block::<2>(x, pitch, w, k, chunks, bias)),
        4 => put(j, &block::<4>(x, pitch, w, k, chunks, bias)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smlad_is_two_signed_products() {
        let x = pack(-255, 200);
        let w = pack(127, -127);
        assert_eq!(smlad(5, x, w), 5 + (-255 * 127) + (200 * -127));
        assert_eq!(smlad(i32::MAX, pack(1, 0), pack(1, 0)), i32::MIN);
        // Halves are sign-extended independently.
        assert_eq!(smlad(0, pack(-1, -1), pack(-1, 1)), 1 - 1);
    }

    #[test]
    fn block_walks_chunks_and_taps() {
        // Two chunks, K = 2, 3 pixels, pitch 5: compare with the formula term by term.
        let x: [i32; 10] = core::array::from_fn(|i| pack(i as i32 - 4, 2 * i as i32));
        let w: [i32; 4] = [pack(1, -1), pack(3, 2), pack(-2, 5), pack(7, 1)];
        let acc = block::<3>(&x, 5, &w, 2, 2, 10);
        let mut want = [10i32; 3];
        for c in 0..2 {
            for q in 0..2 {
                for (j, a) in want.iter_mut().enumerate() {
                    let xv = x[c * 5 + j + q];
                    let wv = w[c * 2 + q];
                    *a += (xv as i16 as i32) * (wv as i16 as i32) + (xv >> 16) * (wv >> 16);
                }
            }
        }
        assert_eq!(acc, want);
    }
}
