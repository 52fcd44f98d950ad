//! One plan API for every forward path: the layer's shape and the caller's choice in,
//! the algorithm, its buffer sizes, weight preparation and the forward pass out. The
//! same calls on a microcontroller (no allocation: every buffer is the caller's) and
//! on a server (gconv-std builds one plan per input shape and caches it).
//!
//! ```text
//! Plan::new(domain, shape, choice, isa)        which algorithm runs, validated once
//! prepare_weights(raw, prepared, scratch)      once per weight change
//! forward(input, prepared, bias, output, scratch)   per call
//! ```
//!
//! # The algorithms
//!
//! | [`Algorithm`] | prepared weights | forward scratch |
//! |---|---|---|
//! | [`Direct`](Algorithm::Direct) ([`conv`](crate::conv)) | expanded bank `(C_out*\|G\|, C_in*nti, K, K)` | none |
//! | [`Blocked`](Algorithm::Blocked) ([`blocked`]) | the raw weights `(C_out, C_in, nti, K, K)` themselves | one packed block, `MR * C_in*nti * K*K` |
//! | [`Fast`](Algorithm::Fast) ([`fast`](crate::fast)) | the bank packed `(C_out*\|G\|/MR, C_in*nti, K*K, MR)` | one packed input image |
//! | [`Fourier`](Algorithm::Fourier) ([`fourier`](crate::fourier)) | the transformed, packed `A_rho` | padded image and one pixel block |
//!
//! The blocked path's prepared weights are the raw weights, so firmware may skip
//! [`Plan::prepare_weights`] and pass its weights straight from flash.
//!
//! # Choosing ([`AlgorithmChoice::Auto`])
//!
//! 1. With the portable micro-kernel on a target that is not x86 (a Cortex-M, or any
//!    build without x86 SIMD), the blocked path: [`auto_picks_blocked`].
//! 2. Otherwise the Fourier path where the cost model [`fourier_pays`] says it beats
//!    the fast path, else the fast path where it applies (`K <=`
//!    [`MAX_KERNEL`](crate::fast::MAX_KERNEL)), else the direct path.
//!
//! An explicit choice the layer cannot take is an error from [`Plan::new`] (the
//! fast and Fourier paths' [`Error::KernelTooLargeForFastPath`], for one).
//!
//! # The micro-kernel
//!
//! `isa` is the fast path's [`Kernel`], used by the fast and Fourier algorithms.
//! gconv-core cannot detect CPU features, so the caller passes it: firmware and
//! plain builds pass [`Kernel::compiled`] (or [`Kernel::Portable`]); a std caller
//! passes what it detected at run time. [`Plan::forward`] calls only kernels
//! compiled into the build ([`Kernel::is_compiled`]) and returns
//! [`Error::KernelNotCompiled`] otherwise; a caller with a detected kernel runs the
//! plan's [`fast_plan`](Plan::fast_plan) or [`fourier_plan`](Plan::fourier_plan)
//! through its own run-time dispatch (as `gconv_std` does), with the same prepared
//! weights.
//!
//! # Scratch
//!
//! Every scratch buffer is at least the queried length; its contents are ignored on
//! entry and garbage on exit.
//!
//! ```
//! use gconv_core::plan::{Algorithm, AlgorithmChoice, Plan};
//! use gconv_core::{C4, ConvShape, Domain, Padding, fast::Kernel};
//!
//! // One 6x6 C4 feature map with 2 G-channels to 3 G-channels, 3x3 filters.
//! let shape = ConvShape { batch: 1, in_channels: 2, out_channels: 3, height: 6, width: 6,
//!                         kernel: 3, stride: 1, padding: Padding::Same };
//! let plan = Plan::<C4>::new(Domain::Group, &shape, AlgorithmChoice::Blocked,
//!                            Kernel::Portable)?;
//! assert_eq!(plan.algorithm(), Algorithm::Blocked);
//! let geo = plan.geometry();
//! let raw = [0.25f32; 3 * 2 * 4 * 9]; // (C_out, C_in, nti, K, K)
//! let mut prepared = [0.0f32; 3 * 2 * 4 * 9];
//! assert_eq!(plan.prepared_weights_len(), prepared.len());
//! assert_eq!(plan.prepare_scratch_len(), 0);
//! plan.prepare_weights(&raw, &mut prepared, &mut [])?;
//! let input = [1.0f32; 2 * 4 * 36];
//! let mut output = [0.0f32; 3 * 4 * 36];
//! assert_eq!(geo.output_len(), output.len());
//! let mut scratch = [0.0f32; 2 * 2 * 4 * 9];
//! assert!(plan.scratch_len() <= scratch.len());
//! plan.forward(&input, &prepared, None, &mut output, &mut scratch)?;
//! assert_eq!(output[2 * 6 + 2], 0.25 * 72.0); // interior pixel: 2*4 planes x 9 taps
//! # Ok::<(), gconv_core::Error>(())
//! ```

use core::marker::PhantomData;

use crate::blocked;
use crate::conv::check_io;
use crate::conv::expand::expand_for;
use crate::driver::correlate;
use crate::error::{Buffer, Error, check_len, scratch_prefix};
use crate::fast::{FastPlan, Kernel};
use crate::fourier::FourierPlan;
use crate::group::Group;
use crate::shape::{ConvGeometry, ConvShape, Domain};

/// The algorithm a [`Plan`] runs. All compute the same convolution; they round
/// differently (see each module's `# Rounding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// The direct correlation with the expanded bank ([`conv`](crate::conv)).
    Direct,
    /// The register-blocked path from the raw weights ([`blocked`]),
    /// for targets without x86 SIMD.
    Blocked,
    /// The register-tiled fast path on a packed bank ([`fast`](crate::fast)).
    Fast,
    /// The group-Fourier path ([`fourier`](crate::fourier)).
    Fourier,
}

impl Algorithm {
    /// Every algorithm.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::Direct,
        Algorithm::Blocked,
        Algorithm::Fast,
        Algorithm::Fourier,
    ];

    /// Short name: `direct`, `blocked`, `fast` or `fourier`.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Direct => "direct",
            Algorithm::Blocked => "blocked",
            Algorithm::Fast => "fast",
            Algorithm::Fourier => "fourier",
        }
    }
}

/// The algorithm a caller asks [`Plan::new`] for: one of them, or
/// [`Auto`](AlgorithmChoice::Auto).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AlgorithmChoice {
    /// The plan chooses (see the [module docs](self)).
    #[default]
    Auto,
    /// [`Algorithm::Direct`]; takes every layer.
    Direct,
    /// [`Algorithm::Blocked`]; takes C4 and D4 layers of any kernel size.
    Blocked,
    /// [`Algorithm::Fast`]; kernels up to [`MAX_KERNEL`](crate::fast::MAX_KERNEL).
    Fast,
    /// [`Algorithm::Fourier`]; kernels up to [`MAX_KERNEL`](crate::fast::MAX_KERNEL).
    Fourier,
}

impl From<Algorithm> for AlgorithmChoice {
    fn from(a: Algorithm) -> Self {
        match a {
            Algorithm::Direct => AlgorithmChoice::Direct,
            Algorithm::Blocked => AlgorithmChoice::Blocked,
            Algorithm::Fast => AlgorithmChoice::Fast,
            Algorithm::Fourier => AlgorithmChoice::Fourier,
        }
    }
}

/// Whether [`AlgorithmChoice::Auto`] runs the blocked path with micro-kernel `isa` in
/// this build: `isa` is [`Kernel::Portable`] and the build does not target x86 or
/// x86_64 (the microcontroller path; x86 builds keep the fast and Fourier paths, whose
/// portable kernel auto-vectorizes to SSE2).
pub const fn auto_picks_blocked(isa: Kernel) -> bool {
    blocked_rule(isa, cfg!(any(target_arch = "x86", target_arch = "x86_64")))
}

/// [`auto_picks_blocked`] with the target's architecture as an argument, so the
/// rule is tested for both answers on any host.
const fn blocked_rule(isa: Kernel, x86: bool) -> bool {
    matches!(isa, Kernel::Portable) && !x86
}

/// Whether the Fourier path is expected to beat the fast path on `fourier`'s layer;
/// `fast` is the fast path's plan of the same layer.
///
/// A cost model in multiply-add equivalents, per call, with constants measured on
/// one core of a Zen 4 (AVX-512); the fast path pays its multiply-adds
/// ([`FastPlan::macs_run_per_image`]).
///
/// * Group layers (the GEMMs): the GEMMs' multiply-adds
///   ([`FourierPlan::macs_per_image`]), 12 per value the transforms read and write
///   ([`FourierPlan::transform_values_per_image`]; they run at about a twelfth of the
///   GEMMs' rate per value) and 800 000 per call (plans and block set-up, about
///   15 us). Measured outcome (README table): the C4 and D4 group layers from 10->10
///   channels up take the Fourier path (1.6-3.7x faster than the fast path); the 4->4
///   channel layer at 16x16 keeps the fast path.
/// * Lifting layers (the fused kernel, [`FourierPlan::lifting_kernel`]): 1.5 per
///   multiply-add of the kernel (they run at about two thirds of the fast path's rate:
///   a weight broadcast per multiply-add and short loops), 3.6 (C4) or 19 (D4) per
///   output value for the synthesis and the stores, and 90 000 per call. Fitted by
///   `gconv-bench/fit_lifting_cost.py` (non-negative least squares) on 54 lifting
///   layers (C4 and D4, 1/3/8 input channels, 3x3/5x5/7x7, 32/96/224 pixels wide, 16
///   output channels; times in `gconv-bench/lifting_cost_times.txt`): it picks the
///   faster path on 51 of them and costs at most 20% on the other three (D4 layers
///   where the paths are within 6-20%). It takes the Fourier path for every C4
///   lifting layer there except 1->16 3x3 on 32x32 (fast 0.012 ms, Fourier 0.013),
///   and keeps the fast path for the D4 3x3 layers with 1 or 3 input channels and the
///   D4 1->16 5x5 layers from 96x96 up.
pub fn fourier_pays(fast: &FastPlan, fourier: &FourierPlan) -> bool {
    let images = fourier.geometry().batch() as f64;
    let fast_cost = images * fast.macs_run_per_image() as f64;
    let fourier_cost = if fourier.lifting_kernel() {
        let per_output = if fourier.geometry().nto() == 4 {
            3.6
        } else {
            19.0
        };
        let outputs = fast.image_output_len() as f64;
        images * (1.5 * fourier.macs_per_image() as f64 + per_output * outputs) + 90_000.0
    } else {
        images
            * (fourier.macs_per_image() as f64 + 12.0 * fourier.transform_values_per_image() as f64)
            + 800_000.0
    };
    fourier_cost < fast_cost
}

/// What a plan runs, with the path's own plan where it has one.
#[derive(Clone, Debug)]
// The Fourier plan holds a fast plan (about 1 KiB of tap offsets); a plan is built
// once per layer and input shape, and boxing is not available without allocation.
#[allow(clippy::large_enum_variant)]
enum Body {
    Direct,
    Blocked,
    Fast(FastPlan),
    Fourier(FourierPlan),
}

/// A validated convolution from a [`Domain`] to group `G` for one [`ConvShape`],
/// with the algorithm that runs it: buffer sizes, weight preparation and the forward
/// pass. Cheap to build, no allocation; build it once per input shape.
///
/// Layouts as in [`conv`](crate::conv): input `(N, C_in, nti, H, W)` (`nti = 1` for
/// Z2, `|G|` for group input), raw weight `(C_out, C_in, nti, K, K)`, bias
/// `(C_out,)`, output `(N, C_out, |G|, H', W')`.
#[derive(Clone, Debug)]
pub struct Plan<G: Group> {
    geo: ConvGeometry,
    isa: Kernel,
    body: Body,
    _group: PhantomData<G>,
}

impl<G: Group> Plan<G> {
    /// Validates `shape` for a convolution from `domain` to `G` and chooses the
    /// algorithm: `choice`, or for [`AlgorithmChoice::Auto`] the rule of the
    /// [module docs](self). `isa` is the micro-kernel the fast and Fourier algorithms
    /// run (see the module docs; it may be a kernel this build cannot call, for a
    /// caller that runs the path itself).
    ///
    /// # Errors
    /// Any error of [`ConvShape::geometry`] ([`Error::ZeroDimension`],
    /// [`Error::SameNeedsOddKernel`], [`Error::KernelLargerThanInput`],
    /// [`Error::SizeOverflow`]); for an explicit choice the layer cannot take, that
    /// path's error: [`Error::KernelTooLargeForFastPath`] (fast, Fourier),
    /// [`Error::GroupOrderNotTileable`] (blocked, fast, Fourier, for a group other
    /// than C4 and D4).
    pub fn new(
        domain: Domain,
        shape: &ConvShape,
        choice: AlgorithmChoice,
        isa: Kernel,
    ) -> Result<Self, Error> {
        let geo = shape.geometry::<G>(domain)?;
        // The light bodies are built here; the fast and Fourier plans out of line
        // (`heavy`), so that a plan of the blocked or direct path costs its caller
        // no more stack than the plan itself (building a Fourier plan takes several
        // kilobytes, which matters on a microcontroller).
        let light = match choice {
            AlgorithmChoice::Auto => auto_picks_blocked(isa) && blocked_takes(&geo).is_ok(),
            AlgorithmChoice::Blocked => {
                blocked_takes(&geo)?;
                true
            }
            AlgorithmChoice::Direct => {
                return Ok(Plan {
                    geo,
                    isa,
                    body: Body::Direct,
                    _group: PhantomData,
                });
            }
            AlgorithmChoice::Fast | AlgorithmChoice::Fourier => false,
        };
        if light {
            return Ok(Plan {
                geo,
                isa,
                body: Body::Blocked,
                _group: PhantomData,
            });
        }
        Self::heavy(geo, choice, isa)
    }

    /// [`new`](Self::new) for the fast and Fourier paths and Auto's choice between
    /// them (Auto has ruled the blocked path out).
    #[inline(never)]
    fn heavy(geo: ConvGeometry, choice: AlgorithmChoice, isa: Kernel) -> Result<Self, Error> {
        let body = match choice {
            AlgorithmChoice::Fourier => Body::Fourier(FourierPlan::new(&geo)?),
            AlgorithmChoice::Fast => Body::Fast(FastPlan::new(&geo)?),
            _ => auto_fast_or_fourier(&geo),
        };
        Ok(Plan {
            geo,
            isa,
            body,
            _group: PhantomData,
        })
    }

    /// The algorithm this plan runs.
    pub const fn algorithm(&self) -> Algorithm {
        match self.body {
            Body::Direct => Algorithm::Direct,
            Body::Blocked => Algorithm::Blocked,
            Body::Fast(_) => Algorithm::Fast,
            Body::Fourier(_) => Algorithm::Fourier,
        }
    }

    /// The validated geometry: output shape, buffer lengths, MACs.
    pub const fn geometry(&self) -> &ConvGeometry {
        &self.geo
    }

    /// The micro-kernel the fast and Fourier algorithms run, as given to
    /// [`new`](Self::new).
    pub const fn isa(&self) -> Kernel {
        self.isa
    }

    /// The fast path's plan, when the algorithm is [`Algorithm::Fast`]: for callers
    /// that run it with a kernel detected at run time or split it over threads.
    pub const fn fast_plan(&self) -> Option<&FastPlan> {
        match &self.body {
            Body::Fast(p) => Some(p),
            _ => None,
        }
    }

    /// The Fourier path's plan, when the algorithm is [`Algorithm::Fourier`]: for
    /// callers that run it with a kernel detected at run time or split it over
    /// threads.
    pub const fn fourier_plan(&self) -> Option<&FourierPlan> {
        match &self.body {
            Body::Fourier(p) => Some(p),
            _ => None,
        }
    }

    /// Length (f32) of the prepared weights [`forward`](Self::forward) takes:
    ///
    /// * Direct: the expanded bank, `C_out*|G| * C_in*nti * K*K`
    ///   ([`bank_len`](ConvGeometry::bank_len));
    /// * Blocked: the raw weights, `C_out * C_in*nti * K*K`
    ///   ([`weight_len`](ConvGeometry::weight_len)): they are its prepared weights;
    /// * Fast: the packed bank ([`FastPlan::packed_bank_len`], the bank's length);
    /// * Fourier: [`FourierPlan::packed_weights_len`].
    pub const fn prepared_weights_len(&self) -> usize {
        match &self.body {
            Body::Direct => self.geo.bank_len(),
            Body::Blocked => self.geo.weight_len(),
            Body::Fast(p) => p.packed_bank_len(),
            Body::Fourier(p) => p.packed_weights_len(),
        }
    }

    /// Length (f32) of the scratch [`prepare_weights`](Self::prepare_weights) needs:
    /// the expanded bank for Fast (expanded there, then packed), 0 for the others.
    pub const fn prepare_scratch_len(&self) -> usize {
        match &self.body {
            Body::Fast(_) => self.geo.bank_len(),
            _ => 0,
        }
    }

    /// Prepares the raw weights `raw` `(C_out, C_in, nti, K, K)` for
    /// [`forward`](Self::forward) into `prepared` (exactly
    /// [`prepared_weights_len`](Self::prepared_weights_len) values, every one
    /// written): expanded (Direct), copied (Blocked), expanded and packed (Fast),
    /// transformed and packed (Fourier). Run once per weight change; the result does
    /// not depend on the input size, so every plan of the layer with the same
    /// algorithm takes it. `scratch` needs at least
    /// [`prepare_scratch_len`](Self::prepare_scratch_len) values.
    ///
    /// # Errors
    /// [`Error::BufferLength`] for `raw` ([`Buffer::Weight`]) not exactly
    /// [`weight_len`](ConvGeometry::weight_len) long, `prepared` ([`Buffer::Bank`])
    /// not exactly `prepared_weights_len()`, or `scratch` shorter than
    /// `prepare_scratch_len()`. Nothing is written on error.
    pub fn prepare_weights(
        &self,
        raw: &[f32],
        prepared: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<(), Error> {
        check_len(Buffer::Weight, raw.len(), self.geo.weight_len())?;
        check_len(Buffer::Bank, prepared.len(), self.prepared_weights_len())?;
        let scratch = scratch_prefix(scratch, self.prepare_scratch_len())?;
        match &self.body {
            Body::Direct => expand_for(&self.geo, raw, prepared),
            Body::Blocked => {
                // Both lengths checked equal above; a zipped copy has no panic path
                // (`copy_from_slice` keeps its length check, which the compiler does
                // not drop here).
                for (d, &v) in prepared.iter_mut().zip(raw) {
                    *d = v;
                }
                Ok(())
            }
            Body::Fast(p) => {
                expand_for(&self.geo, raw, scratch)?;
                p.pack_bank(scratch, prepared)
            }
            Body::Fourier(p) => p.pack_weights(raw, prepared),
        }
    }

    /// Length (f32) of the scratch [`forward`](Self::forward) needs: 0 (Direct),
    /// one packed block ([`blocked::scratch_len_for`], Blocked), one packed input image
    /// ([`FastPlan::packed_input_len`], Fast), [`FourierPlan::scratch_len`] (Fourier).
    pub const fn scratch_len(&self) -> usize {
        match &self.body {
            Body::Direct => 0,
            Body::Blocked => blocked::scratch_len_for(&self.geo),
            Body::Fast(p) => p.packed_input_len(),
            Body::Fourier(p) => p.scratch_len(),
        }
    }

    /// The forward pass: `input` `(N, C_in, nti, H, W)` to `output`
    /// `(N, C_out, |G|, H', W')`,
    ///
    /// ```text
    /// y[n][o][t][a][b] = bias[o] + sum_{i, s, p, q} xpad[n][i][s][a*stride + p][b*stride + q]
    ///                                              * tw[o][t][i][s][p][q]
    /// ```
    ///
    /// (`tw` the raw weight expanded by the index table, see [`conv`](crate::conv)),
    /// with `prepared` from [`prepare_weights`](Self::prepare_weights) (for Blocked,
    /// the raw weights). Every element of `output` is written. `scratch` needs at
    /// least [`scratch_len`](Self::scratch_len) values.
    ///
    /// # Errors
    /// [`Error::BufferLength`] when `input`, `prepared` ([`Buffer::Weight`] for
    /// Blocked, whose prepared weights are the raw ones, else [`Buffer::Bank`]),
    /// `bias` or `output` does not have exactly its length, or `scratch` is shorter
    /// than `scratch_len()`; [`Error::KernelNotCompiled`] when the fast or Fourier
    /// algorithm's [`isa`](Self::isa) is not compiled into this build
    /// ([`Kernel::is_compiled`]). Everything is checked before anything is written:
    /// nothing is written on error.
    pub fn forward(
        &self,
        input: &[f32],
        prepared: &[f32],
        bias: Option<&[f32]>,
        output: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<(), Error> {
        let geo = &self.geo;
        check_io(geo, input, bias, output)?;
        let prepared_buffer = match self.body {
            Body::Blocked => Buffer::Weight,
            _ => Buffer::Bank,
        };
        check_len(prepared_buffer, prepared.len(), self.prepared_weights_len())?;
        let scratch = scratch_prefix(scratch, self.scratch_len())?;
        if matches!(self.body, Body::Fast(_) | Body::Fourier(_)) && !self.isa.is_compiled() {
            return Err(Error::KernelNotCompiled {
                kernel: self.isa.name(),
            });
        }
        // Every argument is valid: the calls below repeat the checks and cannot fail
        // before writing.
        match &self.body {
            Body::Direct => {
                correlate(geo, input, prepared, bias, output);
                Ok(())
            }
            Body::Blocked => blocked::forward_geometry(geo, input, prepared, bias, output, scratch),
            // Checks once, then runs every image with nothing left to fail.
            Body::Fast(p) => p.forward_with(self.isa, input, prepared, bias, output, scratch),
            Body::Fourier(p) => p.forward(self.isa, input, prepared, bias, output, scratch),
        }
    }
}

/// The blocked path takes groups whose order is a multiple of its block height.
fn blocked_takes(geo: &ConvGeometry) -> Result<(), Error> {
    blocked::blocks_per_channel(geo).map(|_| ())
}

/// Auto's choice where the blocked path is not the rule ([`auto_picks_blocked`]):
/// Fourier where [`fourier_pays`], else fast where it applies, else direct.
fn auto_fast_or_fourier(geo: &ConvGeometry) -> Body {
    // The Fourier plan holds the fast path's plan of the same layer: build it once
    // and take the fast plan from it.
    match FourierPlan::new(geo) {
        Ok(fourier) if fourier_pays(fourier.fast_plan(), &fourier) => Body::Fourier(fourier),
        Ok(fourier) => Body::Fast(fourier.fast_plan().clone()),
        Err(_) => FastPlan::new(geo).map_or(Body::Direct, Body::Fast),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::Padding;
    use crate::test_data::{fill_ints, same_bits};
    use crate::{C4, D4};

    #[test]
    fn blocked_rule_is_portable_off_x86() {
        for x86 in [false, true] {
            for isa in Kernel::ALL {
                assert_eq!(
                    blocked_rule(isa, x86),
                    isa == Kernel::Portable && !x86,
                    "{isa:?} x86={x86}"
                );
            }
        }
        let x86 = cfg!(any(target_arch = "x86", target_arch = "x86_64"));
        assert_eq!(auto_picks_blocked(Kernel::Portable), !x86);
        assert!(!auto_picks_blocked(Kernel::Avx2Fma));
    }

    /// Every algorithm against the direct path on a small case (Miri-sized), with
    /// junk in every scratch and NaN in the output. Small-integer data: every
    /// algorithm is exact on it (the Fourier path's transforms add only, its scales
    /// are powers of two), so the outputs must be the same bits; the rounding bounds
    /// on random data are checked per path (`fast`, `fourier`, `blocked` and the
    /// integration tests).
    #[test]
    fn every_algorithm_matches_direct() {
        let shape = ConvShape {
            batch: 2,
            in_channels: 2,
            out_channels: 3,
            height: 6,
            width: 7,
            kernel: 3,
            stride: 2,
            padding: Padding::symmetric(1),
        };
        for domain in [Domain::Z2, Domain::Group] {
            let direct =
                Plan::<D4>::new(domain, &shape, AlgorithmChoice::Direct, Kernel::Portable).unwrap();
            let geo = *direct.geometry();
            let mut x = [0.0f32; 2 * 2 * 8 * 42];
            let x = &mut x[..geo.input_len()];
            fill_ints(x, 3);
            let mut w = [0.0f32; 3 * 2 * 8 * 9];
            let w = &mut w[..geo.weight_len()];
            fill_ints(w, 4);
            let bias = [0.5f32, -1.0, 0.25];
            let mut want = [0.0f32; 2 * 3 * 8 * 12];
            let mut bank = [0.0f32; 8 * 3 * 2 * 8 * 9];
            let bank = &mut bank[..geo.bank_len()];
            direct.prepare_weights(w, bank, &mut []).unwrap();
            direct
                .forward(x, bank, Some(&bias), &mut want, &mut [])
                .unwrap();
            for algorithm in Algorithm::ALL {
                let plan =
                    Plan::<D4>::new(domain, &shape, algorithm.into(), Kernel::Portable).unwrap();
                assert_eq!(plan.algorithm(), algorithm);
                let mut prepared = [f32::NAN; 8 * 3 * 2 * 8 * 9];
                let prepared = &mut prepared[..plan.prepared_weights_len()];
                let mut scratch = [1e30f32; 16 * 1024];
                let prep_scratch = &mut scratch[..plan.prepare_scratch_len()];
                plan.prepare_weights(w, prepared, prep_scratch).unwrap();
                let mut got = [f32::NAN; 2 * 3 * 8 * 12];
                let scratch = &mut scratch[..plan.scratch_len()];
                plan.forward(x, prepared, Some(&bias), &mut got, scratch)
                    .unwrap();
                assert!(
                    same_bits(&got, &want),
                    "{algorithm:?} {domain:?}: not exact"
                );
            }
        }
    }

    #[test]
    fn explicit_choices_report_what_they_cannot_take() {
        let shape = ConvShape {
            batch: 1,
            in_channels: 1,
            out_channels: 1,
            height: 13,
            width: 13,
            kernel: 13,
            stride: 1,
            padding: Padding::Valid,
        };
        let too_large = Error::KernelTooLargeForFastPath {
            kernel: 13,
            max: crate::fast::MAX_KERNEL,
        };
        for choice in [AlgorithmChoice::Fast, AlgorithmChoice::Fourier] {
            let err = Plan::<C4>::new(Domain::Z2, &shape, choice, Kernel::Portable).unwrap_err();
            assert_eq!(err, too_large);
        }
        let auto =
            Plan::<C4>::new(Domain::Z2, &shape, AlgorithmChoice::Auto, Kernel::Avx2Fma).unwrap();
        assert_eq!(auto.algorithm(), Algorithm::Direct);
        let bad = ConvShape {
            kernel: 14,
            ..shape
        };
        assert!(matches!(
            Plan::<C4>::new(Domain::Z2, &bad, AlgorithmChoice::Direct, Kernel::Portable),
            Err(Error::KernelLargerThanInput { kernel: 14, .. })
        ));
    }
}
