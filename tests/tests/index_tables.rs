//! gconv-core's index tables and filter expansion against GrouPy's own output.
//!
//! The reference files in `tests/data/groupy-indices/` (committed; see the README.md there) are
//! `make_{c4_z2,c4_p4,d4_z2,d4_p4m}_indices(K)` from GrouPy (plus the even-`K` D4 extension,
//! same closed form, not GrouPy output):
//!
//! * `indices_<pair>_k<K>.npy`: int32 `(nto, nti, K, K, 3)`, last axis `(T, U, V)`;
//! * `indices_flat_<pair>_k<K>.npy`: int32 `(nto, nti, K, K)`, GrouPy's flattened index
//!   `flat = U*K*nti + V*nti + T`, i.e. an index into one filter laid out `(K, K, nti)`
//!   (the raw weight transposed to `(C_out, C_in, K, K, nti)` and flattened per filter).
//!   Verified here against the `(T, U, V)` tables and by gathering a bank with it.
//!
//! A second, independent oracle is the matrix group arithmetic of
//! `gconv_std::reference` (element matrices on doubled centred coordinates), used for
//! kernel sizes GrouPy has no file for (6, 7).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gconv_core::conv::expand::expand_filter_bank;
use gconv_core::group::tables::{IndexTable, c4_c4, d4_d4, table_entry, z2_c4, z2_d4};
use gconv_core::{Buffer, C4, D4, Dim, Domain, Error, Group};
use gconv_std::reference::{self, RefGroup};
use gconv_tests::{NpyI32, d4_even_extension_dir, groupy_indices_dir, read_npy_i32};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// One layer kind (a GrouPy `make_<stem>_indices`) and the reference files that exist
/// for it.
#[derive(Clone, Copy, Debug)]
struct Pair {
    /// File-name stem: `c4_z2`, `c4_p4`, `d4_z2`, `d4_p4m`.
    stem: &'static str,
    group: RefGroup,
    nto: usize,
    nti: usize,
    /// Kernel sizes with a GrouPy file in `groupy-indices/`.
    groupy_ks: &'static [usize],
    /// Kernel sizes with a file in `groupy-indices/d4-even-extension/`.
    extension_ks: &'static [usize],
}

const C4_Z2: Pair = Pair {
    stem: "c4_z2",
    group: RefGroup::C4,
    nto: 4,
    nti: 1,
    groupy_ks: &[1, 2, 3, 4, 5],
    extension_ks: &[],
};
const C4_P4: Pair = Pair {
    stem: "c4_p4",
    group: RefGroup::C4,
    nto: 4,
    nti: 4,
    groupy_ks: &[1, 2, 3, 4, 5],
    extension_ks: &[],
};
const D4_Z2: Pair = Pair {
    stem: "d4_z2",
    group: RefGroup::D4,
    nto: 8,
    nti: 1,
    groupy_ks: &[1, 3, 5],
    extension_ks: &[2, 4],
};
const D4_P4M: Pair = Pair {
    stem: "d4_p4m",
    group: RefGroup::D4,
    nto: 8,
    nti: 8,
    groupy_ks: &[1, 3, 5],
    extension_ks: &[2, 4],
};
const PAIRS: [Pair; 4] = [C4_Z2, C4_P4, D4_Z2, D4_P4M];

impl Pair {
    fn all_ks(&self) -> Vec<usize> {
        let mut ks: Vec<usize> = self
            .groupy_ks
            .iter()
            .chain(self.extension_ks)
            .copied()
            .collect();
        ks.sort_unstable();
        ks
    }

    /// Path of the `(T, U, V)` table (`flat = false`) or of the flat index table.
    fn file(&self, k: usize, flat: bool) -> PathBuf {
        let flat = if flat { "flat_" } else { "" };
        if self.groupy_ks.contains(&k) {
            groupy_indices_dir().join(format!("indices_{flat}{}_k{k}.npy", self.stem))
        } else if self.extension_ks.contains(&k) {
            d4_even_extension_dir().join(format!("ext_indices_{flat}{}_k{k}.npy", self.stem))
        } else {
            panic!("no reference file for {} K = {k}", self.stem)
        }
    }

    fn load(&self, k: usize, flat: bool) -> NpyI32 {
        let npy = read_npy_i32(&self.file(k, flat));
        let k = k as u64;
        let (nto, nti) = (self.nto as u64, self.nti as u64);
        let expected: Vec<u64> = if flat {
            vec![nto, nti, k, k]
        } else {
            vec![nto, nti, k, k, 3]
        };
        assert_eq!(
            npy.shape,
            expected,
            "shape of {}",
            self.file(k as usize, flat).display()
        );
        npy
    }
}

/// Runs `$body` with `$table` bound to `$ctor::<K>()` for every listed `K` (const generic).
macro_rules! for_each_k {
    ($ctor:ident, [$($k:literal),+ $(,)?], |$table:ident| $body:expr) => {
        $({
            let $table = $ctor::<$k>();
            $body;
        })+
    };
}

/// Index of `(t, s, u, v)` in a C-order `(nto, nti, k, k)` array.
fn at(nti: usize, k: usize, t: usize, s: usize, u: usize, v: usize) -> usize {
    ((t * nti + s) * k + u) * k + v
}

/// `(T, U, V)` from the matrix oracle: `T = t^-1 s` (0 for a lifting layer) and
/// `(U, V) = t^-1 x` on doubled centred coordinates `x = (2u - (k-1), 2v - (k-1))`.
fn oracle_entry(
    group: RefGroup,
    nti: usize,
    k: usize,
    t: usize,
    s: usize,
    u: usize,
    v: usize,
) -> [usize; 3] {
    let t_inv = reference::inverse(group, t);
    let plane = if nti == 1 {
        0
    } else {
        reference::compose(group, t_inv, s)
    };
    let m = reference::element_matrix(group, t_inv);
    let c = k as i64 - 1;
    let x = [2 * u as i64 - c, 2 * v as i64 - c];
    let y = [
        m[0][0] * x[0] + m[0][1] * x[1],
        m[1][0] * x[0] + m[1][1] * x[1],
    ];
    let back = |d: i64| {
        assert!(
            (d + c) % 2 == 0 && (0..=2 * c).contains(&(d + c)),
            "oracle left the grid"
        );
        ((d + c) / 2) as usize
    };
    [plane, back(y[0]), back(y[1])]
}

/// The const table equals the `(T, U, V)` file entry by entry; `flat()` equals the file's
/// raw data.
fn check_table_vs_npy<const NTO: usize, const NTI: usize, const K: usize>(
    pair: &Pair,
    table: &IndexTable<NTO, NTI, K>,
) {
    assert_eq!(
        (NTO, NTI),
        (pair.nto, pair.nti),
        "{}: wrong constructor",
        pair.stem
    );
    let npy = pair.load(K, false);
    for t in 0..NTO {
        for s in 0..NTI {
            for u in 0..K {
                for v in 0..K {
                    let i = 3 * at(NTI, K, t, s, u, v);
                    let want = [npy.data[i], npy.data[i + 1], npy.data[i + 2]];
                    let got = table.entries[t][s][u][v].map(i32::from);
                    assert_eq!(
                        got, want,
                        "{} K={K} entry (t={t}, s={s}, u={u}, v={v})",
                        pair.stem
                    );
                }
            }
        }
    }
    let flat: Vec<i32> = table.flat().map(i32::from).collect();
    assert_eq!(
        flat, npy.data,
        "{} K={K}: IndexTable::flat() differs from the file",
        pair.stem
    );
}

#[test]
fn c4_z2_tables_equal_groupy() {
    for_each_k!(z2_c4, [1, 2, 3, 4, 5], |table| check_table_vs_npy(
        &C4_Z2, &table
    ));
}

#[test]
fn c4_p4_tables_equal_groupy() {
    for_each_k!(c4_c4, [1, 2, 3, 4, 5], |table| check_table_vs_npy(
        &C4_P4, &table
    ));
}

#[test]
fn d4_z2_tables_equal_groupy() {
    for_each_k!(z2_d4, [1, 3, 5], |table| check_table_vs_npy(&D4_Z2, &table));
}

#[test]
fn d4_p4m_tables_equal_groupy() {
    for_each_k!(d4_d4, [1, 3, 5], |table| check_table_vs_npy(
        &D4_P4M, &table
    ));
}

#[test]
fn d4_even_k_tables_equal_extension() {
    for_each_k!(z2_d4, [2, 4], |table| check_table_vs_npy(&D4_Z2, &table));
    for_each_k!(d4_d4, [2, 4], |table| check_table_vs_npy(&D4_P4M, &table));
}

/// Every `.npy` in the reference folders is one these tests read: a new or renamed file
/// cannot be silently ignored.
#[test]
fn every_reference_file_is_covered() {
    let list = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "npy"))
            .map(|p| {
                p.file_name()
                    .expect("file name")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    };
    let mut covered = BTreeSet::new();
    let mut covered_ext = BTreeSet::new();
    for pair in PAIRS {
        for flat in ["", "flat_"] {
            for &k in pair.groupy_ks {
                covered.insert(format!("indices_{flat}{}_k{k}.npy", pair.stem));
            }
            for &k in pair.extension_ks {
                covered_ext.insert(format!("ext_indices_{flat}{}_k{k}.npy", pair.stem));
            }
        }
    }
    assert_eq!(list(&groupy_indices_dir()), covered);
    assert_eq!(list(&d4_even_extension_dir()), covered_ext);
}

/// The run-time `table_entry` equals every file entry.
#[test]
fn runtime_table_entry_equals_groupy_files() {
    for pair in PAIRS {
        for k in pair.all_ks() {
            let npy = pair.load(k, false);
            for t in 0..pair.nto {
                for s in 0..pair.nti {
                    for u in 0..k {
                        for v in 0..k {
                            let i = 3 * at(pair.nti, k, t, s, u, v);
                            let want = (
                                npy.data[i] as usize,
                                npy.data[i + 1] as usize,
                                npy.data[i + 2] as usize,
                            );
                            assert_eq!(
                                table_entry(pair.nti, k, t, s, u, v),
                                Some(want),
                                "{} K={k} (t={t}, s={s}, u={u}, v={v})",
                                pair.stem
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Const table == run-time `table_entry` == matrix oracle, entry by entry.
fn check_table_vs_runtime_and_oracle<const NTO: usize, const NTI: usize, const K: usize>(
    pair: &Pair,
    table: &IndexTable<NTO, NTI, K>,
) {
    assert_eq!(
        (NTO, NTI),
        (pair.nto, pair.nti),
        "{}: wrong constructor",
        pair.stem
    );
    for t in 0..NTO {
        for s in 0..NTI {
            for u in 0..K {
                for v in 0..K {
                    let [p, su, sv] = table.entries[t][s][u][v].map(usize::from);
                    let here = format!("{} K={K} (t={t}, s={s}, u={u}, v={v})", pair.stem);
                    assert_eq!(
                        table_entry(NTI, K, t, s, u, v),
                        Some((p, su, sv)),
                        "runtime vs const, {here}"
                    );
                    assert_eq!(
                        oracle_entry(pair.group, NTI, K, t, s, u, v),
                        [p, su, sv],
                        "oracle vs const, {here}"
                    );
                }
            }
        }
    }
}

/// K = 6, 7 have no GrouPy file: the const tables must equal the run-time entries and the
/// matrix oracle there too.
#[test]
fn runtime_table_entry_equals_const_tables_k6_k7() {
    for_each_k!(z2_c4, [6, 7], |table| check_table_vs_runtime_and_oracle(
        &C4_Z2, &table
    ));
    for_each_k!(c4_c4, [6, 7], |table| check_table_vs_runtime_and_oracle(
        &C4_P4, &table
    ));
    for_each_k!(z2_d4, [6, 7], |table| check_table_vs_runtime_and_oracle(
        &D4_Z2, &table
    ));
    for_each_k!(d4_d4, [6, 7], |table| check_table_vs_runtime_and_oracle(
        &D4_P4M, &table
    ));
}

/// The matrix oracle reproduces every GrouPy file too, so it is a trustworthy second
/// reference for the sizes GrouPy has no file for.
#[test]
fn matrix_oracle_equals_groupy_files() {
    for pair in PAIRS {
        for k in pair.all_ks() {
            let npy = pair.load(k, false);
            for t in 0..pair.nto {
                for s in 0..pair.nti {
                    for u in 0..k {
                        for v in 0..k {
                            let i = 3 * at(pair.nti, k, t, s, u, v);
                            let want =
                                [npy.data[i], npy.data[i + 1], npy.data[i + 2]].map(|x| x as usize);
                            assert_eq!(
                                oracle_entry(pair.group, pair.nti, k, t, s, u, v),
                                want,
                                "{} K={k} (t={t}, s={s}, u={u}, v={v})",
                                pair.stem
                            );
                        }
                    }
                }
            }
        }
    }
}

/// GrouPy's flat index from one `(T, U, V)` entry: position of `w[T][U][V]` in a filter
/// laid out `(K, K, nti)`.
fn groupy_flat(nti: usize, k: usize, [t, u, v]: [usize; 3]) -> usize {
    (u * k + v) * nti + t
}

fn check_flat_vs_npy<const NTO: usize, const NTI: usize, const K: usize>(
    pair: &Pair,
    table: &IndexTable<NTO, NTI, K>,
) {
    let npy = pair.load(K, true);
    let filter_len = NTI * K * K;
    for t in 0..NTO {
        let mut seen = vec![false; filter_len];
        for s in 0..NTI {
            for u in 0..K {
                for v in 0..K {
                    let want = npy.data[at(NTI, K, t, s, u, v)];
                    let entry = table.entries[t][s][u][v].map(usize::from);
                    let got = groupy_flat(NTI, K, entry);
                    assert_eq!(
                        got as i32, want,
                        "{} K={K} flat index (t={t}, s={s}, u={u}, v={v})",
                        pair.stem
                    );
                    let slot = usize::try_from(want).expect("negative flat index");
                    assert!(
                        !seen[slot],
                        "{} K={K} t={t}: flat index {slot} repeated",
                        pair.stem
                    );
                    seen[slot] = true;
                }
            }
        }
        // Each output orientation is a permutation of the raw filter.
        assert!(
            seen.iter().all(|&x| x),
            "{} K={K} t={t}: not a permutation",
            pair.stem
        );
    }
}

/// `indices_flat_*` is `U*K*nti + V*nti + T` of the `(T, U, V)` table, and each output
/// orientation's slice is a permutation of `0..nti*K*K`.
#[test]
fn flat_indices_equal_groupy() {
    for_each_k!(z2_c4, [1, 2, 3, 4, 5], |table| check_flat_vs_npy(
        &C4_Z2, &table
    ));
    for_each_k!(c4_c4, [1, 2, 3, 4, 5], |table| check_flat_vs_npy(
        &C4_P4, &table
    ));
    for_each_k!(z2_d4, [1, 2, 3, 4, 5], |table| check_flat_vs_npy(
        &D4_Z2, &table
    ));
    for_each_k!(d4_d4, [1, 2, 3, 4, 5], |table| check_flat_vs_npy(
        &D4_P4M, &table
    ));
}

/// Bank `(C_out*nto, C_in*nti, K, K)` gathered from raw `w` `(C_out, C_in, nti, K, K)` by a
/// `(T, U, V)` lookup: `tw[o][t][i][s][u][v] = w[o][i][T][U][V]`.
fn gather_by_entries(
    pair: &Pair,
    k: usize,
    c_out: usize,
    c_in: usize,
    raw: &[f32],
    entry: impl Fn(usize, usize, usize, usize) -> [usize; 3],
) -> Vec<f32> {
    let (nto, nti) = (pair.nto, pair.nti);
    let mut bank = vec![f32::NAN; c_out * nto * c_in * nti * k * k];
    for o in 0..c_out {
        for t in 0..nto {
            for i in 0..c_in {
                for s in 0..nti {
                    for u in 0..k {
                        for v in 0..k {
                            let [tt, uu, vv] = entry(t, s, u, v);
                            let src = (((o * c_in + i) * nti + tt) * k + uu) * k + vv;
                            let dst = ((((o * nto + t) * c_in + i) * nti + s) * k + u) * k + v;
                            bank[dst] = raw[src];
                        }
                    }
                }
            }
        }
    }
    bank
}

/// Bank gathered GrouPy-style with the flat index: transpose each raw filter to
/// `(K, K, nti)`, then `tw[o][t][i][s][u][v] = w_t[o][i][flat[t][s][u][v]]`.
fn gather_by_flat(
    pair: &Pair,
    k: usize,
    c_out: usize,
    c_in: usize,
    raw: &[f32],
    flat: &NpyI32,
) -> Vec<f32> {
    let (nto, nti) = (pair.nto, pair.nti);
    let filter_len = nti * k * k;
    let mut transposed = vec![f32::NAN; raw.len()];
    for f in 0..c_out * c_in {
        for s in 0..nti {
            for u in 0..k {
                for v in 0..k {
                    transposed[f * filter_len + (u * k + v) * nti + s] =
                        raw[f * filter_len + (s * k + u) * k + v];
                }
            }
        }
    }
    let mut bank = vec![f32::NAN; c_out * nto * c_in * filter_len];
    for o in 0..c_out {
        for t in 0..nto {
            for i in 0..c_in {
                let filter = &transposed[(o * c_in + i) * filter_len..][..filter_len];
                let out = &mut bank[((o * nto + t) * c_in + i) * filter_len..][..filter_len];
                for (j, x) in out.iter_mut().enumerate() {
                    *x = filter[flat.data[t * filter_len + j] as usize];
                }
            }
        }
    }
    bank
}

fn random_weights(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Bitwise equality (a NaN left in a bank is an unwritten element and fails).
fn assert_same_bank(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() && !g.is_nan(),
            "{what}: element {j}: {g} != {w}"
        );
    }
}

/// `expand_filter_bank::<G>` (run-time K) and `IndexTable::expand` (const K) give the same
/// bank, equal to the gather from the matrix oracle and, when `with_files` (the sizes
/// that have a reference file), to gathers done directly from the reference files (both
/// the `(T, U, V)` and the flat one).
fn check_expand<G: Group, const NTO: usize, const NTI: usize, const K: usize>(
    _group: G,
    with_files: bool,
    pair: &Pair,
    table: &IndexTable<NTO, NTI, K>,
    rng: &mut StdRng,
) {
    assert_eq!(
        (G::ORDER, NTO, NTI),
        (pair.nto, pair.nto, pair.nti),
        "{}: wrong table",
        pair.stem
    );
    let domain = if NTI == 1 { Domain::Z2 } else { Domain::Group };
    for (c_out, c_in) in [(1, 1), (2, 3), (3, 2)] {
        let what = format!("{} K={K} C_out={c_out} C_in={c_in}", pair.stem);
        let raw = random_weights(rng, c_out * c_in * NTI * K * K);
        let bank_len = c_out * NTO * c_in * NTI * K * K;

        let mut runtime = vec![f32::NAN; bank_len];
        expand_filter_bank::<G>(domain, c_out, c_in, K, &raw, &mut runtime)
            .unwrap_or_else(|e| panic!("{what}: expand_filter_bank failed: {e}"));
        let mut constant = vec![f32::NAN; bank_len];
        table
            .expand(c_out, c_in, &raw, &mut constant)
            .unwrap_or_else(|e| panic!("{what}: IndexTable::expand failed: {e}"));
        assert_same_bank(
            &constant,
            &runtime,
            &format!("{what}: const vs run-time expansion"),
        );

        let oracle = gather_by_entries(pair, K, c_out, c_in, &raw, |t, s, u, v| {
            oracle_entry(pair.group, NTI, K, t, s, u, v)
        });
        assert_same_bank(
            &runtime,
            &oracle,
            &format!("{what}: expansion vs matrix-oracle gather"),
        );

        if with_files {
            let npy = pair.load(K, false);
            let by_file = gather_by_entries(pair, K, c_out, c_in, &raw, |t, s, u, v| {
                let i = 3 * at(NTI, K, t, s, u, v);
                [npy.data[i], npy.data[i + 1], npy.data[i + 2]].map(|x| x as usize)
            });
            assert_same_bank(
                &runtime,
                &by_file,
                &format!("{what}: expansion vs GrouPy (T, U, V) gather"),
            );
            let flat = pair.load(K, true);
            let by_flat = gather_by_flat(pair, K, c_out, c_in, &raw, &flat);
            assert_same_bank(
                &runtime,
                &by_flat,
                &format!("{what}: expansion vs GrouPy flat gather"),
            );
        }
    }
}

#[test]
fn expansion_equals_groupy_gather() {
    let mut rng = StdRng::seed_from_u64(0x6c0f_5eed);
    for_each_k!(z2_c4, [1, 2, 3, 4, 5], |table| check_expand(
        C4, true, &C4_Z2, &table, &mut rng
    ));
    for_each_k!(c4_c4, [1, 2, 3, 4, 5], |table| check_expand(
        C4, true, &C4_P4, &table, &mut rng
    ));
    for_each_k!(z2_d4, [1, 2, 3, 4, 5], |table| check_expand(
        D4, true, &D4_Z2, &table, &mut rng
    ));
    for_each_k!(d4_d4, [1, 2, 3, 4, 5], |table| check_expand(
        D4, true, &D4_P4M, &table, &mut rng
    ));
}

/// Sizes without a reference file: run-time vs const vs matrix oracle.
#[test]
fn expansion_equals_oracle_gather_k6_k7() {
    let mut rng = StdRng::seed_from_u64(0x0067_0067);
    for_each_k!(z2_c4, [6, 7], |table| check_expand(
        C4, false, &C4_Z2, &table, &mut rng
    ));
    for_each_k!(c4_c4, [6, 7], |table| check_expand(
        C4, false, &C4_P4, &table, &mut rng
    ));
    for_each_k!(z2_d4, [6, 7], |table| check_expand(
        D4, false, &D4_Z2, &table, &mut rng
    ));
    for_each_k!(d4_d4, [6, 7], |table| check_expand(
        D4, false, &D4_P4M, &table, &mut rng
    ));
}

const SENTINEL: f32 = -1234.5;

/// Runs a failing expansion on a sentinel-filled bank: the error must come back as a
/// value and the bank must be untouched.
fn expect_error(
    what: &str,
    want: Error,
    bank_len: usize,
    run: impl FnOnce(&mut [f32]) -> Result<(), Error>,
) {
    let mut bank = vec![SENTINEL; bank_len];
    assert_eq!(run(&mut bank), Err(want), "{what}");
    assert!(
        bank.iter().all(|&x| x == SENTINEL),
        "{what}: bank written before the error"
    );
}

/// Bad arguments to `expand_filter_bank::<G>`: errors as values, nothing written.
fn check_runtime_expand_errors<G: Group>(domain: Domain) {
    let nti = domain.planes::<G>();
    let (c_out, c_in, k) = (2, 3, 3);
    let raw_len = c_out * c_in * nti * k * k;
    let bank_len = raw_len * G::ORDER;
    let raw = vec![0.5f32; raw_len];
    let name = format!("expand_filter_bank::<{}>({domain:?})", G::NAME);

    let short = &raw[..raw_len - 1];
    let weight_err = |found| Error::BufferLength {
        buffer: Buffer::Weight,
        expected: raw_len,
        found,
    };
    expect_error(
        &format!("{name}: short raw"),
        weight_err(raw_len - 1),
        bank_len,
        |b| expand_filter_bank::<G>(domain, c_out, c_in, k, short, b),
    );
    let long = vec![0.5f32; raw_len + 1];
    expect_error(
        &format!("{name}: long raw"),
        weight_err(raw_len + 1),
        bank_len,
        |b| expand_filter_bank::<G>(domain, c_out, c_in, k, &long, b),
    );
    for found in [bank_len - 1, bank_len + 1, 0] {
        let want = Error::BufferLength {
            buffer: Buffer::Bank,
            expected: bank_len,
            found,
        };
        expect_error(&format!("{name}: bank of {found}"), want, found, |b| {
            expand_filter_bank::<G>(domain, c_out, c_in, k, &raw, b)
        });
    }
    expect_error(
        &format!("{name}: zero C_out"),
        Error::ZeroDimension(Dim::OutChannels),
        bank_len,
        |b| expand_filter_bank::<G>(domain, 0, c_in, k, &raw, b),
    );
    expect_error(
        &format!("{name}: zero C_in"),
        Error::ZeroDimension(Dim::InChannels),
        bank_len,
        |b| expand_filter_bank::<G>(domain, c_out, 0, k, &raw, b),
    );
    expect_error(
        &format!("{name}: zero C_out, empty buffers"),
        Error::ZeroDimension(Dim::OutChannels),
        0,
        |b| expand_filter_bank::<G>(domain, 0, c_in, k, &[], b),
    );
    expect_error(
        &format!("{name}: zero K"),
        Error::ZeroDimension(Dim::Kernel),
        bank_len,
        |b| expand_filter_bank::<G>(domain, c_out, c_in, 0, &raw, b),
    );
    expect_error(
        &format!("{name}: overflowing C_out"),
        Error::SizeOverflow,
        bank_len,
        |b| expand_filter_bank::<G>(domain, usize::MAX / 2, c_in, k, &raw, b),
    );
}

/// Bad arguments to `IndexTable::expand`: errors as values, nothing written.
fn check_const_expand_errors<const NTO: usize, const NTI: usize, const K: usize>(
    table: &IndexTable<NTO, NTI, K>,
) {
    let (c_out, c_in) = (2, 3);
    let raw_len = c_out * c_in * NTI * K * K;
    let bank_len = raw_len * NTO;
    let raw = vec![0.5f32; raw_len];
    let name = format!("IndexTable<{NTO}, {NTI}, {K}>::expand");

    let want = Error::BufferLength {
        buffer: Buffer::Weight,
        expected: raw_len,
        found: raw_len - 1,
    };
    expect_error(&format!("{name}: short raw"), want, bank_len, |b| {
        table.expand(c_out, c_in, &raw[..raw_len - 1], b)
    });
    for found in [bank_len - 1, bank_len + 1] {
        let want = Error::BufferLength {
            buffer: Buffer::Bank,
            expected: bank_len,
            found,
        };
        expect_error(&format!("{name}: bank of {found}"), want, found, |b| {
            table.expand(c_out, c_in, &raw, b)
        });
    }
    expect_error(
        &format!("{name}: zero C_out"),
        Error::ZeroDimension(Dim::OutChannels),
        bank_len,
        |b| table.expand(0, c_in, &raw, b),
    );
    expect_error(
        &format!("{name}: zero C_in"),
        Error::ZeroDimension(Dim::InChannels),
        bank_len,
        |b| table.expand(c_out, 0, &raw, b),
    );
    expect_error(
        &format!("{name}: overflowing C_in"),
        Error::SizeOverflow,
        bank_len,
        |b| table.expand(c_out, usize::MAX / 3, &raw, b),
    );
}

#[test]
fn expansion_errors_are_values() {
    check_runtime_expand_errors::<C4>(Domain::Z2);
    check_runtime_expand_errors::<C4>(Domain::Group);
    check_runtime_expand_errors::<D4>(Domain::Z2);
    check_runtime_expand_errors::<D4>(Domain::Group);
    check_const_expand_errors(&z2_c4::<3>());
    check_const_expand_errors(&c4_c4::<2>());
    check_const_expand_errors(&z2_d4::<4>());
    check_const_expand_errors(&d4_d4::<3>());
}

/// Out-of-range indices and unknown plane counts give `None`, never a panic.
#[test]
fn table_entry_out_of_range_is_none() {
    assert_eq!(table_entry(4, 3, 4, 4, 0, 0), None); // s >= nti
    assert_eq!(table_entry(4, 3, 8, 0, 0, 0), None); // t >= 8
    assert_eq!(table_entry(1, 3, 0, 0, 3, 0), None); // u >= k
    assert_eq!(table_entry(1, 3, 0, 0, 0, 3), None); // v >= k
    assert_eq!(table_entry(3, 3, 0, 0, 0, 0), None); // nti not 1, 4 or 8
    assert_eq!(table_entry(1, 0, 0, 0, 0, 0), None); // empty kernel
    // Anti-transpose (7): plane 7^-1 * 5 = 2, (u, v) -> (K-1-v, K-1-u).
    assert_eq!(table_entry(8, 3, 7, 5, 0, 1), Some((2, 1, 2)));
}
