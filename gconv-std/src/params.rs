//! Parameter accounting: learnable parameters, orientation channels, expanded filter
//! size and MACs of a G-conv layer, and channel budgets for converting a planar CNN.
//!
//! # "Why is my parameter count larger than a plain CNN's?"
//!
//! It usually is not: it is counted in the wrong units. A G-CNN layer with `C_in`
//! input and `C_out` output G-channels learns `C_out * C_in * nti * K * K` weights
//! (+ `C_out` biases), where `nti` is 1 for a lifting layer and `|G|` for a group
//! layer. The layer *applies* `|G|` transformed copies of each filter (the expanded
//! bank is `(C_out*|G|, C_in*nti, K, K)`), but those copies are produced by an index
//! gather from the same raw weights: they are not parameters, and a framework that
//! reports the expanded bank's size over-counts by `|G|`.
//!
//! Worked example, `Z2 -> C4 -> C4` with `3 -> 5 -> 7` G-channels and 3x3 kernels:
//!
//! | layer   | learnable weights      | orientation channels out | expanded bank          |
//! |---------|------------------------|--------------------------|------------------------|
//! | Z2->C4  | 5*3*1*9 = **135**      | 5*4 = 20                 | 20*3*9 = 540           |
//! | C4->C4  | 7*5*4*9 = **1260**     | 7*4 = 28                 | 28*20*9 = 5040         |
//!
//! With D4 the lifting layer is the same 135 and the group layer learns
//! 7*5*8*9 = **2520**. What *is* larger than in a planar CNN with the same channel
//! count is the feature map (`C * |G|` planes) and the compute: the group layer
//! reads `C_in * |G|` planes. To compare fairly, shrink the G-channel count:
//! [`equal_parameter_channels`] (`N / sqrt(|G|)`) keeps the parameter count of a
//! planar layer with `N` channels, [`equal_compute_channels`] (`N / |G|`) keeps its
//! planar channel count and MACs.

/// Parameter and cost accounting of one G-conv layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerParams {
    /// Input orientation planes per G-channel (1 for Z2 input).
    pub nti: usize,
    /// Output orientation planes per G-channel, `|G|`.
    pub nto: usize,
    /// Input G-channels.
    pub in_channels: usize,
    /// Output G-channels.
    pub out_channels: usize,
    /// Kernel size.
    pub kernel: usize,
    /// Whether the layer has a bias.
    pub has_bias: bool,
}

impl LayerParams {
    /// Accounting for a layer with the given sizes.
    pub const fn new(
        nti: usize,
        nto: usize,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        has_bias: bool,
    ) -> Self {
        LayerParams {
            nti,
            nto,
            in_channels,
            out_channels,
            kernel,
            has_bias,
        }
    }

    /// A planar (ordinary) conv layer: `nti = nto = 1`.
    pub const fn planar(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        has_bias: bool,
    ) -> Self {
        Self::new(1, 1, in_channels, out_channels, kernel, has_bias)
    }

    /// Learnable weights: `C_out * C_in * nti * K * K`.
    pub const fn weights(&self) -> usize {
        self.out_channels * self.in_channels * self.nti * self.kernel * self.kernel
    }

    /// Learnable biases: `C_out` (one per G-channel, shared by its `nto` planes), or 0.
    pub const fn biases(&self) -> usize {
        if self.has_bias { self.out_channels } else { 0 }
    }

    /// All learnable parameters: weights + biases.
    pub const fn learnable(&self) -> usize {
        self.weights() + self.biases()
    }

    /// Planar channels of the input map: `C_in * nti`.
    pub const fn in_planes(&self) -> usize {
        self.in_channels * self.nti
    }

    /// Planar channels of the output map: `C_out * nto`.
    pub const fn out_planes(&self) -> usize {
        self.out_channels * self.nto
    }

    /// Values in the expanded bank `(C_out*nto, C_in*nti, K, K)`: `nto * weights`.
    /// Derived by the index gather, not learnable.
    pub const fn expanded_filter_len(&self) -> usize {
        self.weights() * self.nto
    }

    /// Multiply-accumulates per output pixel position: `C_out*nto * C_in*nti * K*K`.
    pub const fn macs_per_pixel(&self) -> usize {
        self.expanded_filter_len()
    }
}

/// G-channels with (about) the parameters of a planar layer with `n` channels:
/// `n / sqrt(|G|)` (a group layer has `|G|` times the weights per channel pair).
pub fn equal_parameter_channels(n: usize, group_order: usize) -> f64 {
    n as f64 / (group_order as f64).sqrt()
}

/// G-channels with the planar channel count and compute of a planar layer with `n`
/// channels: `n / |G|`.
pub fn equal_compute_channels(n: usize, group_order: usize) -> f64 {
    n as f64 / group_order as f64
}

/// The worked example of the module docs for a group of order `group_order`:
/// `Z2 -> G -> G` with `3 -> 5 -> 7` G-channels, 3x3 kernels, no bias.
pub const fn worked_example(group_order: usize) -> [LayerParams; 2] {
    [
        LayerParams::new(1, group_order, 3, 5, 3, false),
        LayerParams::new(group_order, group_order, 5, 7, 3, false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example_counts() {
        let [lift, group] = worked_example(4);
        assert_eq!((lift.weights(), group.weights()), (135, 1260));
        let [lift, group] = worked_example(8);
        assert_eq!((lift.weights(), group.weights()), (135, 2520));
        assert_eq!(group.out_planes(), 56);
        assert_eq!(group.expanded_filter_len(), 8 * 2520);
    }

    #[test]
    fn budgets() {
        assert_eq!(equal_parameter_channels(64, 4), 32.0);
        assert_eq!(equal_compute_channels(64, 4), 16.0);
        assert!((equal_parameter_channels(64, 8) - 22.627).abs() < 1e-3);
        assert_eq!(
            LayerParams::planar(3, 5, 3, true).learnable(),
            5 * 3 * 9 + 5
        );
    }
}
