//! The trained digits models on the Cortex-M4F, one per build (`--features
//! p4cnn-f32 | p4cnn-int8 | p4m-f32 | p4m-int8`; none: the bare harness, whose size
//! `scripts/cortex-m4.sh` subtracts to measure a model's share of flash and RAM).
//!
//! The model is the Rust source `gconv export` writes (build.rs calls its library
//! function on `models/digits-*`): `static` raw weights in flash, the layer list, and
//! the model as a `const` the compiler checked and sized the buffers of. It runs on the
//! 300 rotated test images (in flash), and every answer is compared with the host's:
//! the class for f32 models, the int8 logits bit for bit for int8 models. Prints
//!
//! ```text
//! cm4 model=<name> dtype=<f32|int8> images=300 accuracy=<0.xxx> agree_with_host=<n>/300 instr_per_inference=<n> stack_bytes=<n> buffer_bytes=<n> test_data_bytes=<n>
//! ```
//!
//! and exits with status 0 only when every image agrees with the host.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use panic_semihosting as _;

#[path = "../harness.rs"]
mod harness;

#[cfg(any(
    all(
        feature = "p4cnn-f32",
        any(feature = "p4cnn-int8", feature = "p4m-f32", feature = "p4m-int8")
    ),
    all(feature = "p4cnn-int8", any(feature = "p4m-f32", feature = "p4m-int8")),
    all(feature = "p4m-f32", feature = "p4m-int8"),
))]
compile_error!("one digits model per build");

#[allow(dead_code, clippy::all, missing_docs)]
mod data {
    include!(concat!(env!("OUT_DIR"), "/digits_data.rs"));
}

/// One model: its generated source, test set and host answers.
macro_rules! digits_model {
    ($feature:literal, $name:literal, $dtype:literal, $file:literal, $set:literal, $host:ident) => {
        #[cfg(feature = $feature)]
        #[allow(dead_code, clippy::all, missing_docs)]
        mod model {
            include!(concat!(env!("OUT_DIR"), "/", $file));
            pub mod images {
                include!(concat!(env!("OUT_DIR"), "/", $set));
            }
            pub const NAME: &str = $name;
            pub const DTYPE: &str = $dtype;
            pub use crate::data::$host as HOST;
        }
    };
}
digits_model!(
    "p4cnn-f32",
    "digits-p4cnn",
    "f32",
    "digits_p4cnn_f32.rs",
    "digits_images_c4.rs",
    HOST_CLASSES_P4CNN_F32
);
digits_model!(
    "p4cnn-int8",
    "digits-p4cnn",
    "int8",
    "digits_p4cnn_int8.rs",
    "digits_images_c4.rs",
    HOST_LOGITS_P4CNN_INT8
);
digits_model!(
    "p4m-f32",
    "digits-p4m",
    "f32",
    "digits_p4m_f32.rs",
    "digits_images_d4.rs",
    HOST_CLASSES_P4M_F32
);
digits_model!(
    "p4m-int8",
    "digits-p4m",
    "int8",
    "digits_p4m_int8.rs",
    "digits_images_d4.rs",
    HOST_LOGITS_P4M_INT8
);

const IMAGES: usize = 300;
const CLASSES: usize = 10;

/// The index of the largest value (the first on ties).
fn argmax<T: PartialOrd + Copy>(values: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(any(feature = "p4cnn-f32", feature = "p4m-f32"))]
mod run {
    use super::model::{self, MODEL, SIZES};
    pub type Act = f32;
    pub type Scratch = f32;
    pub const ACT: usize = SIZES.activations;
    pub const SCRATCH: usize = SIZES.scratch;

    /// Runs image `n`; `Some(class)` when it agrees with the host.
    pub fn image(n: usize, a: &mut [f32], b: &mut [f32], s: &mut [f32]) -> (usize, bool) {
        let x = &model::images::IMAGES[n * SIZES.input..(n + 1) * SIZES.input];
        match MODEL.forward(x, a, b, s) {
            Ok(y) => {
                let class = super::argmax(y);
                (class, class == usize::from(model::HOST[n]))
            }
            Err(_) => (usize::MAX, false),
        }
    }
}

#[cfg(any(feature = "p4cnn-int8", feature = "p4m-int8"))]
mod run {
    use super::model::{self, MODEL, SIZES};
    pub type Act = i8;
    pub type Scratch = i32;
    pub const ACT: usize = SIZES.activations;
    pub const SCRATCH: usize = SIZES.scratch;

    /// Runs image `n`; the class, and whether every logit equals the host's.
    pub fn image(n: usize, a: &mut [i8], b: &mut [i8], s: &mut [i32]) -> (usize, bool) {
        let x = &model::images::IMAGES[n * SIZES.input..(n + 1) * SIZES.input];
        match MODEL.forward_f32(x, a, b, s) {
            Ok(y) => {
                let host = &model::HOST[n * super::CLASSES..(n + 1) * super::CLASSES];
                (super::argmax(y), y == host)
            }
            Err(_) => (usize::MAX, false),
        }
    }
}

#[cfg(any(
    feature = "p4cnn-f32",
    feature = "p4m-f32",
    feature = "p4cnn-int8",
    feature = "p4m-int8"
))]
fn run_model() -> bool {
    use core::mem::size_of_val;
    static mut A: [run::Act; run::ACT] = [0 as run::Act; run::ACT];
    static mut B: [run::Act; run::ACT] = [0 as run::Act; run::ACT];
    static mut SCRATCH: [run::Scratch; run::SCRATCH] = [0 as run::Scratch; run::SCRATCH];
    // SAFETY: the only references to these statics, taken once, in the one thread.
    let (a, b, s) = unsafe {
        (
            &mut *(&raw mut A),
            &mut *(&raw mut B),
            &mut *(&raw mut SCRATCH),
        )
    };
    harness::paint_stack();
    let t0 = harness::now();
    let (mut correct, mut agree) = (0, 0);
    for n in 0..IMAGES {
        let (class, same) = run::image(n, a, b, s);
        correct += usize::from(class == usize::from(data::LABELS[n]));
        agree += usize::from(same);
    }
    let instr = harness::instructions(harness::now() - t0) / IMAGES as u64;
    let stack = harness::stack_high_water();
    // Rounded to the nearest thousandth (293/300 = 0.977).
    let permille = (correct * 1000 + IMAGES / 2) / IMAGES;
    let test_data = size_of_val(&model::images::IMAGES)
        + size_of_val(&data::LABELS)
        + size_of_val(&model::HOST);
    hprintln!(
        "cm4 model={} dtype={} images={} accuracy=0.{:03} agree_with_host={}/{} instr_per_inference={} stack_bytes={} buffer_bytes={} test_data_bytes={}",
        model::NAME,
        model::DTYPE,
        IMAGES,
        permille,
        agree,
        IMAGES,
        instr,
        stack,
        size_of_val(a) + size_of_val(b) + size_of_val(s),
        test_data
    );
    agree == IMAGES
}

#[cfg(not(any(
    feature = "p4cnn-f32",
    feature = "p4m-f32",
    feature = "p4cnn-int8",
    feature = "p4m-int8"
)))]
fn run_model() -> bool {
    hprintln!("cm4 digits harness only (no model feature): the baseline of the size measurements");
    true
}

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap();
    harness::start_timer(&mut cp.SYST);
    if run_model() {
        debug::exit(debug::EXIT_SUCCESS);
    } else {
        hprintln!("RESULT: FAIL (the device disagrees with the host)");
        debug::exit(debug::EXIT_FAILURE);
    }
    loop {
        cortex_m::asm::nop();
    }
}
