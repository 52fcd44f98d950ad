//! The FMA peak of one core, measured: twelve independent multiply-add chains per
//! kernel's vector width, held in registers, so that the time of `rounds` rounds
//! gives the most FLOPs per second the core retires with that kernel's instructions.
//! Benchmarks report the fast path's GFLOP/s against it, measured in the same run.
//!
//! Each function performs `rounds * 12 * LANES` fused (or, portable, separate)
//! multiply-adds, `2 * rounds * 12 * LANES` FLOPs, and returns a value that depends
//! on every chain so the work cannot be optimised away.

/// Independent chains: more than FMA latency x FMA ports on current x86 cores.
const CHAINS: usize = 12;

/// FLOPs that one call of a `kernel`'s peak loop performs per round.
pub const fn flops_per_round(lanes: usize) -> usize {
    2 * CHAINS * lanes
}

/// The multiplier and addend keep every chain finite for any round count:
/// `a <- a * M + A` converges to `A / (1 - M)`.
const M: f32 = 0.999_9;
const A: f32 = 1.0e-4;

/// Portable loop on `[f32; 8]` chunks (separate multiply and add).
pub fn portable(rounds: usize) -> f32 {
    let mut c = [[0.0f32; 8]; CHAINS];
    for _ in 0..rounds {
        for chain in c.iter_mut() {
            for v in chain.iter_mut() {
                *v = *v * M + A;
            }
        }
        core::hint::black_box(&mut c);
    }
    c.iter().flatten().sum()
}

/// AVX2+FMA loop: 12 chains of 8 lanes.
///
/// # Safety
/// Safe Rust; callers outside code compiled with `avx2` and `fma` must make sure
/// the CPU has them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub fn avx2_fma(rounds: usize) -> f32 {
    use core::arch::x86_64::{__m256, _mm256_fmadd_ps, _mm256_set1_ps, _mm256_setzero_ps};
    let (m, a) = (_mm256_set1_ps(M), _mm256_set1_ps(A));
    let mut c = [_mm256_setzero_ps(); CHAINS];
    for _ in 0..rounds {
        for chain in c.iter_mut() {
            *chain = _mm256_fmadd_ps(*chain, m, a);
        }
    }
    let lanes: [[f32; 8]; CHAINS] = bytemuck::cast::<[__m256; CHAINS], _>(c);
    lanes.iter().flatten().sum()
}

/// AVX-512 loop: 12 chains of 16 lanes.
///
/// # Safety
/// Safe Rust; callers outside code compiled with `avx512f`, `avx2` and `fma` must
/// make sure the CPU has them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub fn avx512(rounds: usize) -> f32 {
    use core::arch::x86_64::{__m512, _mm512_fmadd_ps, _mm512_set1_ps, _mm512_setzero_ps};
    let (m, a) = (_mm512_set1_ps(M), _mm512_set1_ps(A));
    let mut c = [_mm512_setzero_ps(); CHAINS];
    for _ in 0..rounds {
        for chain in c.iter_mut() {
            *chain = _mm512_fmadd_ps(*chain, m, a);
        }
    }
    let lanes: [[f32; 16]; CHAINS] = bytemuck::cast::<[__m512; CHAINS], _>(c);
    lanes.iter().flatten().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chain follows `a <- a*M + A` from 0: after n rounds `A (1 - M^n) / (1 - M)`.
    #[test]
    fn chains_compute_the_recurrence() {
        let n = 50;
        let mut x = 0.0f64;
        for _ in 0..n {
            x = x * f64::from(M) + f64::from(A);
        }
        let expected = x * 12.0 * 8.0;
        let got = f64::from(portable(n));
        assert!(
            (got - expected).abs() <= 1e-4 * expected,
            "{got} vs {expected}"
        );
        assert_eq!(flops_per_round(8), 192);
    }
}
