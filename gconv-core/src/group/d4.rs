//! The dihedral group D4 (`p4m` in GrouPy): element `4m + r` rotates by `r * 90°`
//! counter-clockwise and then, if `m = 1`, flips the row axis (flipud).

use super::{Group, action_is_homomorphism, axioms_hold, compose_table, inverse_table};

/// The eight rotations and reflections of the square.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct D4;

const COMPOSE: [u8; 64] = compose_table::<64>(8);
const INVERSE: [u8; 8] = inverse_table::<8>();

// Compile-time proofs: D4 is a group, and the grid action respects its product for
// odd and even grids.
const _: () = assert!(axioms_hold(&COMPOSE, &INVERSE, 8));
const _: () = assert!(action_is_homomorphism(&COMPOSE, 8, 3));
const _: () = assert!(action_is_homomorphism(&COMPOSE, 8, 4));
// Non-abelian: rotate-then-flip differs from flip-then-rotate.
static_assertions::const_assert!(COMPOSE[4 * 8 + 1] != COMPOSE[8 + 4]);

impl Group for D4 {
    const ORDER: usize = 8;
    const NAME: &'static str = "D4";
    const COMPOSE: &'static [u8] = &COMPOSE;
    const INVERSE: &'static [u8] = &INVERSE;
}
