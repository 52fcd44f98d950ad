//! The blocked path's row tiles for `K = 3` on Arm cores with a single-precision
//! FPU of 32 registers (Cortex-M4F, M7, M33): one `asm!` loop per tile width, so
//! that each filter row's inputs and weights are fetched with one `VLDM` each.
//!
//! Per input plane and filter row, a tile of `MR = 2` planes by 8 pixels runs
//!
//! ```text
//! vldmia x, {s16-s25}     the 10 inputs the row's 3 taps read
//! vldmia w!, {s26-s31}    the row's 3 taps x 2 planes of weights
//! 48 x vmla.f32          acc[m][j] += x[j + q] * w[q][m], accumulators s0-s15
//! ```
//!
//! 51 instructions per 48 multiply-adds (plus 3 per plane for the loop). `VMLA`
//! rounds the product before adding it, as the portable tiles do, so both compute
//! the same sums in the same order: the host's portable form and the device agree
//! bit for bit. The 4-pixel tile is the same with 8 accumulators (s0-s7), 6 inputs
//! (s8-s13) and 6 weights (s14-s19).
//!
//! Only the Arm build runs this code; its portable twin (`Strip::tile::<3, NR>`) is
//! what the host tests and Miri run. The firmware (`scripts/cortex-m4.sh`) checks
//! this kernel's outputs against the f64 reference.
#![allow(unsafe_code)]

use super::{OutBlock, Strip};
use crate::blocked::MR;

/// One filter row of the 8-pixel row tile: `acc[m][j] += x[j + q] * w[q][m]`.
macro_rules! row_k3_nr8 {
    () => {
        concat!(
            "vldmia {x}, {{s16-s25}}\n",
            "vldmia {w}!, {{s26-s31}}\n",
            "vmla.f32 s0, s16, s26; vmla.f32 s1, s17, s26; vmla.f32 s2, s18, s26; vmla.f32 s3, s19, s26\n",
            "vmla.f32 s4, s20, s26; vmla.f32 s5, s21, s26; vmla.f32 s6, s22, s26; vmla.f32 s7, s23, s26\n",
            "vmla.f32 s8, s16, s27; vmla.f32 s9, s17, s27; vmla.f32 s10, s18, s27; vmla.f32 s11, s19, s27\n",
            "vmla.f32 s12, s20, s27; vmla.f32 s13, s21, s27; vmla.f32 s14, s22, s27; vmla.f32 s15, s23, s27\n",
            "vmla.f32 s0, s17, s28; vmla.f32 s1, s18, s28; vmla.f32 s2, s19, s28; vmla.f32 s3, s20, s28\n",
            "vmla.f32 s4, s21, s28; vmla.f32 s5, s22, s28; vmla.f32 s6, s23, s28; vmla.f32 s7, s24, s28\n",
            "vmla.f32 s8, s17, s29; vmla.f32 s9, s18, s29; vmla.f32 s10, s19, s29; vmla.f32 s11, s20, s29\n",
            "vmla.f32 s12, s21, s29; vmla.f32 s13, s22, s29; vmla.f32 s14, s23, s29; vmla.f32 s15, s24, s29\n",
            "vmla.f32 s0, s18, s30; vmla.f32 s1, s19, s30; vmla.f32 s2, s20, s30; vmla.f32 s3, s21, s30\n",
            "vmla.f32 s4, s22, s30; vmla.f32 s5, s23, s30; vmla.f32 s6, s24, s30; vmla.f32 s7, s25, s30\n",
            "vmla.f32 s8, s18, s31; vmla.f32 s9, s19, s31; vmla.f32 s10, s20, s31; vmla.f32 s11, s21, s31\n",
            "vmla.f32 s12, s22, s31; vmla.f32 s13, s23, s31; vmla.f32 s14, s24, s31; vmla.f32 s15, s25, s31\n",
        )
    };
}

/// One filter row of the 4-pixel row tile.
macro_rules! row_k3_nr4 {
    () => {
        concat!(
            "vldmia {x}, {{s8-s13}}\n",
            "vldmia {w}!, {{s14-s19}}\n",
            "vmla.f32 s0, s8, s14; vmla.f32 s1, s9, s14; vmla.f32 s2, s10, s14; vmla.f32 s3, s11, s14\n",
            "vmla.f32 s4, s8, s15; vmla.f32 s5, s9, s15; vmla.f32 s6, s10, s15; vmla.f32 s7, s11, s15\n",
            "vmla.f32 s0, s9, s16; vmla.f32 s1, s10, s16; vmla.f32 s2, s11, s16; vmla.f32 s3, s12, s16\n",
            "vmla.f32 s4, s9, s17; vmla.f32 s5, s10, s17; vmla.f32 s6, s11, s17; vmla.f32 s7, s12, s17\n",
            "vmla.f32 s0, s10, s18; vmla.f32 s1, s11, s18; vmla.f32 s2, s12, s18; vmla.f32 s3, s13, s18\n",
            "vmla.f32 s4, s10, s19; vmla.f32 s5, s11, s19; vmla.f32 s6, s12, s19; vmla.f32 s7, s13, s19\n",
        )
    };
}

/// The 10 inputs down one input column, from `{t}` in steps of `{row}` bytes.
macro_rules! column_inputs {
    () => {
        concat!(
            "vldr s16, [{t}]\n",
            "add {t}, {t}, {row}; vldr s17, [{t}]\n",
            "add {t}, {t}, {row}; vldr s18, [{t}]\n",
            "add {t}, {t}, {row}; vldr s19, [{t}]\n",
            "add {t}, {t}, {row}; vldr s20, [{t}]\n",
            "add {t}, {t}, {row}; vldr s21, [{t}]\n",
            "add {t}, {t}, {row}; vldr s22, [{t}]\n",
            "add {t}, {t}, {row}; vldr s23, [{t}]\n",
            "add {t}, {t}, {row}; vldr s24, [{t}]\n",
            "add {t}, {t}, {row}; vldr s25, [{t}]\n",
        )
    };
}

/// The 3 taps x 2 planes of weights of filter column 0 (`{w}` points at it) and
/// the 48 multiply-adds `acc[m][j] += x[j + p] * w[p][m]`.
macro_rules! column_0_k3_nr8 {
    () => {
        concat!(
            "vldr s26, [{w}, #0]; vldr s27, [{w}, #4]\n",
            "vldr s28, [{w}, #24]; vldr s29, [{w}, #28]\n",
            "vldr s30, [{w}, #48]; vldr s31, [{w}, #52]\n",
            "vmla.f32 s0, s16, s26; vmla.f32 s1, s17, s26; vmla.f32 s2, s18, s26; vmla.f32 s3, s19, s26\n",
            "vmla.f32 s4, s20, s26; vmla.f32 s5, s21, s26; vmla.f32 s6, s22, s26; vmla.f32 s7, s23, s26\n",
            "vmla.f32 s8, s16, s27; vmla.f32 s9, s17, s27; vmla.f32 s10, s18, s27; vmla.f32 s11, s19, s27\n",
            "vmla.f32 s12, s20, s27; vmla.f32 s13, s21, s27; vmla.f32 s14, s22, s27; vmla.f32 s15, s23, s27\n",
            "vmla.f32 s0, s17, s28; vmla.f32 s1, s18, s28; vmla.f32 s2, s19, s28; vmla.f32 s3, s20, s28\n",
            "vmla.f32 s4, s21, s28; vmla.f32 s5, s22, s28; vmla.f32 s6, s23, s28; vmla.f32 s7, s24, s28\n",
            "vmla.f32 s8, s17, s29; vmla.f32 s9, s18, s29; vmla.f32 s10, s19, s29; vmla.f32 s11, s20, s29\n",
            "vmla.f32 s12, s21, s29; vmla.f32 s13, s22, s29; vmla.f32 s14, s23, s29; vmla.f32 s15, s24, s29\n",
            "vmla.f32 s0, s18, s30; vmla.f32 s1, s19, s30; vmla.f32 s2, s20, s30; vmla.f32 s3, s21, s30\n",
            "vmla.f32 s4, s22, s30; vmla.f32 s5, s23, s30; vmla.f32 s6, s24, s30; vmla.f32 s7, s25, s30\n",
            "vmla.f32 s8, s18, s31; vmla.f32 s9, s19, s31; vmla.f32 s10, s20, s31; vmla.f32 s11, s21, s31\n",
            "vmla.f32 s12, s22, s31; vmla.f32 s13, s23, s31; vmla.f32 s14, s24, s31; vmla.f32 s15, s25, s31\n",
        )
    };
}

/// As `column_0_k3_nr8` for filter column 1 (weights 2 taps further).
macro_rules! column_1_k3_nr8 {
    () => {
        concat!(
            "vldr s26, [{w}, #8]; vldr s27, [{w}, #12]\n",
            "vldr s28, [{w}, #32]; vldr s29, [{w}, #36]\n",
            "vldr s30, [{w}, #56]; vldr s31, [{w}, #60]\n",
            "vmla.f32 s0, s16, s26; vmla.f32 s1, s17, s26; vmla.f32 s2, s18, s26; vmla.f32 s3, s19, s26\n",
            "vmla.f32 s4, s20, s26; vmla.f32 s5, s21, s26; vmla.f32 s6, s22, s26; vmla.f32 s7, s23, s26\n",
            "vmla.f32 s8, s16, s27; vmla.f32 s9, s17, s27; vmla.f32 s10, s18, s27; vmla.f32 s11, s19, s27\n",
            "vmla.f32 s12, s20, s27; vmla.f32 s13, s21, s27; vmla.f32 s14, s22, s27; vmla.f32 s15, s23, s27\n",
            "vmla.f32 s0, s17, s28; vmla.f32 s1, s18, s28; vmla.f32 s2, s19, s28; vmla.f32 s3, s20, s28\n",
            "vmla.f32 s4, s21, s28; vmla.f32 s5, s22, s28; vmla.f32 s6, s23, s28; vmla.f32 s7, s24, s28\n",
            "vmla.f32 s8, s17, s29; vmla.f32 s9, s18, s29; vmla.f32 s10, s19, s29; vmla.f32 s11, s20, s29\n",
            "vmla.f32 s12, s21, s29; vmla.f32 s13, s22, s29; vmla.f32 s14, s23, s29; vmla.f32 s15, s24, s29\n",
            "vmla.f32 s0, s18, s30; vmla.f32 s1, s19, s30; vmla.f32 s2, s20, s30; vmla.f32 s3, s21, s30\n",
            "vmla.f32 s4, s22, s30; vmla.f32 s5, s23, s30; vmla.f32 s6, s24, s30; vmla.f32 s7, s25, s30\n",
            "vmla.f32 s8, s18, s31; vmla.f32 s9, s19, s31; vmla.f32 s10, s20, s31; vmla.f32 s11, s21, s31\n",
            "vmla.f32 s12, s22, s31; vmla.f32 s13, s23, s31; vmla.f32 s14, s24, s31; vmla.f32 s15, s25, s31\n",
        )
    };
}

/// Runs an `asm!` tile loop over `planes` input planes with every single-precision
/// register declared clobbered. Operands: `acc` (accumulators, read at the start
/// and written at the end by the template), `x` and `w` (input and weight pointers,
/// advanced by the template), `n` (plane count, counted down), `row` and `skip`
/// (byte strides), `wskip` (weight bytes skipped per plane).
macro_rules! tile_asm {
    ($acc:expr, $x:expr, $w:expr, $n:expr, $row:expr, $skip:expr, $wskip:expr; $($template:expr),+ $(,)?) => {
        core::arch::asm!(
            $($template,)+
            acc = in(reg) $acc,
            x = inout(reg) $x => _,
            w = inout(reg) $w => _,
            n = inout(reg) $n => _,
            row = in(reg) $row,
            skip = in(reg) $skip,
            wskip = in(reg) $wskip,
            out("s0") _, out("s1") _, out("s2") _, out("s3") _,
            out("s4") _, out("s5") _, out("s6") _, out("s7") _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("s12") _, out("s13") _, out("s14") _, out("s15") _,
            out("s16") _, out("s17") _, out("s18") _, out("s19") _,
            out("s20") _, out("s21") _, out("s22") _, out("s23") _,
            out("s24") _, out("s25") _, out("s26") _, out("s27") _,
            out("s28") _, out("s29") _, out("s30") _, out("s31") _,
            options(nostack),
        )
    };
}

/// Pixels per tile of the Arm kernels.
const NR: usize = 8;

/// The registers of a tile, in the order `acc[m*NR + j]`.
fn split<const N: usize>(acc: &[f32]) -> [[f32; N]; MR] {
    let mut tile = [[0.0; N]; MR];
    for (m, plane) in tile.iter_mut().enumerate() {
        for (j, v) in plane.iter_mut().enumerate() {
            *v = acc.get(m * N + j).copied().unwrap_or(0.0);
        }
    }
    tile
}

/// Runs the Arm row tiles over output columns `cols` of row `y` (`K = 3`, 2 or 3
/// filter rows inside the input), and returns the first column left for the
/// portable tiles. Widths of 8 and more are covered by 8-pixel tiles only, the
/// last one overlapping its neighbour (the overlapped pixels are computed twice, the
/// same sums in the same order, so with the same result).
pub(super) fn strip_k3(strip: &Strip, y: usize, cols: (usize, usize), out: &mut OutBlock) -> usize {
    let lay = strip.lay;
    let planes = lay.planes_in;
    let (lo, hi) = cols;
    let n_rows = strip.taps.1 - strip.taps.0;
    // The whole read range of a tile, checked once: `planes` planes of `n_rows` rows
    // of `nr + 2` inputs from `first_input(x)` in each, and `planes` times the 18
    // packed weights of a plane.
    let fits = |x: usize, nr: usize| {
        (n_rows == 2 || n_rows == 3)
            && planes > 0
            && strip.first_input(x) + (n_rows - 1) * lay.w + nr + 2 <= lay.plane_len
            && strip.x_image.len() >= planes * lay.plane_len
            && strip.packed.len() >= planes * 9 * MR
    };
    let row_bytes = lay.w * 4;
    // After the last row: on to the first row of the next plane.
    let skip = (lay.plane_len - (n_rows - 1) * lay.w) * 4;
    // Weights: the rows outside the input are skipped (before and after).
    let w_first = strip.taps.0 * 3 * MR;
    let w_skip = (3 - n_rows) * 3 * MR * 4;
    let mut x = lo;
    let mut run8 = |x: usize| {
        let mut acc = [strip.bias; 2 * NR];
        let (xp, wp) = (strip.x_image.as_ptr(), strip.packed.as_ptr());
        // SAFETY: `fits(x, 8)` was checked: for every plane c < planes and row
        // r < n_rows the 10 inputs from `first_input(x) + c*plane_len + r*W` lie in
        // `x_image`, and the 18 weights of plane c from `w_first` on lie in
        // `packed` (the template reads `n_rows` rows of 6 of them, then skips the
        // rest); `planes >= 1`, so the loop stops after `planes` planes; `acc`
        // holds the 16 accumulators the template loads and stores; every register it
        // changes is declared.
        unsafe {
            let (xp, wp, acc) = (
                xp.add(strip.first_input(x)),
                wp.add(w_first),
                acc.as_mut_ptr(),
            );
            if n_rows == 3 {
                tile_asm!(acc, xp, wp, planes, row_bytes, skip, w_skip;
                    "vldmia {acc}, {{s0-s15}}", "2:",
                    row_k3_nr8!(), "add {x}, {x}, {row}",
                    row_k3_nr8!(), "add {x}, {x}, {row}",
                    row_k3_nr8!(), "add {x}, {x}, {skip}", "add {w}, {w}, {wskip}",
                    "subs {n}, {n}, #1", "bne 2b", "vstmia {acc}, {{s0-s15}}");
            } else {
                tile_asm!(acc, xp, wp, planes, row_bytes, skip, w_skip;
                    "vldmia {acc}, {{s0-s15}}", "2:",
                    row_k3_nr8!(), "add {x}, {x}, {row}",
                    row_k3_nr8!(), "add {x}, {x}, {skip}", "add {w}, {w}, {wskip}",
                    "subs {n}, {n}, #1", "bne 2b", "vstmia {acc}, {{s0-s15}}");
            }
        }
        split::<NR>(&acc)
    };
    if hi - lo >= NR && fits(hi - NR, NR) {
        while x + NR <= hi {
            out.store_row(y, x, &run8(x));
            x += NR;
        }
        if x < hi {
            out.store_row(y, hi - NR, &run8(hi - NR));
            x = hi;
        }
    } else if hi - lo >= 4 && fits(lo, 4) {
        let mut acc = [strip.bias; 8];
        let (xp, wp) = (strip.x_image.as_ptr(), strip.packed.as_ptr());
        // SAFETY: as for `run8`, with `fits(lo, 4)`: 6 inputs per row, 8
        // accumulators.
        unsafe {
            let (xp, wp, acc) = (
                xp.add(strip.first_input(lo)),
                wp.add(w_first),
                acc.as_mut_ptr(),
            );
            if n_rows == 3 {
                tile_asm!(acc, xp, wp, planes, row_bytes, skip, w_skip;
                    "vldmia {acc}, {{s0-s7}}", "2:",
                    row_k3_nr4!(), "add {x}, {x}, {row}",
                    row_k3_nr4!(), "add {x}, {x}, {row}",
                    row_k3_nr4!(), "add {x}, {x}, {skip}", "add {w}, {w}, {wskip}",
                    "subs {n}, {n}, #1", "bne 2b", "vstmia {acc}, {{s0-s7}}");
            } else {
                tile_asm!(acc, xp, wp, planes, row_bytes, skip, w_skip;
                    "vldmia {acc}, {{s0-s7}}", "2:",
                    row_k3_nr4!(), "add {x}, {x}, {row}",
                    row_k3_nr4!(), "add {x}, {x}, {skip}", "add {w}, {w}, {wskip}",
                    "subs {n}, {n}, #1", "bne 2b", "vstmia {acc}, {{s0-s7}}");
            }
        }
        out.store_row(y, lo, &split::<4>(&acc));
        x = lo + 4;
    }
    x
}

/// Runs the Arm column tiles down edge column `column.x` over output rows `rows`
/// (`K = 3`, stride 1, every filter row inside the input, exactly 2 filter columns
/// inside the input: `same` padding), 8 rows at a time, the last tile overlapping
/// its neighbour. Returns the first row left for the portable tiles.
pub(super) fn column_k3(column: &super::Column, rows: (usize, usize), out: &mut OutBlock) -> usize {
    let lay = column.lay;
    let planes = lay.planes_in;
    let (lo, hi) = rows;
    if column.taps.1 - column.taps.0 != 2 || hi - lo < NR {
        return lo;
    }
    // Input index of tap (0, taps.0) of output pixel (y, x).
    let first = |y: usize| (y - lay.pad_top) * lay.w + column.x + column.taps.0 - lay.pad_left;
    // Read range: 10 rows down 2 adjacent columns in every plane; 18 weights a plane.
    let fits = |y: usize| {
        planes > 0
            && first(y) + 9 * lay.w + 2 <= lay.plane_len
            && column.x_image.len() >= planes * lay.plane_len
            && column.packed.len() >= planes * 9 * MR
    };
    if !fits(lo) || !fits(hi - NR) {
        return lo;
    }
    let (row_bytes, plane_bytes) = (lay.w * 4, lay.plane_len * 4);
    let w_first = column.taps.0 * MR;
    let mut run8 = |y: usize| {
        let mut acc = [column.bias; 2 * NR];
        let (xp, wp) = (column.x_image.as_ptr(), column.packed.as_ptr());
        // SAFETY: `fits(y)` was checked (for `lo` and `hi - NR`, and every `y`
        // between reads a range between those two): for every plane c < planes,
        // rows 0..10 of columns 0..2 from `first(y) + c*plane_len` lie in `x_image`,
        // and the weights of taps (p, taps.0 + q), p < 3, q < 2, of plane c lie in
        // `packed`; `planes >= 1`; `acc` holds the 16 accumulators; every register
        // the template changes is declared.
        unsafe {
            let (xp, wp, acc) = (xp.add(first(y)), wp.add(w_first), acc.as_mut_ptr());
            core::arch::asm!(
                "vldmia {acc}, {{s0-s15}}",
                "2:",
                "mov {t}, {x}",
                column_inputs!(),
                column_0_k3_nr8!(),
                "add {t}, {x}, #4",
                column_inputs!(),
                column_1_k3_nr8!(),
                "add {x}, {x}, {plane}",
                "add {w}, {w}, #72",
                "subs {n}, {n}, #1",
                "bne 2b",
                "vstmia {acc}, {{s0-s15}}",
                acc = in(reg) acc,
                x = inout(reg) xp => _,
                w = inout(reg) wp => _,
                n = inout(reg) planes => _,
                t = out(reg) _,
                row = in(reg) row_bytes,
                plane = in(reg) plane_bytes,
                out("s0") _, out("s1") _, out("s2") _, out("s3") _,
                out("s4") _, out("s5") _, out("s6") _, out("s7") _,
                out("s8") _, out("s9") _, out("s10") _, out("s11") _,
                out("s12") _, out("s13") _, out("s14") _, out("s15") _,
                out("s16") _, out("s17") _, out("s18") _, out("s19") _,
                out("s20") _, out("s21") _, out("s22") _, out("s23") _,
                out("s24") _, out("s25") _, out("s26") _, out("s27") _,
                out("s28") _, out("s29") _, out("s30") _, out("s31") _,
                options(nostack),
            );
        }
        split::<NR>(&acc)
    };
    let mut y = lo;
    while y + NR <= hi {
        out.store_column(y, column.x, &run8(y));
        y += NR;
    }
    if y < hi {
        out.store_column(hi - NR, column.x, &run8(hi - NR));
    }
    hi
}
