//! The rotation group C4 (`p4` in GrouPy): element `r` rotates by `r * 90°`
//! counter-clockwise (`np.rot90(A, r)`).

use super::{Group, action_is_homomorphism, axioms_hold, compose_table, inverse_table};

/// The cyclic group of the four rotations by multiples of 90°.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct C4;

const COMPOSE: [u8; 16] = compose_table::<16>(4);
const INVERSE: [u8; 4] = inverse_table::<4>();

// Compile-time proofs: C4 is a group, and the grid action respects its product for
// odd and even grids.
const _: () = assert!(axioms_hold(&COMPOSE, &INVERSE, 4));
const _: () = assert!(action_is_homomorphism(&COMPOSE, 4, 3));
const _: () = assert!(action_is_homomorphism(&COMPOSE, 4, 4));
static_assertions::const_assert_eq!(COMPOSE[4 + 3], 0); // r1 * r3 = e

impl Group for C4 {
    const ORDER: usize = 4;
    const NAME: &'static str = "C4";
    const COMPOSE: &'static [u8] = &COMPOSE;
    const INVERSE: &'static [u8] = &INVERSE;
}
