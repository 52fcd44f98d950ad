//! Slow, obviously-correct `f64` reference implementation (the test oracle).
//!
//! Everything here is derived from the definition of the group convolution
//!
//! ```text
//! [f * psi](g) = sum_h sum_i f_i(h) psi_i(g^-1 h)
//! ```
//!
//! using explicit group arithmetic: the elements of C4 and D4 are 2x2 integer matrices acting
//! on *doubled centred* `(row, col)` coordinates, composition is the matrix product and the
//! inverse is the transpose. No index tables, no array-rotation helpers and no filter-bank
//! expansion are used, so this module is an independent check of the fast paths.
//!
//! This is test support, not runtime API: every function panics (via `assert!`) on
//! inconsistent arguments instead of returning errors. It is compiled only with the
//! `reference` Cargo feature, which the workspace's tests and benchmarks turn on.
//!
//! # Doubled centred coordinates
//!
//! For an index `u` in `0..n` the doubled centred coordinate is `2u - (n - 1)`. It is an
//! integer for odd and even `n` alike, and the centre of the grid is the origin, so rotations
//! and flips about the geometric centre are signed permutations of the coordinates. The row
//! axis (axis -2) points down, the column axis (axis -1) points right.
//!
//! # Deriving the generator matrices
//!
//! A transformation `g` acts on an array (a function of position) by
//! `(g.A)(x) = A(g^-1 x)`. With this rule `(a.(b.A))(x) = (b.A)(a^-1 x) = A(b^-1 a^-1 x)`,
//! so the operator product `a*b` has matrix `mat(a) * mat(b)`: a homomorphism.
//!
//! Rotation `R`: `rot90(A)[u][v] = A[v][K-1-u]`. Write the output position in doubled
//! centred coordinates `(p, q) = (2u - (K-1), 2v - (K-1))`. The source position is
//! `(u', v') = (v, K-1-u)`, whose doubled centred coordinates are
//! `(2v - (K-1), 2(K-1-u) - (K-1)) = (q, -p)`. Hence `R^-1 (p, q) = (q, -p)`, i.e.
//! `R^-1 = [[0, 1], [-1, 0]]` and `R = (R^-1)^T = [[0, -1], [1, 0]]`.
//!
//! Flip `M` (flipud): `(M.A)[u][v] = A[K-1-u][v]`; the source of `(p, q)` is `(-p, q)`, so
//! `M^-1 = M = [[-1, 0], [0, 1]]`.
//!
//! Element indices: C4 `r` is `R^r`; D4 `4m + r` is `M^m R^r` (rotate first, then flip).

/// A finite point group acting on the pixel grid by rotations (and flips) about its centre.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefGroup {
    /// Rotations by multiples of 90 degrees (p4); element `r` is `R^r`.
    C4,
    /// Rotations and flips (p4m); element `4m + r` is `M^m R^r`.
    D4,
}

impl RefGroup {
    /// Number of elements: 4 for C4, 8 for D4.
    pub fn order(self) -> usize {
        match self {
            RefGroup::C4 => 4,
            RefGroup::D4 => 8,
        }
    }
}

/// A 2x2 integer matrix acting on doubled centred `(row, col)` column vectors.
type Mat = [[i64; 2]; 2];

const IDENTITY: Mat = [[1, 0], [0, 1]];
/// Counter-clockwise rotation by 90 degrees as displayed (see the module docs).
const ROT: Mat = [[0, -1], [1, 0]];
/// Reversal of the row axis (flipud).
const FLIP: Mat = [[-1, 0], [0, 1]];

fn mat_mul(a: &Mat, b: &Mat) -> Mat {
    let mut c = [[0; 2]; 2];
    for (i, row) in c.iter_mut().enumerate() {
        for (j, entry) in row.iter_mut().enumerate() {
            *entry = a[i][0] * b[0][j] + a[i][1] * b[1][j];
        }
    }
    c
}

fn mat_transpose(a: &Mat) -> Mat {
    [[a[0][0], a[1][0]], [a[0][1], a[1][1]]]
}

fn mat_apply(a: &Mat, x: [i64; 2]) -> [i64; 2] {
    [
        a[0][0] * x[0] + a[0][1] * x[1],
        a[1][0] * x[0] + a[1][1] * x[1],
    ]
}

fn mat_pow(a: &Mat, n: usize) -> Mat {
    (0..n).fold(IDENTITY, |acc, _| mat_mul(&acc, a))
}

/// Matrix of element `g`, acting on doubled centred `(row, col)` coordinates.
///
/// C4: `R^g`; D4: `M^m R^r` with `g = 4m + r`, where `R = [[0, -1], [1, 0]]` (rot90) and
/// `M = [[-1, 0], [0, 1]]` (flipud). The element acts on arrays by
/// `(g.A)(x) = A(g^-1 x)`. Panics if `g >= group.order()`.
pub fn element_matrix(group: RefGroup, g: usize) -> [[i64; 2]; 2] {
    assert!(g < group.order(), "element {g} out of range for {group:?}");
    let (m, r) = (g / 4, g % 4);
    mat_mul(&mat_pow(&FLIP, m), &mat_pow(&ROT, r))
}

/// Index of the element whose matrix equals `mat` (linear search). Panics if there is none.
fn element_index(group: RefGroup, mat: &Mat) -> usize {
    (0..group.order())
        .find(|&g| element_matrix(group, g) == *mat)
        .unwrap_or_else(|| panic!("matrix {mat:?} is not an element of {group:?}"))
}

/// Index of `a*b` (operator composition: `(a*b).A = a.(b.A)`), computed as the matrix
/// product `mat(a) * mat(b)` looked up in the element list.
pub fn compose(group: RefGroup, a: usize, b: usize) -> usize {
    let product = mat_mul(&element_matrix(group, a), &element_matrix(group, b));
    element_index(group, &product)
}

/// Index of `a^-1`, computed as the transpose of `mat(a)` (the matrices are orthogonal).
pub fn inverse(group: RefGroup, a: usize) -> usize {
    element_index(group, &mat_transpose(&element_matrix(group, a)))
}

/// Shape and hyper-parameters of a reference lifting or group convolution.
#[derive(Clone, Copy, Debug)]
pub struct RefConvSpec {
    /// The group (C4 or D4); the output has `group.order()` orientation planes.
    pub group: RefGroup,
    /// `true`: Z2 input (`nti = 1`); `false`: group input (`nti = group.order()`).
    pub lifting: bool,
    /// Batch size `N`.
    pub batch: usize,
    /// Input G-channels `C_in`.
    pub in_channels: usize,
    /// Output G-channels `C_out`.
    pub out_channels: usize,
    /// Input height `H`.
    pub height: usize,
    /// Input width `W`.
    pub width: usize,
    /// Filter size `K` (odd or even).
    pub kernel: usize,
    /// Stride (same for rows and columns), at least 1.
    pub stride: usize,
    /// Zero padding `(top, bottom, left, right)`.
    pub pad: [usize; 4],
}

impl RefConvSpec {
    /// Number of input orientation planes: 1 for lifting, the group order otherwise.
    fn nti(&self) -> usize {
        if self.lifting { 1 } else { self.group.order() }
    }
}

/// Result of [`reference_conv`].
pub struct RefOutput {
    /// `(N, C_out, nto, H', W')`.
    pub shape: [usize; 5],
    /// The output `y`, C order in `shape`.
    pub value: Vec<f64>,
    /// Same shape: for each output, the sum of `|f_i(h)| * |psi_i(g^-1 h)|` over all of its
    /// terms (bias excluded). Useful to bound the rounding error of a fast implementation.
    pub abs_sum: Vec<f64>,
}

/// Output length along one axis: `(n + before + after - k) / stride + 1` (floor).
fn output_len(n: usize, before: usize, after: usize, k: usize, stride: usize) -> usize {
    assert!(stride >= 1, "stride must be at least 1");
    assert!(k >= 1, "window size must be at least 1");
    assert!(
        n + before + after >= k,
        "padded size {} is smaller than the window {k}",
        n + before + after
    );
    (n + before + after - k) / stride + 1
}

/// Converts a doubled centred coordinate back to an index in `0..n`, or `None` outside.
fn index_from_doubled(d: i64, n: usize) -> Option<usize> {
    let n = n as i64;
    let twice = d + n - 1;
    assert!(
        twice % 2 == 0,
        "doubled coordinate {d} has the wrong parity for size {n}"
    );
    let u = twice / 2;
    (0..n).contains(&u).then_some(u as usize)
}

/// Input indices `lo..=hi` covered by a window of size `k` centred at doubled position
/// `pos2 = 2 * pos`: `lo = ceil(pos - (k-1)/2)`, `hi = floor(pos + (k-1)/2)`.
/// Either end may lie outside the image (padding).
fn window_rows(pos2: i64, k: usize) -> (i64, i64) {
    let k1 = k as i64 - 1;
    let lo = (pos2 - k1 + 1).div_euclid(2); // ceil((pos2 - k1) / 2)
    let hi = (pos2 + k1).div_euclid(2); // floor((pos2 + k1) / 2)
    (lo, hi)
}

/// Reference lifting (`spec.lifting`) or group convolution, in `f64`, straight from the
/// definition.
///
/// Layouts (C order): `x` is `(N, C_in, H, W)` if lifting else `(N, C_in, nti, H, W)`;
/// `w` is `(C_out, C_in, nti, K, K)`; `bias` is `(C_out,)`, added to every orientation plane
/// of G-channel `o`. The output has shape `(N, C_out, nto, H', W')` with
/// `H' = (H + top + bottom - K) / stride + 1` (floor), likewise for `W'`.
///
/// Output sample `(a, b)` of plane `t` is the group element `g = (translation to
/// pos(a, b), t)` with `pos(a) = a*stride - top + (K-1)/2` (half-integer for even `K`), and
///
/// ```text
/// y[n][o][t][a][b] = bias[o] + sum_i sum_{y, s} f_i(y, s) * psi_{o,i}(t^-1 (y - pos), t^-1 s)
/// ```
///
/// where `y` runs over input pixels (outside the image: zero padding), `s` over input
/// orientations (lifting: `s` and `t^-1 s` are replaced by plane 0), the displacement
/// `y - pos` is measured in doubled units (which is the filter's doubled centred coordinate)
/// and mapped by the matrix of `t^-1`, and `psi_{o,i}(d, k) = w[o][i][k][row(d)][col(d)]`
/// (zero if `d` falls outside the filter).
///
/// Panics (test oracle, not runtime API) if a slice length does not match `spec`, the stride
/// is 0, or the padded input is smaller than the filter.
pub fn reference_conv(spec: &RefConvSpec, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> RefOutput {
    let group = spec.group;
    let nto = group.order();
    let nti = spec.nti();
    let k = spec.kernel;
    let (h, wd) = (spec.height, spec.width);
    let [top, bottom, left, right] = spec.pad;
    let (c_in, c_out, batch) = (spec.in_channels, spec.out_channels, spec.batch);

    assert_eq!(x.len(), batch * c_in * nti * h * wd, "input length");
    assert_eq!(w.len(), c_out * c_in * nti * k * k, "weight length");
    if let Some(b) = bias {
        assert_eq!(b.len(), c_out, "bias length");
    }
    let h_out = output_len(h, top, bottom, k, spec.stride);
    let w_out = output_len(wd, left, right, k, spec.stride);

    let x_at = |n: usize, i: usize, s: usize, row: usize, col: usize| {
        f64::from(x[(((n * c_in + i) * nti + s) * h + row) * wd + col])
    };
    let w_at = |o: usize, i: usize, s: usize, u: usize, v: usize| {
        f64::from(w[(((o * c_in + i) * nti + s) * k + u) * k + v])
    };

    // Group arithmetic needed per output plane t: the matrix of t^-1 and the orientation
    // t^-1 * s of each input plane s (lifting: always plane 0).
    let t_inv_mat: Vec<Mat> = (0..nto)
        .map(|t| element_matrix(group, inverse(group, t)))
        .collect();
    let t_inv_s: Vec<Vec<usize>> = (0..nto)
        .map(|t| {
            (0..nti)
                .map(|s| {
                    if spec.lifting {
                        0
                    } else {
                        compose(group, inverse(group, t), s)
                    }
                })
                .collect()
        })
        .collect();

    let shape = [batch, c_out, nto, h_out, w_out];
    let total = shape.iter().product();
    let mut value = vec![0.0; total];
    let mut abs_sum = vec![0.0; total];

    let stride = spec.stride as i64;
    let k1 = k as i64 - 1;
    let mut out_idx = 0;
    for n in 0..batch {
        for o in 0..c_out {
            let b = bias.map_or(0.0, |b| f64::from(b[o]));
            for t in 0..nto {
                for a in 0..h_out {
                    // Doubled output position: 2*pos = 2*a*stride - 2*top + K - 1.
                    let pos_row2 = 2 * a as i64 * stride - 2 * top as i64 + k1;
                    let (row_lo, row_hi) = window_rows(pos_row2, k);
                    for bb in 0..w_out {
                        let pos_col2 = 2 * bb as i64 * stride - 2 * left as i64 + k1;
                        let (col_lo, col_hi) = window_rows(pos_col2, k);
                        let mut sum = 0.0;
                        let mut sum_abs = 0.0;
                        for row in row_lo..=row_hi {
                            if !(0..h as i64).contains(&row) {
                                continue; // zero padding
                            }
                            for col in col_lo..=col_hi {
                                if !(0..wd as i64).contains(&col) {
                                    continue; // zero padding
                                }
                                // Displacement from pos in doubled units, mapped by t^-1.
                                let disp = [2 * row - pos_row2, 2 * col - pos_col2];
                                let d = mat_apply(&t_inv_mat[t], disp);
                                let (Some(u), Some(v)) =
                                    (index_from_doubled(d[0], k), index_from_doubled(d[1], k))
                                else {
                                    continue; // outside the filter support
                                };
                                for i in 0..c_in {
                                    // Filter plane t^-1 s for input plane s.
                                    for (s, &filter_plane) in t_inv_s[t].iter().enumerate() {
                                        let f = x_at(n, i, s, row as usize, col as usize);
                                        let psi = w_at(o, i, filter_plane, u, v);
                                        sum += f * psi;
                                        sum_abs += f.abs() * psi.abs();
                                    }
                                }
                            }
                        }
                        value[out_idx] = b + sum;
                        abs_sum[out_idx] = sum_abs;
                        out_idx += 1;
                    }
                }
            }
        }
    }
    RefOutput {
        shape,
        value,
        abs_sum,
    }
}

/// Reference spatial max pooling of `planes` independent `height x width` planes (any
/// leading dims, e.g. `N * C * nt`, flattened), C order.
///
/// Window `k x k`, `stride` on both axes, padding `(top, bottom, left, right)` with `-inf`,
/// so padded positions never win (a window lying entirely in the padding yields `-inf`).
/// A NaN in a window makes that output NaN. Output sample `a` covers input rows
/// `a*stride - top .. a*stride - top + k`. Returns the pooled planes
/// (`planes x H' x W'`, C order) and `(H', W')` with
/// `H' = (height + top + bottom - k) / stride + 1` (floor), likewise `W'`.
///
/// Panics (test oracle) if `x.len() != planes * height * width`, `k` or `stride` is 0, or
/// the padded plane is smaller than the window.
pub fn reference_max_pool(
    planes: usize,
    height: usize,
    width: usize,
    x: &[f32],
    k: usize,
    stride: usize,
    pad: [usize; 4],
) -> (Vec<f32>, usize, usize) {
    assert_eq!(x.len(), planes * height * width, "input length");
    let [top, bottom, left, right] = pad;
    let h_out = output_len(height, top, bottom, k, stride);
    let w_out = output_len(width, left, right, k, stride);
    let mut out = Vec::with_capacity(planes * h_out * w_out);
    for p in 0..planes {
        let plane = &x[p * height * width..(p + 1) * height * width];
        for a in 0..h_out {
            for b in 0..w_out {
                let mut best = f32::NEG_INFINITY;
                for du in 0..k {
                    for dv in 0..k {
                        let row = (a * stride + du).checked_sub(top);
                        let col = (b * stride + dv).checked_sub(left);
                        let (Some(row), Some(col)) = (row, col) else {
                            continue; // padding
                        };
                        if row >= height || col >= width {
                            continue; // padding
                        }
                        let v = plane[row * width + col];
                        if v.is_nan() || v > best {
                            best = v;
                        }
                        if best.is_nan() {
                            break;
                        }
                    }
                }
                out.push(best);
            }
        }
    }
    (out, h_out, w_out)
}

/// The integer part of the int8 oracle: TFLite's `QuantizeMultiplier` written from
/// its definition (`real = q * 2^shift`, `q` in `[0.5, 1)`, significand
/// `round(q * 2^31)` half away from zero, carried when it reaches `2^31`, zero below
/// `2^-32`), without `frexp`.
///
/// Panics (test oracle) for a `real` that is not finite and positive.
pub fn reference_quantize_multiplier(real: f64) -> (i64, i32) {
    assert!(real.is_finite() && real > 0.0, "multiplier {real}");
    let mut shift = real.log2().floor() as i32 + 1;
    while real / 2f64.powi(shift) >= 1.0 {
        shift += 1;
    }
    while real / 2f64.powi(shift) < 0.5 {
        shift -= 1;
    }
    let q = real / 2f64.powi(shift);
    let mut m = (q * 2f64.powi(31)).round() as i64;
    if m == 1 << 31 {
        m /= 2;
        shift += 1;
    }
    if shift < -31 {
        return (0, 0);
    }
    (m, shift)
}

/// gemmlowp's double rounding evaluated in 128-bit integers: `acc * 2^max(shift,0)`
/// times `m / 2^31` rounded with ties up, then divided by `2^max(-shift,0)` rounded
/// half away from zero.
pub fn reference_requantize(acc: i64, m: i64, shift: i32) -> i64 {
    let left = shift.max(0) as u32;
    let right = (-shift).max(0) as u32;
    let a = i128::from(acc) << left;
    let high = (a * i128::from(m) + (1i128 << 30)) >> 31; // floor: ties up
    let d = 1i128 << right;
    let q = if high >= 0 {
        (high + d / 2) / d
    } else {
        -((-high + d / 2) / d)
    };
    q as i64
}

/// Reference int8 lifting or group convolution, from the definition: the integer
/// accumulator `bias[o] + sum w * (x - zp_in)` computed exactly by [`reference_conv`]
/// (in f64 every term and partial sum is an integer below `2^53`; a padded sample is
/// `x = zp_in`, i.e. 0 after the shift), then
/// `clamp(requantize(acc) + zp_out, lo, 127)` with the multiplier of
/// `input_scale * weight_scale[o] / output_scale` formed in f64 from the f32 scales.
///
/// Layouts as [`reference_conv`]. Panics (test oracle) on inconsistent lengths.
#[allow(clippy::too_many_arguments)]
pub fn reference_conv_i8(
    spec: &RefConvSpec,
    x: &[i8],
    (input_scale, input_zero_point): (f32, i32),
    w: &[i8],
    weight_scale: &[f32],
    bias: Option<&[i32]>,
    (output_scale, output_zero_point): (f32, i32),
    relu: bool,
) -> Vec<i8> {
    let shifted: Vec<f32> = x
        .iter()
        .map(|&v| (i32::from(v) - input_zero_point) as f32)
        .collect();
    let wf: Vec<f32> = w.iter().map(|&v| f32::from(v)).collect();
    let acc = reference_conv(spec, &shifted, &wf, None);
    let [_, c_out, nto, oh, ow] = acc.shape;
    assert_eq!(weight_scale.len(), c_out, "weight scales");
    let per_plane = oh * ow;
    let lo = if relu {
        output_zero_point.max(-128)
    } else {
        -128
    };
    acc.value
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            assert!(
                v.abs() < 2f64.powi(53) && v == v.round(),
                "inexact accumulator"
            );
            let o = (i / (per_plane * nto)) % c_out;
            let total = v as i64 + bias.map_or(0, |b| i64::from(b[o]));
            let real =
                f64::from(input_scale) * f64::from(weight_scale[o]) / f64::from(output_scale);
            let (m, shift) = reference_quantize_multiplier(real);
            let y = reference_requantize(total, m, shift) + i64::from(output_zero_point);
            y.clamp(i64::from(lo), 127) as i8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiny deterministic generator (xorshift64*), values in [-1, 1).
    struct Rng(u64);

    impl Rng {
        fn next_f32(&mut self) -> f32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
            (bits as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }

        fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.next_f32()).collect()
        }
    }

    /// A square array stored row-major.
    type Square = Vec<f64>;

    /// `rot90(A)[u][v] = A[v][K-1-u]`, written directly as array manipulation.
    fn rot90_array(a: &[f64], k: usize) -> Square {
        let mut out = vec![0.0; k * k];
        for u in 0..k {
            for v in 0..k {
                out[u * k + v] = a[v * k + (k - 1 - u)];
            }
        }
        out
    }

    /// `flipud(A)[u][v] = A[K-1-u][v]`.
    fn flipud_array(a: &[f64], k: usize) -> Square {
        let mut out = vec![0.0; k * k];
        for u in 0..k {
            for v in 0..k {
                out[u * k + v] = a[(k - 1 - u) * k + v];
            }
        }
        out
    }

    /// Spatial action of element `4m + r`: rotate `r` times, then flipud if `m = 1`.
    fn spatial_array(a: &[f64], k: usize, g: usize) -> Square {
        let mut out = a.to_vec();
        for _ in 0..g % 4 {
            out = rot90_array(&out, k);
        }
        if g / 4 == 1 {
            out = flipud_array(&out, k);
        }
        out
    }

    /// Closed-form composition `(m1,r1)(m2,r2) = (m1 xor m2, ((-1)^m2 r1 + r2) mod 4)`.
    fn closed_compose(a: usize, b: usize) -> usize {
        let (m1, r1) = (a / 4, a % 4);
        let (m2, r2) = (b / 4, b % 4);
        let r = if m2 == 0 { r1 + r2 } else { 4 - r1 + r2 } % 4;
        4 * (m1 ^ m2) + r
    }

    /// Closed-form inverse: `(0,r)^-1 = (0,-r)`, `(1,r)^-1 = (1,r)`.
    fn closed_inverse(a: usize) -> usize {
        if a < 4 { (4 - a) % 4 } else { a }
    }

    /// Independent computation per CONVENTIONS.md "Forward": expand the filter bank by
    /// array rotation + plane permutation `t^-1 s`, then plain padded cross-correlation.
    fn expanded_bank_conv(
        spec: &RefConvSpec,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
    ) -> Vec<f64> {
        let nto = spec.group.order();
        let nti = if spec.lifting { 1 } else { nto };
        let k = spec.kernel;
        let (c_in, c_out) = (spec.in_channels, spec.out_channels);
        let [top, bottom, left, right] = spec.pad;
        let (h, wd) = (spec.height, spec.width);

        // tw[o][t][i][s] = spatial_t(w[o][i][t^-1 s]), flattened to (C_out*nto, C_in*nti, K, K).
        let mut tw = vec![0.0; c_out * nto * c_in * nti * k * k];
        for o in 0..c_out {
            for t in 0..nto {
                for i in 0..c_in {
                    for s in 0..nti {
                        let src = if spec.lifting {
                            0
                        } else {
                            closed_compose(closed_inverse(t), s)
                        };
                        let start = (((o * c_in + i) * nti + src) * k) * k;
                        let filt: Vec<f64> = w[start..start + k * k]
                            .iter()
                            .map(|&v| f64::from(v))
                            .collect();
                        let rotated = spatial_array(&filt, k, t);
                        let dst = ((((o * nto + t) * c_in + i) * nti + s) * k) * k;
                        tw[dst..dst + k * k].copy_from_slice(&rotated);
                    }
                }
            }
        }

        // Zero-padded input (N, C_in*nti, Hp, Wp).
        let (hp, wp) = (h + top + bottom, wd + left + right);
        let planes_in = c_in * nti;
        let mut xpad = vec![0.0; spec.batch * planes_in * hp * wp];
        for p in 0..spec.batch * planes_in {
            for r in 0..h {
                for c in 0..wd {
                    xpad[(p * hp + r + top) * wp + c + left] = f64::from(x[(p * h + r) * wd + c]);
                }
            }
        }

        let h_out = (hp - k) / spec.stride + 1;
        let w_out = (wp - k) / spec.stride + 1;
        let planes_out = c_out * nto;
        let mut y = vec![0.0; spec.batch * planes_out * h_out * w_out];
        for n in 0..spec.batch {
            for c in 0..planes_out {
                let b = bias.map_or(0.0, |b| f64::from(b[c / nto]));
                for a in 0..h_out {
                    for bb in 0..w_out {
                        let mut sum = 0.0;
                        for cp in 0..planes_in {
                            for p in 0..k {
                                for q in 0..k {
                                    let xv =
                                        xpad[((n * planes_in + cp) * hp + a * spec.stride + p)
                                            * wp
                                            + bb * spec.stride
                                            + q];
                                    sum += xv * tw[((c * planes_in + cp) * k + p) * k + q];
                                }
                            }
                        }
                        y[((n * planes_out + c) * h_out + a) * w_out + bb] = b + sum;
                    }
                }
            }
        }
        y
    }

    fn random_case(spec: &RefConvSpec, rng: &mut Rng) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let nti = if spec.lifting { 1 } else { spec.group.order() };
        let x = rng.vec(spec.batch * spec.in_channels * nti * spec.height * spec.width);
        let w = rng.vec(spec.out_channels * spec.in_channels * nti * spec.kernel * spec.kernel);
        let b = rng.vec(spec.out_channels);
        (x, w, b)
    }

    #[test]
    fn generators_match_array_definitions() {
        // (g.A)[u][v] = A(g^-1 x) evaluated through the matrices must equal the array ops.
        for k in 1..=5 {
            let a: Vec<f64> = (0..k * k).map(|i| i as f64).collect();
            for g in 0..8 {
                let expected = spatial_array(&a, k, g);
                let m_inv = element_matrix(RefGroup::D4, inverse(RefGroup::D4, g));
                let k1 = k as i64 - 1;
                for u in 0..k {
                    for v in 0..k {
                        let src = mat_apply(&m_inv, [2 * u as i64 - k1, 2 * v as i64 - k1]);
                        let su = index_from_doubled(src[0], k).unwrap();
                        let sv = index_from_doubled(src[1], k).unwrap();
                        assert_eq!(a[su * k + sv], expected[u * k + v], "k={k} g={g}");
                    }
                }
            }
        }
        // Named elements from CONVENTIONS.md.
        assert_eq!(element_matrix(RefGroup::D4, 4), [[-1, 0], [0, 1]]); // flipud
        assert_eq!(element_matrix(RefGroup::D4, 5), [[0, 1], [1, 0]]); // transpose
        assert_eq!(element_matrix(RefGroup::D4, 6), [[1, 0], [0, -1]]); // fliplr
        assert_eq!(element_matrix(RefGroup::D4, 7), [[0, -1], [-1, 0]]); // anti-transpose
        for r in 0..4 {
            assert_eq!(
                element_matrix(RefGroup::C4, r),
                element_matrix(RefGroup::D4, r)
            );
        }
    }

    #[test]
    fn d4_compose_matches_closed_form() {
        for a in 0..8 {
            for b in 0..8 {
                assert_eq!(compose(RefGroup::D4, a, b), closed_compose(a, b), "{a}*{b}");
            }
            assert_eq!(inverse(RefGroup::D4, a), closed_inverse(a));
        }
        for a in 0..4 {
            for b in 0..4 {
                assert_eq!(compose(RefGroup::C4, a, b), (a + b) % 4);
            }
        }
    }

    #[test]
    fn t_inverse_s_tables_match_conventions() {
        const D4_TABLE: [[usize; 8]; 8] = [
            [0, 1, 2, 3, 4, 5, 6, 7],
            [3, 0, 1, 2, 5, 6, 7, 4],
            [2, 3, 0, 1, 6, 7, 4, 5],
            [1, 2, 3, 0, 7, 4, 5, 6],
            [4, 5, 6, 7, 0, 1, 2, 3],
            [5, 6, 7, 4, 3, 0, 1, 2],
            [6, 7, 4, 5, 2, 3, 0, 1],
            [7, 4, 5, 6, 1, 2, 3, 0],
        ];
        for (t, row) in D4_TABLE.iter().enumerate() {
            for (s, &expected) in row.iter().enumerate() {
                let got = compose(RefGroup::D4, inverse(RefGroup::D4, t), s);
                assert_eq!(got, expected, "t={t} s={s}");
            }
        }
        for t in 0..4 {
            for s in 0..4 {
                let got = compose(RefGroup::C4, inverse(RefGroup::C4, t), s);
                assert_eq!(got, (s + 4 - t) % 4);
            }
        }
    }

    #[test]
    fn group_axioms() {
        for group in [RefGroup::C4, RefGroup::D4] {
            let n = group.order();
            assert_eq!(element_matrix(group, 0), IDENTITY);
            for a in 0..n {
                let m = element_matrix(group, a);
                // Orthogonal signed permutation with determinant +-1.
                assert_eq!(mat_mul(&m, &mat_transpose(&m)), IDENTITY);
                assert_eq!(compose(group, a, 0), a);
                assert_eq!(compose(group, 0, a), a);
                assert_eq!(compose(group, a, inverse(group, a)), 0);
                assert_eq!(compose(group, inverse(group, a), a), 0);
                for b in 0..n {
                    for c in 0..n {
                        let left = compose(group, compose(group, a, b), c);
                        let right = compose(group, a, compose(group, b, c));
                        assert_eq!(left, right);
                    }
                }
            }
            // All matrices are distinct.
            for a in 0..n {
                for b in 0..a {
                    assert_ne!(element_matrix(group, a), element_matrix(group, b));
                }
            }
        }
        // C4 is abelian, D4 is not.
        assert_ne!(compose(RefGroup::D4, 1, 4), compose(RefGroup::D4, 4, 1));
    }

    #[test]
    fn matches_expanded_bank_cross_correlation() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut cases = 0;
        for group in [RefGroup::C4, RefGroup::D4] {
            for lifting in [true, false] {
                for kernel in 1..=5 {
                    for stride in 1..=3 {
                        // Cycle through odd/even sizes and padding patterns.
                        let (height, width) = [(5, 6), (6, 7), (7, 5)][(kernel + stride) % 3];
                        let pads = [[0, 0, 0, 0], [1, 2, 0, 1], [2, 0, 1, 3]];
                        for pad in pads {
                            let spec = RefConvSpec {
                                group,
                                lifting,
                                batch: 2,
                                in_channels: 2,
                                out_channels: 2,
                                height,
                                width,
                                kernel,
                                stride,
                                pad,
                            };
                            if height + pad[0] + pad[1] < kernel || width + pad[2] + pad[3] < kernel
                            {
                                continue;
                            }
                            let (x, w, b) = random_case(&spec, &mut rng);
                            let bias = (cases % 2 == 0).then_some(b.as_slice());
                            let out = reference_conv(&spec, &x, &w, bias);
                            let expected = expanded_bank_conv(&spec, &x, &w, bias);
                            let h_out = (height + pad[0] + pad[1] - kernel) / stride + 1;
                            let w_out = (width + pad[2] + pad[3] - kernel) / stride + 1;
                            assert_eq!(out.shape, [2, 2, group.order(), h_out, w_out]);
                            assert_eq!(out.value.len(), expected.len());
                            assert_eq!(out.abs_sum.len(), expected.len());
                            for (j, (&got, &want)) in out.value.iter().zip(&expected).enumerate() {
                                assert!(
                                    (got - want).abs() <= 1e-12,
                                    "{spec:?} index {j}: {got} vs {want}"
                                );
                                let bias_j = bias.map_or(0.0, |b| {
                                    f64::from(b[(j / (group.order() * h_out * w_out)) % 2])
                                });
                                assert!((got - bias_j).abs() <= out.abs_sum[j] + 1e-12);
                            }
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 180, "every configuration must run");
    }

    /// Transforms a feature map `(N, C, nt, H, W)` (lifting input: nt = 1, no plane
    /// permutation) by element `g`: `(g.y)[.., h, :, :] = spatial_g(y[.., g^-1 h, :, :])`.
    fn transform_map(y: &[f64], lead: usize, nt: usize, size: usize, g: usize) -> Vec<f64> {
        let plane = size * size;
        let mut out = vec![0.0; y.len()];
        for l in 0..lead {
            for h in 0..nt {
                let src_plane = if nt == 1 {
                    0
                } else {
                    closed_compose(closed_inverse(g), h)
                };
                let src = (l * nt + src_plane) * plane;
                let rotated = spatial_array(&y[src..src + plane], size, g);
                let dst = (l * nt + h) * plane;
                out[dst..dst + plane].copy_from_slice(&rotated);
            }
        }
        out
    }

    #[test]
    fn oracle_is_equivariant_on_valid_geometry() {
        let mut rng = Rng(12345);
        // (size, kernel, stride, pad): each satisfies pos(0) + pos(out-1) == H - 1.
        let geometries = [
            (6, 3, 1, [0, 0, 0, 0]),
            (6, 4, 1, [0, 0, 0, 0]),
            (5, 3, 1, [1, 1, 1, 1]),
            (6, 2, 1, [1, 1, 1, 1]),
            (7, 3, 2, [0, 0, 0, 0]),
            (6, 2, 2, [0, 0, 0, 0]),
        ];
        for group in [RefGroup::C4, RefGroup::D4] {
            for lifting in [true, false] {
                for &(size, kernel, stride, pad) in &geometries {
                    let spec = RefConvSpec {
                        group,
                        lifting,
                        batch: 1,
                        in_channels: 2,
                        out_channels: 2,
                        height: size,
                        width: size,
                        kernel,
                        stride,
                        pad,
                    };
                    let (x, w, b) = random_case(&spec, &mut rng);
                    let nti = spec.nti();
                    let y = reference_conv(&spec, &x, &w, Some(&b));
                    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
                    let out_size = y.shape[3];
                    for g in 0..group.order() {
                        let gx: Vec<f32> = transform_map(&x64, 2, nti, size, g)
                            .iter()
                            .map(|&v| v as f32)
                            .collect();
                        let y_gx = reference_conv(&spec, &gx, &w, Some(&b));
                        let g_y = transform_map(&y.value, 2, group.order(), out_size, g);
                        for (a, c) in y_gx.value.iter().zip(&g_y) {
                            assert!((a - c).abs() < 1e-12, "{spec:?} g={g}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn even_kernel_same_padding_breaks_equivariance() {
        // TensorFlow-style SAME for K = 2 pads (0, 1): shifted grid, rotation by 90 fails.
        let mut rng = Rng(777);
        let spec = RefConvSpec {
            group: RefGroup::C4,
            lifting: true,
            batch: 1,
            in_channels: 1,
            out_channels: 1,
            height: 5,
            width: 5,
            kernel: 2,
            stride: 1,
            pad: [0, 1, 0, 1],
        };
        let (x, w, _) = random_case(&spec, &mut rng);
        let y = reference_conv(&spec, &x, &w, None);
        let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let gx: Vec<f32> = transform_map(&x64, 1, 1, 5, 1)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let y_gx = reference_conv(&spec, &gx, &w, None);
        let g_y = transform_map(&y.value, 1, 4, 5, 1);
        let max_err = y_gx
            .value
            .iter()
            .zip(&g_y)
            .map(|(a, c)| (a - c).abs())
            .fold(0.0, f64::max);
        assert!(max_err > 1e-3);
    }

    #[test]
    fn hand_computed_lifting_values() {
        // K = 2, 2x2 input, valid: a single output position (centre of the input).
        // Filter w = [[1, 2], [3, 4]], input x = [[1, 10], [100, 1000]].
        let spec = RefConvSpec {
            group: RefGroup::C4,
            lifting: true,
            batch: 1,
            in_channels: 1,
            out_channels: 1,
            height: 2,
            width: 2,
            kernel: 2,
            stride: 1,
            pad: [0, 0, 0, 0],
        };
        let x = [1.0, 10.0, 100.0, 1000.0];
        let w = [1.0, 2.0, 3.0, 4.0];
        let out = reference_conv(&spec, &x, &w, Some(&[0.5]));
        assert_eq!(out.shape, [1, 1, 4, 1, 1]);
        // rot90^t(w): t=0 [[1,2],[3,4]], t=1 [[2,4],[1,3]], t=2 [[4,3],[2,1]], t=3 [[3,1],[4,2]].
        let expected = [
            1.0 + 20.0 + 300.0 + 4000.0,
            2.0 + 40.0 + 100.0 + 3000.0,
            4.0 + 30.0 + 200.0 + 1000.0,
            3.0 + 10.0 + 400.0 + 2000.0,
        ];
        for (got, want) in out.value.iter().zip(expected) {
            assert_eq!(*got, want + 0.5);
        }
        assert_eq!(out.abs_sum, expected.to_vec());
    }

    #[test]
    fn max_pool_basics() {
        // 1 plane 4x4, 2x2 stride 2, no padding.
        let x: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let (y, h, w) = reference_max_pool(1, 4, 4, &x, 2, 2, [0, 0, 0, 0]);
        assert_eq!((h, w), (2, 2));
        assert_eq!(y, vec![5.0, 7.0, 13.0, 15.0]);

        // Padding never wins, even when every value is negative.
        let x = vec![-3.0f32, -1.0, -2.0, -4.0];
        let (y, h, w) = reference_max_pool(1, 2, 2, &x, 3, 1, [1, 1, 1, 1]);
        assert_eq!((h, w), (2, 2));
        assert_eq!(y, vec![-1.0, -1.0, -1.0, -1.0]);
        let x = vec![-1.0f32, -3.0, -2.0, -4.0];
        let (y, h, w) = reference_max_pool(1, 2, 2, &x, 2, 1, [1, 0, 0, 1]);
        assert_eq!((h, w), (2, 2));
        assert_eq!(y, vec![-1.0, -3.0, -1.0, -3.0]);

        // Several planes, odd size, 3x3 stride 2.
        let mut rng = Rng(42);
        let x = rng.vec(3 * 5 * 5);
        let (y, h, w) = reference_max_pool(3, 5, 5, &x, 3, 2, [0, 0, 0, 0]);
        assert_eq!((h, w, y.len()), (2, 2, 12));
        for p in 0..3 {
            for a in 0..2 {
                for b in 0..2 {
                    let mut m = f32::NEG_INFINITY;
                    for u in 0..3 {
                        for v in 0..3 {
                            m = m.max(x[p * 25 + (2 * a + u) * 5 + 2 * b + v]);
                        }
                    }
                    assert_eq!(y[(p * 2 + a) * 2 + b], m);
                }
            }
        }

        // NaN propagates.
        let x = [1.0f32, f32::NAN, 2.0, 3.0];
        let (y, _, _) = reference_max_pool(1, 2, 2, &x, 2, 1, [0, 0, 0, 0]);
        assert!(y[0].is_nan());
    }

    #[test]
    fn max_pool_is_equivariant_on_valid_geometry() {
        let mut rng = Rng(4242);
        for (size, k, stride, pad) in [(6, 2, 2, [0; 4]), (7, 3, 2, [0; 4]), (5, 3, 1, [1; 4])] {
            let x = rng.vec(2 * size * size);
            let (y, h_out, _) = reference_max_pool(2, size, size, &x, k, stride, pad);
            let y64: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
            let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            for g in 0..8 {
                let gx: Vec<f32> = transform_map(&x64, 2, 1, size, g)
                    .iter()
                    .map(|&v| v as f32)
                    .collect();
                let (y_gx, _, _) = reference_max_pool(2, size, size, &gx, k, stride, pad);
                let g_y = transform_map(&y64, 2, 1, h_out, g);
                let y_gx: Vec<f64> = y_gx.iter().map(|&v| f64::from(v)).collect();
                assert_eq!(y_gx, g_y, "size={size} k={k} g={g}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "input length")]
    fn wrong_input_length_panics() {
        let spec = RefConvSpec {
            group: RefGroup::C4,
            lifting: false,
            batch: 1,
            in_channels: 1,
            out_channels: 1,
            height: 3,
            width: 3,
            kernel: 3,
            stride: 1,
            pad: [0; 4],
        };
        reference_conv(&spec, &[0.0; 9], &[0.0; 36], None);
    }
}
