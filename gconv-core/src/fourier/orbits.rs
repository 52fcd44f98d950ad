//! Orbits of the group acting on the terms of one filter: pairs (input orientation
//! plane `h`, kernel tap `p`), read off the layer's index table.
//!
//! The expansion table says `bank[t][h][p] = w[T][P]` with `(T, P) = entry(t, h, p)`,
//! and `entry(e, h, p) = (h, p)`. So `bank[t][h][p] = bank[e][entry(t, h, p)]`: the
//! filter of output orientation `t` is the identity filter read at `t^-1 . (h, p)`,
//! where `k . (h, p) = entry(k^-1, h, p)` is a left action of the group on the pairs.
//!
//! For a group convolution the action is free (it permutes the planes freely), so the
//! `|G| * K*K` pairs fall into exactly `K*K` orbits of `|G|` pairs. For a lifting
//! convolution (one plane) the pairs are the taps, and an orbit has `|G| / |S|`
//! taps, `S` the stabilizer of its first tap.

use crate::fast::MAX_KERNEL;
use crate::group::inverse_closed_form;
use crate::group::tables::entry_in_range;

/// Most orbits: one per tap of the largest kernel.
pub(crate) const MAX_ORBITS: usize = MAX_KERNEL * MAX_KERNEL;

/// Most pairs: 8 planes times the taps of the largest kernel.
const MAX_PAIRS: usize = 8 * MAX_ORBITS;

/// The orbits of a layer's pairs, each listed as `k . q` for every element `k` of the
/// group (with repeats when `q` has a nontrivial stabilizer).
#[derive(Clone, Debug)]
pub(crate) struct Orbits {
    count: usize,
    /// `members[q][k] = (plane, tap)` of `k . q`, `tap = u*K + v`.
    members: [[(u8, u8); 8]; MAX_ORBITS],
    /// Size of the stabilizer of orbit `q`'s first pair (1 for group convolutions).
    stabilizer: [u8; MAX_ORBITS],
}

impl Orbits {
    /// The orbits for `order` = |G| (4 or 8), `nti` input planes (1 or `order`) and
    /// a `k x k` kernel, `k <= MAX_KERNEL`. Orbits are numbered by their smallest pair
    /// in `(plane, tap)` order.
    pub(crate) fn new(order: usize, nti: usize, k: usize) -> Self {
        let mut orbits = Orbits {
            count: 0,
            members: [[(0, 0); 8]; MAX_ORBITS],
            stabilizer: [0; MAX_ORBITS],
        };
        if order > 8 || nti > 8 || k > MAX_KERNEL {
            // Ruled out by the callers (C4/D4, `K <= MAX_KERNEL`); no orbits then.
            debug_assert!(false, "orbits of |G| = {order}, nti = {nti}, K = {k}");
            return orbits;
        }
        let taps = k * k;
        let mut seen = [false; MAX_PAIRS];
        // Pairs in `(plane, tap)` order, `tap = u*K + v`. Every index below is in range
        // for the sizes checked above; `get` keeps panic paths out of the code.
        for h in 0..nti {
            for (u, v) in (0..k).flat_map(|u| (0..k).map(move |v| (u, v))) {
                let p = u * k + v;
                let q = orbits.count;
                let new = seen.get(h * taps + p).copied();
                debug_assert!(
                    new == Some(true) || (new == Some(false) && q < MAX_ORBITS),
                    "orbits: pair ({h}, {p}) or orbit {q} outside the arrays"
                );
                // `Some(true)`: the pair is in an orbit already.
                let (Some(false), Some(members)) = (new, orbits.members.get_mut(q)) else {
                    continue;
                };
                let mut fixed = 0u8;
                for (g, member) in members.iter_mut().enumerate().take(order) {
                    // k . (h, p) = entry(k^-1, h, p)
                    let (plane, gu, gv) = entry_in_range(nti, k, inverse_closed_form(g), h, u, v);
                    let tap = gu * k + gv;
                    match seen.get_mut(plane * taps + tap) {
                        Some(s) => *s = true,
                        None => debug_assert!(false, "orbits: pair ({plane}, {tap}) out of range"),
                    }
                    if (plane, tap) == (h, p) {
                        fixed += 1;
                    }
                    // plane < 8 and tap < 121: both fit in u8.
                    *member = (plane as u8, tap as u8);
                }
                match orbits.stabilizer.get_mut(q) {
                    Some(s) => *s = fixed,
                    None => debug_assert!(false, "orbits: orbit {q} of {MAX_ORBITS}"),
                }
                orbits.count += 1;
            }
        }
        orbits
    }

    /// Number of orbits (`K*K` for a group convolution).
    pub(crate) const fn count(&self) -> usize {
        self.count
    }

    /// `(plane, tap)` of `g . q`.
    #[inline]
    pub(crate) fn member(&self, q: usize, g: usize) -> (usize, usize) {
        debug_assert!(
            q < self.count && g < 8,
            "orbit member ({q}, {g}) of {}",
            self.count
        );
        let (plane, tap) = self.members[q % MAX_ORBITS][g % 8];
        (plane as usize, tap as usize)
    }

    /// Size of the stabilizer of orbit `q` (at least 1).
    pub(crate) fn stabilizer(&self, q: usize) -> usize {
        debug_assert!(q < self.count, "stabilizer of orbit {q} of {}", self.count);
        debug_assert!(
            self.stabilizer[q % MAX_ORBITS] > 0,
            "empty stabilizer of orbit {q}"
        );
        usize::from(self.stabilizer[q % MAX_ORBITS]).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pair lies in exactly one orbit (counted with the stabilizer's
    /// multiplicity), each orbit is closed under the action, and a group convolution
    /// has exactly K*K free orbits.
    fn check(order: usize, nti: usize, k: usize) {
        let o = Orbits::new(order, nti, k);
        let mut hits = [0usize; MAX_PAIRS];
        for q in 0..o.count() {
            for g in 0..order {
                let (h, p) = o.member(q, g);
                hits[h * k * k + p] += 1;
            }
            // closure: a . (g . q) is some member of q
            for a in 0..order {
                for g in 0..order {
                    let (h, p) = o.member(q, g);
                    let (h2, u, v) =
                        entry_in_range(nti, k, inverse_closed_form(a), h, p / k, p % k);
                    assert!((0..order).any(|m| o.member(q, m) == (h2, u * k + v)));
                }
            }
        }
        for q in 0..o.count() {
            let (h, p) = o.member(q, 0);
            assert_eq!(hits[h * k * k + p], o.stabilizer(q), "orbit {q}");
            assert_eq!(order % o.stabilizer(q), 0);
        }
        let total: usize = (0..nti * k * k).map(|i| hits[i]).sum();
        assert_eq!(total, order * o.count());
        if nti > 1 {
            assert_eq!(o.count(), k * k);
            assert!((0..o.count()).all(|q| o.stabilizer(q) == 1));
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "no unsafe here; slow under the interpreter")]
    fn orbits_partition_the_pairs() {
        for k in 1..=MAX_KERNEL {
            check(4, 4, k);
            check(8, 8, k);
            check(4, 1, k);
            check(8, 1, k);
        }
    }

    #[test]
    fn lifting_orbit_counts_are_the_known_ones() {
        // C4 on a 3x3 grid: centre, edges, corners. D4 on 5x5: centre, 2 axis rings,
        // 2 diagonal rings, one ring of 8 knight-like taps.
        assert_eq!(Orbits::new(4, 1, 3).count(), 3);
        assert_eq!(Orbits::new(8, 1, 5).count(), 6);
        assert_eq!(Orbits::new(4, 1, 4).count(), 4); // even: no centre
        let o = Orbits::new(4, 1, 3);
        assert_eq!(o.stabilizer(0), 1); // tap 0 is a corner
        assert_eq!((0..3).map(|q| o.stabilizer(q)).max(), Some(4)); // the centre
    }
}
