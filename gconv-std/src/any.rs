//! Layers chosen at run time: the pair (`z2 -> c4`, `c4 -> c4`, `z2 -> d4`,
//! `d4 -> d4`) as a value, for command lines and model files.

use core::fmt;
use core::str::FromStr;

use gconv_core::{C4, ConvGeometry, D4, Padding};

use crate::error::Error;
use crate::layer::{C4ToC4, D4ToD4, Z2ToC4, Z2ToD4};
use crate::params::LayerParams;
use crate::tensor::Tensor;
use crate::transform::transform;

/// Parses a padding: `valid`, `same`, `P` (P zeros on every side) or `T,B,L,R`.
///
/// # Errors
/// [`Error::Usage`] naming the text and the accepted forms.
pub fn parse_padding(text: &str) -> Result<Padding, Error> {
    let s = text.trim();
    match s.to_ascii_lowercase().as_str() {
        "valid" => return Ok(Padding::Valid),
        "same" => return Ok(Padding::Same),
        _ => {}
    }
    let numbers: Result<Vec<usize>, _> = s.split(',').map(|p| p.trim().parse::<usize>()).collect();
    match numbers.as_deref() {
        Ok(&[p]) => Ok(Padding::symmetric(p)),
        Ok(&[top, bottom, left, right]) => Ok(Padding::Explicit {
            top,
            bottom,
            left,
            right,
        }),
        _ => Err(Error::Usage(format!(
            "invalid padding {s:?}: expected valid, same, P (P on every side) or T,B,L,R"
        ))),
    }
}

/// The space a feature map lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    /// Plain images, `(N, C, H, W)`.
    Z2,
    /// Functions on C4 (p4), `(N, C, 4, H, W)`.
    C4,
    /// Functions on D4 (p4m), `(N, C, 8, H, W)`.
    D4,
}

impl Space {
    /// Orientation planes per channel: 1, 4 or 8.
    pub const fn planes(self) -> usize {
        match self {
            Space::Z2 => 1,
            Space::C4 => 4,
            Space::D4 => 8,
        }
    }
}

impl FromStr for Space {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "z2" => Ok(Space::Z2),
            "c4" | "p4" => Ok(Space::C4),
            "d4" | "p4m" => Ok(Space::D4),
            _ => Err(Error::Usage(format!(
                "unknown space {s:?}: expected z2, c4 or d4"
            ))),
        }
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Space::Z2 => "Z2",
            Space::C4 => "C4",
            Space::D4 => "D4",
        })
    }
}

/// A layer pair: input space and output group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pair {
    /// Lifting Z2 -> C4.
    Z2C4,
    /// Group convolution C4 -> C4.
    C4C4,
    /// Lifting Z2 -> D4.
    Z2D4,
    /// Group convolution D4 -> D4.
    D4D4,
}

impl Pair {
    /// The pair from `from` to `to`.
    ///
    /// # Errors
    /// [`Error::Usage`] for a pair gconv does not have (`to z2`, `c4 -> d4`, `d4 -> c4`).
    pub fn new(from: Space, to: Space) -> Result<Self, Error> {
        match (from, to) {
            (Space::Z2, Space::C4) => Ok(Pair::Z2C4),
            (Space::C4, Space::C4) => Ok(Pair::C4C4),
            (Space::Z2, Space::D4) => Ok(Pair::Z2D4),
            (Space::D4, Space::D4) => Ok(Pair::D4D4),
            _ => Err(Error::Usage(format!(
                "there is no {from} -> {to} layer: use z2 -> c4, c4 -> c4, z2 -> d4 or d4 -> d4"
            ))),
        }
    }

    /// Input space.
    pub const fn from(self) -> Space {
        match self {
            Pair::Z2C4 | Pair::Z2D4 => Space::Z2,
            Pair::C4C4 => Space::C4,
            Pair::D4D4 => Space::D4,
        }
    }

    /// Output space (the group).
    pub const fn to(self) -> Space {
        match self {
            Pair::Z2C4 | Pair::C4C4 => Space::C4,
            Pair::Z2D4 | Pair::D4D4 => Space::D4,
        }
    }

    /// `"Z2->C4"` etc.
    pub fn name(self) -> String {
        format!("{}->{}", self.from(), self.to())
    }

    /// Order of the output group, the number of elements to test equivariance on.
    pub const fn group_order(self) -> usize {
        self.to().planes()
    }

    /// Applies element `g` of this pair's group to a Z2 or group map.
    ///
    /// # Errors
    /// As [`transform`].
    pub fn transform(self, g: usize, x: &Tensor) -> Result<Tensor, Error> {
        match self.to() {
            Space::D4 => transform::<D4>(g, x),
            _ => transform::<C4>(g, x),
        }
    }
}

/// One of the four layer types, chosen at run time.
#[derive(Clone, Debug, PartialEq)]
pub enum AnyConv {
    /// Z2 -> C4.
    Z2C4(Z2ToC4),
    /// C4 -> C4.
    C4C4(C4ToC4),
    /// Z2 -> D4.
    Z2D4(Z2ToD4),
    /// D4 -> D4.
    D4D4(D4ToD4),
}

macro_rules! each {
    ($self:expr, $l:ident => $body:expr) => {
        match $self {
            AnyConv::Z2C4($l) => $body,
            AnyConv::C4C4($l) => $body,
            AnyConv::Z2D4($l) => $body,
            AnyConv::D4D4($l) => $body,
        }
    };
}

macro_rules! build {
    ($pair:expr, $ctor:ident ( $($arg:expr),* )) => {
        Ok(match $pair {
            Pair::Z2C4 => AnyConv::Z2C4(Z2ToC4::$ctor($($arg),*)?),
            Pair::C4C4 => AnyConv::C4C4(C4ToC4::$ctor($($arg),*)?),
            Pair::Z2D4 => AnyConv::Z2D4(Z2ToD4::$ctor($($arg),*)?),
            Pair::D4D4 => AnyConv::D4D4(D4ToD4::$ctor($($arg),*)?),
        })
    };
}

impl AnyConv {
    /// A seeded He-initialised layer; see [`GConv::new`](crate::GConv::new).
    ///
    /// # Errors
    /// As [`GConv::new`](crate::GConv::new).
    pub fn new(
        pair: Pair,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: Padding,
        seed: u64,
    ) -> Result<Self, Error> {
        build!(
            pair,
            new(in_channels, out_channels, kernel, stride, padding, seed)
        )
    }

    /// A layer from trained weights; see [`GConv::from_weights`](crate::GConv::from_weights).
    ///
    /// # Errors
    /// As [`GConv::from_weights`](crate::GConv::from_weights).
    pub fn from_weights(
        pair: Pair,
        weight: Tensor,
        bias: Option<Vec<f32>>,
        stride: usize,
        padding: Padding,
    ) -> Result<Self, Error> {
        build!(
            pair,
            from_weights(weight.clone(), bias.clone(), stride, padding)
        )
    }

    /// The layer's pair.
    pub fn pair(&self) -> Pair {
        match self {
            AnyConv::Z2C4(_) => Pair::Z2C4,
            AnyConv::C4C4(_) => Pair::C4C4,
            AnyConv::Z2D4(_) => Pair::Z2D4,
            AnyConv::D4D4(_) => Pair::D4D4,
        }
    }

    /// See [`GConv::forward`](crate::GConv::forward).
    ///
    /// # Errors
    /// As [`GConv::forward`](crate::GConv::forward).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, Error> {
        each!(self, l => l.forward(x))
    }

    /// See [`GConv::forward_into`](crate::GConv::forward_into).
    ///
    /// # Errors
    /// As [`GConv::forward_into`](crate::GConv::forward_into).
    pub fn forward_into(&self, x: &Tensor, out: &mut [f32]) -> Result<(), Error> {
        each!(self, l => l.forward_into(x, out))
    }

    /// See [`GConv::set_path`](crate::GConv::set_path).
    pub fn set_path(&mut self, path: crate::ConvPath) {
        each!(self, l => l.set_path(path))
    }

    /// See [`GConv::path`](crate::GConv::path).
    pub fn path(&self) -> crate::ConvPath {
        each!(self, l => l.path())
    }

    /// See [`GConv::path_name`](crate::GConv::path_name).
    ///
    /// # Errors
    /// As [`GConv::path_name`](crate::GConv::path_name).
    pub fn path_name(&self, input_shape: &[usize]) -> Result<String, Error> {
        each!(self, l => l.path_name(input_shape))
    }

    /// See [`GConv::algorithm`](crate::GConv::algorithm).
    ///
    /// # Errors
    /// As [`GConv::algorithm`](crate::GConv::algorithm).
    pub fn algorithm(&self, input_shape: &[usize]) -> Result<gconv_core::Algorithm, Error> {
        each!(self, l => l.algorithm(input_shape))
    }

    /// See [`GConv::fast_plan`](crate::GConv::fast_plan).
    ///
    /// # Errors
    /// As [`GConv::fast_plan`](crate::GConv::fast_plan).
    pub fn fast_plan(&self, input_shape: &[usize]) -> Result<gconv_core::fast::FastPlan, Error> {
        each!(self, l => l.fast_plan(input_shape))
    }

    /// See [`GConv::fourier_plan`](crate::GConv::fourier_plan).
    ///
    /// # Errors
    /// As [`GConv::fourier_plan`](crate::GConv::fourier_plan).
    pub fn fourier_plan(
        &self,
        input_shape: &[usize],
    ) -> Result<gconv_core::fourier::FourierPlan, Error> {
        each!(self, l => l.fourier_plan(input_shape))
    }

    /// See [`GConv::geometry`](crate::GConv::geometry).
    ///
    /// # Errors
    /// As [`GConv::geometry`](crate::GConv::geometry).
    pub fn geometry(&self, input_shape: &[usize]) -> Result<ConvGeometry, Error> {
        each!(self, l => l.geometry(input_shape))
    }

    /// See [`GConv::is_equivariant_on`](crate::GConv::is_equivariant_on).
    pub fn is_equivariant_on(&self, height: usize, width: usize) -> bool {
        each!(self, l => l.is_equivariant_on(height, width))
    }

    /// See [`GConv::magnitude_layer`](crate::GConv::magnitude_layer).
    pub fn magnitude_layer(&self) -> Self {
        match self {
            AnyConv::Z2C4(l) => AnyConv::Z2C4(l.magnitude_layer()),
            AnyConv::C4C4(l) => AnyConv::C4C4(l.magnitude_layer()),
            AnyConv::Z2D4(l) => AnyConv::Z2D4(l.magnitude_layer()),
            AnyConv::D4D4(l) => AnyConv::D4D4(l.magnitude_layer()),
        }
    }

    /// Parameter accounting.
    pub fn params(&self) -> LayerParams {
        each!(self, l => l.params())
    }
    /// Input G-channels.
    pub fn in_channels(&self) -> usize {
        each!(self, l => l.in_channels())
    }
    /// Output G-channels.
    pub fn out_channels(&self) -> usize {
        each!(self, l => l.out_channels())
    }
    /// Kernel size.
    pub fn kernel(&self) -> usize {
        each!(self, l => l.kernel())
    }
    /// Stride.
    pub fn stride(&self) -> usize {
        each!(self, l => l.stride())
    }
    /// Padding.
    pub fn padding(&self) -> Padding {
        each!(self, l => l.padding())
    }
    /// Raw weight `(C_out, C_in, nti, K, K)`.
    pub fn weight(&self) -> &Tensor {
        each!(self, l => l.weight())
    }
    /// Bias, if any.
    pub fn bias(&self) -> Option<&[f32]> {
        each!(self, l => l.bias())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse_and_refuse() {
        for (f, t, name) in [
            ("z2", "c4", "Z2->C4"),
            ("C4", "c4", "C4->C4"),
            ("z2", "p4m", "Z2->D4"),
            ("d4", "d4", "D4->D4"),
        ] {
            let pair = Pair::new(f.parse().unwrap(), t.parse().unwrap()).unwrap();
            assert_eq!(pair.name(), name);
        }
        for (f, t) in [("c4", "d4"), ("d4", "c4"), ("z2", "z2"), ("c4", "z2")] {
            let e = Pair::new(f.parse().unwrap(), t.parse().unwrap())
                .unwrap_err()
                .to_string();
            assert!(e.contains("there is no"), "{e}");
        }
        assert!("x4".parse::<Space>().is_err());
    }

    #[test]
    fn any_conv_matches_the_typed_layer() {
        let typed = D4ToD4::new(2, 3, 3, 1, Padding::Same, 9).unwrap();
        let any = AnyConv::new(Pair::D4D4, 2, 3, 3, 1, Padding::Same, 9).unwrap();
        let x = Tensor::from_fn(vec![1, 2, 8, 5, 5], |i| (i % 13) as f32 - 6.0);
        assert_eq!(any.forward(&x).unwrap(), typed.forward(&x).unwrap());
        assert_eq!(any.pair(), Pair::D4D4);
        assert_eq!(any.params(), typed.params());
        let w = Tensor::zeros(vec![3, 2, 4, 3, 3]);
        assert!(AnyConv::from_weights(Pair::D4D4, w.clone(), None, 1, Padding::Valid).is_err());
        assert!(AnyConv::from_weights(Pair::C4C4, w, None, 1, Padding::Valid).is_ok());
    }
}
