//! Convolution layers owning their raw weights, for the four pairs Z2->C4, C4->C4,
//! Z2->D4 and D4->D4.
//!
//! A layer stores the learnable raw weight `(C_out, C_in, nti, K, K)` and the bias
//! `(C_out,)` and caches the expanded OIHW bank `(C_out*|G|, C_in*nti, K, K)`, which is
//! recomputed whenever the weights change. The bank is `|G|` times larger than the
//! weight but holds no new parameters: every entry is a copy of a raw weight.
//!
//! The layer also caches the bank in the fast path's packed layout
//! ([`gconv_core::fast::pack_bank`]) and the group-Fourier path's transformed weights
//! ([`gconv_core::fourier::FourierPlan::pack_weights`]), both computed once per
//! weight change, and runs the path chosen by [`ConvPath`] (by default the fastest
//! that applies).
//!
//! The path is the core's decision: a forward pass builds a [`Plan`] for its input
//! shape ([`Plan::new`] with the layer's [`ConvPath`] and the micro-kernel detected
//! at run time, [`crate::fast::kernel`]) and keeps it, so that the next call on the
//! same shape reuses it. The cache holds one plan (the last input shape); it is
//! dropped by [`GConv::set_path`] and [`GConv::set_weights`], a clone starts without
//! it, and equality ignores it.

use core::fmt;
use core::marker::PhantomData;
use std::sync::{Arc, Mutex};

use gconv_core::conv::expand::{expand_filter_bank, expanded_bank_len};
use gconv_core::equivariance::layer_is_equivariant;
use gconv_core::fast::{FastPlan, pack_bank};
use gconv_core::fourier::FourierPlan;
use gconv_core::plan::{Algorithm, AlgorithmChoice, Plan};
use gconv_core::{C4, ConvGeometry, ConvShape, D4, Dim, Domain, Group, Padding};
use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::error::Error;
use crate::params::LayerParams;
use crate::tensor::Tensor;

/// Marker for the input domain of a layer: [`FromZ2`] (lifting) or [`FromGroup`].
pub trait InputDomain: Copy + Default + fmt::Debug + Send + Sync + 'static {
    /// The core's domain value.
    const DOMAIN: Domain;
}

/// Input is a plain image (Z2): the layer is a lifting convolution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FromZ2;

/// Input is a function on the group: the layer is a group convolution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FromGroup;

impl InputDomain for FromZ2 {
    const DOMAIN: Domain = Domain::Z2;
}
impl InputDomain for FromGroup {
    const DOMAIN: Domain = Domain::Group;
}

/// A group-equivariant convolution from domain `D` to group `G`. Use the aliases
/// [`Z2ToC4`], [`C4ToC4`], [`Z2ToD4`], [`D4ToD4`].
#[derive(Clone, Debug, PartialEq)]
pub struct GConv<G: Group, D: InputDomain> {
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
    weight: Tensor,
    bias: Option<Vec<f32>>,
    bank: Vec<f32>,
    packed: Vec<f32>,
    /// The Fourier path's packed weights (empty when it cannot take the layer).
    fourier: Vec<f32>,
    path: ConvPath,
    /// The core plan of the last input shape.
    plans: PlanCache<G>,
    _pair: PhantomData<(G, D)>,
}

/// The core [`Plan`] of the last input shape a layer ran on, keyed by the whole
/// input shape (batch included: the plan's geometry and cost model depend on it).
///
/// A cache, not part of the layer's value: a clone starts empty and two caches are
/// always equal, so `Clone` and `PartialEq` of [`GConv`] see the weights and settings
/// only.
///
/// Boxed, so that the cache adds two words to a layer (enums of layers stay small).
struct PlanCache<G: Group>(Mutex<Option<Box<CachedPlan<G>>>>);

/// An input shape and its plan.
type CachedPlan<G> = (Vec<usize>, Arc<Plan<G>>);

impl<G: Group> PlanCache<G> {
    const fn empty() -> Self {
        PlanCache(Mutex::new(None))
    }

    /// The cached plan for `input_shape`, or the one `build` makes (then cached).
    fn get_or_build(
        &self,
        input_shape: &[usize],
        build: impl FnOnce() -> Result<Plan<G>, Error>,
    ) -> Result<Arc<Plan<G>>, Error> {
        // A panic while the lock was held cannot leave a half-written entry (it is
        // replaced whole): recover from poisoning.
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((shape, plan)) = slot.as_deref()
            && shape.as_slice() == input_shape
        {
            return Ok(Arc::clone(plan));
        }
        let plan = Arc::new(build()?);
        *slot = Some(Box::new((input_shape.to_vec(), Arc::clone(&plan))));
        Ok(plan)
    }

    fn clear(&mut self) {
        *self.0.get_mut().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The input shape of the cached plan, if any.
    fn cached_shape(&self) -> Option<Vec<usize>> {
        let slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_deref().map(|(shape, _)| shape.clone())
    }
}

impl<G: Group> Clone for PlanCache<G> {
    fn clone(&self) -> Self {
        PlanCache::empty()
    }
}

impl<G: Group> PartialEq for PlanCache<G> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<G: Group> fmt::Debug for PlanCache<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cached_shape() {
            Some(shape) => write!(f, "PlanCache({shape:?})"),
            None => f.write_str("PlanCache(empty)"),
        }
    }
}

/// Which forward pass a layer runs. All compute the same convolution; they round
/// differently (see [`gconv_core::fast`] and [`gconv_core::fourier`]). The core's
/// [`AlgorithmChoice`] under its gconv-std name, with a parser.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConvPath {
    /// The core plan's choice ([`AlgorithmChoice::Auto`]): the blocked path with the
    /// portable micro-kernel off x86, else the Fourier path where it is expected to be
    /// faster than the fast path (see [`fourier_pays`]), else the fast path wherever
    /// it applies (kernels up to [`MAX_KERNEL`](gconv_core::fast::MAX_KERNEL)), else
    /// the direct one.
    #[default]
    Auto,
    /// The direct expanded-bank correlation ([`gconv_core::conv`]): no scratch, a
    /// tap-by-tap `axpy`, about 10% of the FMA peak.
    Direct,
    /// The register-blocked path from the raw weights ([`gconv_core::blocked`]),
    /// written for targets without x86 SIMD (Cortex-M4F); any kernel size. Runs on
    /// the calling thread, or split like the direct path by
    /// [`forward_into_threads`](crate::parallel::forward_into_threads).
    Blocked,
    /// The register-tiled fast path ([`gconv_core::fast`]) with the best micro-kernel
    /// the CPU has ([`crate::fast::kernel`]); an error for layers it cannot take.
    Fast,
    /// The group-Fourier path ([`gconv_core::fourier`]): 6/16 (C4) or 12/64 (D4) of
    /// the multiply-adds for group convolutions, on the fast path's micro-kernels; an
    /// error for layers it cannot take (kernels over
    /// [`MAX_KERNEL`](gconv_core::fast::MAX_KERNEL)).
    Fourier,
}

impl ConvPath {
    /// Parses `auto`, `direct`, `blocked`, `fast` or `fourier`.
    ///
    /// # Errors
    /// [`Error::Usage`] for anything else.
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "auto" => Ok(ConvPath::Auto),
            "direct" => Ok(ConvPath::Direct),
            "blocked" => Ok(ConvPath::Blocked),
            "fast" => Ok(ConvPath::Fast),
            "fourier" => Ok(ConvPath::Fourier),
            other => Err(Error::Usage(format!(
                "unknown path `{other}`: use auto, direct, blocked, fast or fourier"
            ))),
        }
    }
}

impl From<ConvPath> for AlgorithmChoice {
    fn from(path: ConvPath) -> Self {
        match path {
            ConvPath::Auto => AlgorithmChoice::Auto,
            ConvPath::Direct => AlgorithmChoice::Direct,
            ConvPath::Blocked => AlgorithmChoice::Blocked,
            ConvPath::Fast => AlgorithmChoice::Fast,
            ConvPath::Fourier => AlgorithmChoice::Fourier,
        }
    }
}

/// The Auto path's cost model, now in the core's plan API (kept here for callers of
/// `gconv_std::layer::fourier_pays`).
pub use gconv_core::plan::fourier_pays;

/// Lifting convolution Z2 -> G.
pub type LiftingConv<G> = GConv<G, FromZ2>;
/// Group convolution G -> G.
pub type GroupConv<G> = GConv<G, FromGroup>;
/// Z2 -> C4 lifting layer (GrouPy `P4ConvZ2`).
pub type Z2ToC4 = LiftingConv<C4>;
/// C4 -> C4 group layer (GrouPy `P4ConvP4`).
pub type C4ToC4 = GroupConv<C4>;
/// Z2 -> D4 lifting layer (GrouPy `P4MConvZ2`).
pub type Z2ToD4 = LiftingConv<D4>;
/// D4 -> D4 group layer (GrouPy `P4MConvP4M`).
pub type D4ToD4 = GroupConv<D4>;

impl<G: Group, D: InputDomain> GConv<G, D> {
    /// Input orientation planes per G-channel (1 for Z2, |G| for group input).
    pub const NTI: usize = D::DOMAIN.planes::<G>();

    /// A layer with He-style (Kaiming) uniform weights drawn from a seeded RNG:
    /// `w ~ U(-b, b)`, `b = sqrt(6 / fan_in)`, `fan_in = C_in * nti * K * K`
    /// (variance `2 / fan_in`), and a zero bias.
    ///
    /// # Errors
    /// [`Error::Core`] for zero channels, kernel or stride, or `Same` padding with an
    /// even kernel.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: Padding,
        seed: u64,
    ) -> Result<Self, Error> {
        check_hyper::<G, D>(in_channels, out_channels, kernel, stride, padding)?;
        let fan_in = in_channels * Self::NTI * kernel * kernel;
        let bound = (6.0 / fan_in as f64).sqrt() as f32;
        let mut rng = StdRng::seed_from_u64(seed);
        let weight = Tensor::from_fn(
            vec![out_channels, in_channels, Self::NTI, kernel, kernel],
            |_| rng.random_range(-bound..bound),
        );
        Self::from_weights(weight, Some(vec![0.0; out_channels]), stride, padding)
    }

    /// A layer from trained weights: `weight` of shape `(C_out, C_in, nti, K, K)`,
    /// optional `bias` of length `C_out`.
    ///
    /// # Errors
    /// [`Error::Shape`] when the weight is not rank 5 with `nti` planes and a square
    /// kernel, or the bias length is not `C_out`; [`Error::Core`] for zero sizes,
    /// stride 0, or `Same` with an even kernel.
    pub fn from_weights(
        weight: Tensor,
        bias: Option<Vec<f32>>,
        stride: usize,
        padding: Padding,
    ) -> Result<Self, Error> {
        let (out_channels, in_channels, kernel) = check_weight::<G, D>(&weight, bias.as_deref())?;
        check_hyper::<G, D>(in_channels, out_channels, kernel, stride, padding)?;
        let mut layer = GConv {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            weight,
            bias,
            bank: Vec::new(),
            packed: Vec::new(),
            fourier: Vec::new(),
            path: ConvPath::Auto,
            plans: PlanCache::empty(),
            _pair: PhantomData,
        };
        layer.refresh_bank()?;
        Ok(layer)
    }

    /// Replaces weight and bias (same shapes as before) and re-expands the bank. On
    /// error the layer is left unchanged.
    ///
    /// # Errors
    /// [`Error::Shape`] when a shape differs from the layer's.
    pub fn set_weights(&mut self, weight: Tensor, bias: Option<Vec<f32>>) -> Result<(), Error> {
        if weight.shape() != self.weight.shape() {
            return Err(Error::Shape {
                tensor: "weight",
                expected: format!("{:?}", self.weight.shape()),
                found: weight.shape().to_vec(),
            });
        }
        check_weight::<G, D>(&weight, bias.as_deref())?;
        self.refresh_weights(weight, bias)
    }

    /// Installs new weights and their prepared forms; drops the cached plan. On error
    /// the layer is left unchanged.
    fn refresh_weights(&mut self, weight: Tensor, bias: Option<Vec<f32>>) -> Result<(), Error> {
        let old = (
            std::mem::replace(&mut self.weight, weight),
            std::mem::replace(&mut self.bias, bias),
        );
        if let Err(e) = self.refresh_bank() {
            (self.weight, self.bias) = old;
            return Err(e);
        }
        self.plans.clear();
        Ok(())
    }

    fn refresh_bank(&mut self) -> Result<(), Error> {
        let len =
            expanded_bank_len::<G>(D::DOMAIN, self.out_channels, self.in_channels, self.kernel)
                .map_err(|e| self.core_error(e))?;
        let mut bank = vec![0.0; len];
        expand_filter_bank::<G>(
            D::DOMAIN,
            self.out_channels,
            self.in_channels,
            self.kernel,
            self.weight.data(),
            &mut bank,
        )
        .map_err(|e| self.core_error(e))?;
        let mut packed = vec![0.0; len];
        pack_bank(self.bank_shape(), &bank, &mut packed).map_err(|e| self.core_error(e))?;
        // The transformed weights do not depend on the input size: any geometry of
        // the layer gives them (here a K x K input).
        let mut fourier = Vec::new();
        if let Ok(plan) = self.fourier_plan(&self.kernel_sized_input()) {
            fourier = vec![0.0; plan.packed_weights_len()];
            plan.pack_weights(self.weight.data(), &mut fourier)
                .map_err(|e| self.core_error(e))?;
        }
        self.bank = bank;
        self.packed = packed;
        self.fourier = fourier;
        Ok(())
    }

    /// The shape of one `K x K` input of this layer.
    fn kernel_sized_input(&self) -> Vec<usize> {
        match D::DOMAIN {
            Domain::Z2 => vec![1, self.in_channels, self.kernel, self.kernel],
            Domain::Group => vec![1, self.in_channels, G::ORDER, self.kernel, self.kernel],
        }
    }

    /// `[C_out*|G|, C_in*nti, K, K]`.
    fn bank_shape(&self) -> [usize; 4] {
        [
            self.out_channels * G::ORDER,
            self.in_channels * Self::NTI,
            self.kernel,
            self.kernel,
        ]
    }

    /// The forward path this layer runs (default [`ConvPath::Auto`]).
    pub fn path(&self) -> ConvPath {
        self.path
    }

    /// Chooses the forward path (and drops the cached plan). Results of the paths
    /// agree within rounding.
    pub fn set_path(&mut self, path: ConvPath) {
        self.path = path;
        self.plans.clear();
    }

    /// The bank in the fast path's packed layout `(C_out*|G|/MR, C_in*nti, K*K, MR)`.
    pub fn packed_bank(&self) -> &[f32] {
        &self.packed
    }

    /// The fast path's plan for an input of `input_shape`.
    ///
    /// # Errors
    /// As [`geometry`](Self::geometry); [`Error::Core`] when the fast path cannot take
    /// the layer (kernel larger than [`MAX_KERNEL`](gconv_core::fast::MAX_KERNEL)).
    pub fn fast_plan(&self, input_shape: &[usize]) -> Result<FastPlan, Error> {
        let geo = self.geometry(input_shape)?;
        FastPlan::new(&geo).map_err(|e| self.core_error(e))
    }

    /// The Fourier path's plan for an input of `input_shape`.
    ///
    /// # Errors
    /// As [`geometry`](Self::geometry); [`Error::Core`] when the Fourier path cannot
    /// take the layer (kernel larger than [`MAX_KERNEL`](gconv_core::fast::MAX_KERNEL)).
    pub fn fourier_plan(&self, input_shape: &[usize]) -> Result<FourierPlan, Error> {
        let geo = self.geometry(input_shape)?;
        FourierPlan::new(&geo).map_err(|e| self.core_error(e))
    }

    /// The Fourier path's transformed, packed weights (empty when it cannot take the
    /// layer).
    pub fn fourier_weights(&self) -> &[f32] {
        &self.fourier
    }

    /// The core plan for an input of `input_shape`: the layer's path resolved by
    /// [`Plan::new`] (with [`ConvPath::Auto`], the core's choice) for the micro-kernel
    /// this CPU runs ([`crate::fast::kernel`]). Cached: a second call with the same
    /// shape returns the same plan until [`set_path`](Self::set_path) or
    /// [`set_weights`](Self::set_weights).
    ///
    /// # Errors
    /// As [`geometry`](Self::geometry); [`Error::Core`] when the chosen path cannot
    /// take the layer (e.g. [`ConvPath::Fast`] with a kernel larger than
    /// [`MAX_KERNEL`](gconv_core::fast::MAX_KERNEL)); [`Error::KernelEnv`] when
    /// `GCONV_KERNEL` names no kernel or one this CPU cannot run.
    pub fn plan(&self, input_shape: &[usize]) -> Result<Arc<Plan<G>>, Error> {
        self.plans.get_or_build(input_shape, || {
            let shape = self.conv_shape(input_shape)?;
            let isa = crate::fast::kernel()?;
            Plan::new(D::DOMAIN, &shape, self.path.into(), isa).map_err(|e| self.core_error(e))
        })
    }

    /// The algorithm a forward pass on `input_shape` runs (the [`plan`](Self::plan)'s).
    ///
    /// # Errors
    /// As [`plan`](Self::plan).
    pub fn algorithm(&self, input_shape: &[usize]) -> Result<Algorithm, Error> {
        Ok(self.plan(input_shape)?.algorithm())
    }

    /// What a forward pass on `input_shape` runs, as printed by `gconv bench`:
    /// `direct`, `blocked`, `fast_<kernel>` (`fast_avx512`, `fast_avx2_fma`,
    /// `fast_portable`) or `fourier_<kernel>`.
    ///
    /// # Errors
    /// As [`plan`](Self::plan).
    pub fn path_name(&self, input_shape: &[usize]) -> Result<String, Error> {
        let plan = self.plan(input_shape)?;
        Ok(match plan.algorithm() {
            a @ (Algorithm::Direct | Algorithm::Blocked) => a.name().to_string(),
            a @ (Algorithm::Fast | Algorithm::Fourier) => {
                format!("{}_{}", a.name(), plan.isa().name())
            }
        })
    }

    fn core_error(&self, source: gconv_core::Error) -> Error {
        Error::Core {
            layer: format!("{} conv", Self::name()),
            source,
        }
    }

    /// `"Z2->C4"`, `"C4->C4"`, `"Z2->D4"` or `"D4->D4"`.
    pub fn name() -> String {
        match D::DOMAIN {
            Domain::Z2 => format!("Z2->{}", G::NAME),
            Domain::Group => format!("{0}->{0}", G::NAME),
        }
    }

    /// Input G-channels.
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }
    /// Output G-channels.
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }
    /// Kernel size `K`.
    pub fn kernel(&self) -> usize {
        self.kernel
    }
    /// Stride.
    pub fn stride(&self) -> usize {
        self.stride
    }
    /// Padding.
    pub fn padding(&self) -> Padding {
        self.padding
    }
    /// The raw learnable weight `(C_out, C_in, nti, K, K)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
    /// The bias `(C_out,)`, if any.
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }
    /// The cached expanded OIHW bank `(C_out*|G|, C_in*nti, K, K)`.
    pub fn bank(&self) -> &[f32] {
        &self.bank
    }
    /// Parameter accounting of this layer.
    pub fn params(&self) -> LayerParams {
        LayerParams::new(
            Self::NTI,
            G::ORDER,
            self.in_channels,
            self.out_channels,
            self.kernel,
            self.bias.is_some(),
        )
    }

    /// The same layer with every weight and bias replaced by its absolute value. Its
    /// output on `|x|` is `sum |x w| + |b|` per output, the scale of the rounding
    /// error of the forward pass (an f32 sum of `n` terms is off by at most about
    /// `n * eps * sum |x w|`): use it to set tolerances.
    pub fn magnitude_layer(&self) -> Self {
        GConv {
            weight: self.weight.map(f32::abs),
            bias: self
                .bias
                .as_ref()
                .map(|b| b.iter().map(|v| v.abs()).collect()),
            bank: self.bank.iter().map(|v| v.abs()).collect(),
            packed: self.packed.iter().map(|v| v.abs()).collect(),
            // |x| through the Fourier transforms is not |x w| summed: keep the
            // magnitude layer off that path (it is only ever a tolerance).
            fourier: Vec::new(),
            path: match self.path {
                ConvPath::Fourier | ConvPath::Auto => ConvPath::Fast,
                other => other,
            },
            ..self.clone()
        }
    }

    /// Does the equivariance rule call this layer exactly equivariant on a
    /// `height x width` input? See [`gconv_core::equivariance`].
    pub fn is_equivariant_on(&self, height: usize, width: usize) -> bool {
        layer_is_equivariant(height, width, self.kernel, self.stride, self.padding)
    }

    /// The validated geometry for an input of the given shape.
    ///
    /// # Errors
    /// [`Error::Shape`] for an input of the wrong rank, channel count or orientation
    /// count; [`Error::Core`] when the kernel does not fit the padded input.
    pub fn geometry(&self, input_shape: &[usize]) -> Result<ConvGeometry, Error> {
        let shape = self.conv_shape(input_shape)?;
        shape
            .geometry::<G>(D::DOMAIN)
            .map_err(|e| self.core_error(e))
    }

    /// The core's description of this layer applied to an input of `input_shape`.
    fn conv_shape(&self, input_shape: &[usize]) -> Result<ConvShape, Error> {
        let nti = Self::NTI;
        let (batch, height, width) = match (D::DOMAIN, input_shape) {
            (Domain::Z2, &[n, c, h, w]) if c == self.in_channels => (n, h, w),
            (Domain::Group, &[n, c, o, h, w]) if c == self.in_channels && o == nti => (n, h, w),
            _ => {
                let expected = match D::DOMAIN {
                    Domain::Z2 => format!("(N, {}, H, W)", self.in_channels),
                    Domain::Group => format!("(N, {}, {nti}, H, W)", self.in_channels),
                };
                return Err(Error::Shape {
                    tensor: "input",
                    expected,
                    found: input_shape.to_vec(),
                });
            }
        };
        Ok(ConvShape {
            batch,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            height,
            width,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
        })
    }

    /// Forward pass: input `(N, C_in, H, W)` (Z2) or `(N, C_in, |G|, H, W)` (group) to
    /// output `(N, C_out, |G|, H', W')`, by the cached expanded bank.
    ///
    /// # Errors
    /// As [`geometry`](Self::geometry).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, Error> {
        let geo = self.geometry(x.shape())?;
        let mut out = Tensor::zeros(geo.output_shape().to_vec());
        self.forward_into(x, out.data_mut())?;
        Ok(out)
    }

    /// Forward pass into a caller buffer of exactly
    /// [`output_len`](ConvGeometry::output_len) values (layout
    /// `(N, C_out, |G|, H', W')`): runs the path of the layer's [`plan`](Self::plan)
    /// for this input shape. No allocation once the plan of the shape is cached (the
    /// first call on a shape builds it), for steady-state loops.
    ///
    /// # Errors
    /// As [`plan`](Self::plan); [`Error::Core`] with
    /// [`gconv_core::Error::BufferLength`] when `out` has the wrong length.
    pub fn forward_into(&self, x: &Tensor, out: &mut [f32]) -> Result<(), Error> {
        let plan = self.plan(x.shape())?;
        let (input, bias) = (x.data(), self.bias());
        let kernel = plan.isa();
        match (plan.fast_plan(), plan.fourier_plan()) {
            // The packed paths run through gconv-std's dispatch, which calls the
            // micro-kernel detected at run time (the core plan calls only kernels
            // compiled into the build).
            (Some(fast), _) => crate::fast::forward(fast, kernel, input, &self.packed, bias, out),
            (_, Some(fourier)) => crate::fourier::forward_thread_scratch(
                fourier,
                kernel,
                input,
                &self.fourier,
                bias,
                out,
            ),
            _ => {
                let prepared = match plan.algorithm() {
                    Algorithm::Blocked => self.weight.data(),
                    _ => &self.bank,
                };
                crate::fast::with_scratch(plan.scratch_len(), |scratch| {
                    plan.forward(input, prepared, bias, out, scratch)
                })
            }
        }
        .map_err(|e| self.core_error(e))
    }

    /// [`forward_into`](Self::forward_into) split over the current rayon pool
    /// (`rayon::ThreadPool::install` to choose one): the fast path by images or by
    /// output-plane tiles ([`crate::fast::forward_par`]), the Fourier path as
    /// [`crate::fourier::forward_par`]; the direct and blocked paths run on the
    /// calling thread. Returns the number of pieces run in parallel. The output is
    /// bitwise identical to [`forward_into`](Self::forward_into).
    ///
    /// # Errors
    /// As [`forward_into`](Self::forward_into).
    #[cfg(feature = "rayon")]
    pub fn forward_into_par(&self, x: &Tensor, out: &mut [f32]) -> Result<usize, Error> {
        let plan = self.plan(x.shape())?;
        let (data, bias, kernel) = (x.data(), self.bias(), plan.isa());
        match (plan.fast_plan(), plan.fourier_plan()) {
            (Some(fast), _) => {
                crate::fast::forward_par(fast, kernel, data, &self.packed, bias, out)
                    .map_err(|e| self.core_error(e))
            }
            (_, Some(fourier)) => {
                crate::fourier::forward_par(fourier, kernel, data, &self.fourier, bias, out)
                    .map_err(|e| self.core_error(e))
            }
            _ => self.forward_into(x, out).map(|()| 1),
        }
    }

    /// Whether a forward pass on `input_shape` runs one of the packed paths, the fast
    /// or the Fourier path (the ones [`forward_into_par`](Self::forward_into_par)
    /// splits over rayon), rather than the direct one.
    ///
    /// # Errors
    /// As [`path_name`](Self::path_name).
    pub fn runs_fast_path(&self, input_shape: &[usize]) -> Result<bool, Error> {
        Ok(matches!(
            self.algorithm(input_shape)?,
            Algorithm::Fast | Algorithm::Fourier
        ))
    }
}

fn check_hyper<G: Group, D: InputDomain>(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
) -> Result<(), Error> {
    let zero = [
        (in_channels, Dim::InChannels),
        (out_channels, Dim::OutChannels),
        (kernel, Dim::Kernel),
        (stride, Dim::Stride),
    ]
    .into_iter()
    .find(|&(v, _)| v == 0);
    let layer = || format!("{} conv", GConv::<G, D>::name());
    if let Some((_, dim)) = zero {
        return Err(Error::Core {
            layer: layer(),
            source: gconv_core::Error::ZeroDimension(dim),
        });
    }
    padding
        .resolve(kernel)
        .and(expanded_bank_len::<G>(
            D::DOMAIN,
            out_channels,
            in_channels,
            kernel,
        ))
        .map_err(|source| Error::Core {
            layer: layer(),
            source,
        })?;
    Ok(())
}

/// Checks a raw weight's rank, `nti` and square kernel, and the bias length; returns
/// `(C_out, C_in, K)`.
fn check_weight<G: Group, D: InputDomain>(
    weight: &Tensor,
    bias: Option<&[f32]>,
) -> Result<(usize, usize, usize), Error> {
    let nti = GConv::<G, D>::NTI;
    let (c_out, c_in, k) = match *weight.shape() {
        [o, i, s, k1, k2] if s == nti && k1 == k2 => (o, i, k1),
        _ => {
            return Err(Error::Shape {
                tensor: "weight",
                expected: format!("(C_out, C_in, {nti}, K, K)"),
                found: weight.shape().to_vec(),
            });
        }
    };
    if let Some(b) = bias
        && b.len() != c_out
    {
        return Err(Error::Shape {
            tensor: "bias",
            expected: format!("({c_out},)"),
            found: vec![b.len()],
        });
    }
    Ok((c_out, c_in, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn he_init_is_seeded_and_bounded_by_fan_in() {
        let a = D4ToD4::new(3, 2, 3, 1, Padding::Same, 42).unwrap();
        let b = D4ToD4::new(3, 2, 3, 1, Padding::Same, 42).unwrap();
        let c = D4ToD4::new(3, 2, 3, 1, Padding::Same, 43).unwrap();
        assert_eq!(a.weight(), b.weight());
        assert_ne!(a.weight(), c.weight());
        assert_eq!(a.weight().shape(), &[2, 3, 8, 3, 3]);
        let fan_in = 3 * 8 * 9;
        let bound = (6.0f32 / fan_in as f32).sqrt();
        let w = a.weight().data();
        assert!(w.iter().all(|v| v.abs() <= bound));
        // Uniform on [-b, b): variance b^2 / 3 = 2 / fan_in, within sampling error.
        let var = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        assert!((var * fan_in as f32 / 2.0 - 1.0).abs() < 0.15, "{var}");
        assert_eq!(a.bias(), Some(&[0.0, 0.0][..]));
        let lift = Z2ToC4::new(5, 1, 4, 1, Padding::Valid, 1).unwrap();
        let bound = (6.0f32 / (5 * 16) as f32).sqrt();
        assert!(lift.weight().data().iter().all(|v| v.abs() <= bound));
        assert!(lift.weight().data().iter().any(|v| v.abs() > 0.5 * bound));
    }

    #[test]
    fn bank_is_gtimes_the_weight_and_refreshed_on_set_weights() {
        let mut layer = C4ToC4::new(2, 3, 3, 1, Padding::Valid, 5).unwrap();
        assert_eq!(layer.bank().len(), 4 * layer.weight().len());
        assert_eq!(layer.params().expanded_filter_len(), layer.bank().len());
        let x = Tensor::from_fn(vec![1, 2, 4, 6, 6], |i| (i % 5) as f32);
        let before = layer.forward(&x).unwrap();
        let doubled = layer.weight().map(|v| 2.0 * v);
        layer.set_weights(doubled, Some(vec![0.0; 3])).unwrap();
        let after = layer.forward(&x).unwrap();
        assert!(after.max_abs_diff(&before.map(|v| 2.0 * v)).unwrap() < 1e-5);
    }

    #[test]
    fn bad_weights_and_inputs_are_errors() {
        let w = Tensor::zeros(vec![2, 3, 4, 3, 3]);
        // nti 4 is wrong for D4 and for a lifting layer.
        assert!(matches!(
            D4ToD4::from_weights(w.clone(), None, 1, Padding::Valid),
            Err(Error::Shape {
                tensor: "weight",
                ..
            })
        ));
        assert!(matches!(
            Z2ToC4::from_weights(w.clone(), None, 1, Padding::Valid),
            Err(Error::Shape {
                tensor: "weight",
                ..
            })
        ));
        assert!(matches!(
            C4ToC4::from_weights(w.clone(), Some(vec![0.0; 3]), 1, Padding::Valid),
            Err(Error::Shape { tensor: "bias", .. })
        ));
        let non_square = Tensor::zeros(vec![2, 3, 4, 3, 2]);
        assert!(C4ToC4::from_weights(non_square, None, 1, Padding::Valid).is_err());
        let even_same =
            C4ToC4::from_weights(Tensor::zeros(vec![1, 1, 4, 2, 2]), None, 1, Padding::Same);
        assert!(matches!(
            even_same,
            Err(Error::Core {
                source: gconv_core::Error::SameNeedsOddKernel { kernel: 2 },
                ..
            })
        ));
        assert!(C4ToC4::from_weights(w.clone(), None, 0, Padding::Valid).is_err());
        assert!(C4ToC4::new(usize::MAX / 2, 4, 3, 1, Padding::Valid, 0).is_err());

        let mut layer = C4ToC4::from_weights(w.clone(), None, 1, Padding::Valid).unwrap();
        for bad in [
            vec![1, 3, 6, 6],
            vec![1, 2, 4, 6, 6],
            vec![1, 3, 8, 6, 6],
            vec![1, 3, 4, 2, 6],
        ] {
            let err = layer.forward(&Tensor::zeros(bad.clone())).unwrap_err();
            assert!(
                err.to_string().contains("input") || err.to_string().contains("larger"),
                "{err}"
            );
        }
        // A failed set_weights leaves the layer unchanged.
        let before = layer.clone();
        assert!(
            layer
                .set_weights(Tensor::zeros(vec![2, 3, 4, 5, 5]), None)
                .is_err()
        );
        assert!(layer.set_weights(w, Some(vec![1.0])).is_err());
        assert_eq!(layer, before);
    }

    #[test]
    fn error_messages_name_tensor_expected_and_found() {
        let layer = Z2ToD4::new(3, 2, 3, 1, Padding::Same, 0).unwrap();
        let err = layer.forward(&Tensor::zeros(vec![1, 4, 8, 8])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input: expected shape (N, 3, H, W), found [1, 4, 8, 8]"
        );
        assert_eq!(Z2ToD4::name(), "Z2->D4");
        assert_eq!(D4ToD4::name(), "D4->D4");
    }

    #[test]
    fn magnitude_layer_bounds_the_output() {
        let layer = D4ToD4::new(2, 2, 3, 1, Padding::Same, 3).unwrap();
        let layer = D4ToD4::from_weights(
            layer.weight().clone(),
            Some(vec![0.5, -0.25]),
            1,
            Padding::Same,
        )
        .unwrap();
        let x = Tensor::from_fn(vec![1, 2, 8, 5, 5], |i| ((i * 37) % 11) as f32 - 5.0);
        let y = layer.forward(&x).unwrap();
        let m = layer.magnitude_layer().forward(&x.map(f32::abs)).unwrap();
        assert!(
            y.data()
                .iter()
                .zip(m.data())
                .all(|(y, m)| y.abs() <= *m + 1e-4)
        );
        assert_eq!(layer.magnitude_layer().bias(), Some(&[0.5, 0.25][..]));
    }
}
