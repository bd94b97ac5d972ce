//! Bulk Bernoulli sampling from an injected random number generator.

use rand::Rng;

/// 2^32: a uniform `u32` draw `x` keeps a unit when `x < s * 2^32`.
const U32_RANGE: f64 = 4_294_967_296.0;

/// Number of uniforms drawn per call to the generator. Large enough that the
/// generator's block function dominates, small enough to stay in L1 cache.
const UNIFORM_CHUNK: usize = 4096;

/// Draws `k` masks with `mask[r][i] = 1.0` with probability `probs[i]`,
/// returned row-major as `k * probs.len()` values of 0.0 and 1.0.
///
/// Unit `i` is kept when a uniform `u32` draw is below `floor(probs[i] * 2^32)`,
/// so the keep probability is `probs[i]` rounded down to a multiple of 2^-32.
/// A probability of exactly 0 never keeps and exactly 1 always keeps. The
/// comparison is done on integers because converting `u32` to a float does
/// not vectorise on baseline x86-64 and was ten times slower. Draws are
/// consumed in row-major order, so a given generator state always yields
/// the same masks.
pub(crate) fn sample_rows<R: Rng + ?Sized>(probs: &[f64], k: usize, rng: &mut R) -> Vec<f32> {
    let n = probs.len();
    // NaN maps to 0 in a saturating float-to-integer cast.
    let thresholds: Vec<u64> = probs.iter().map(|&p| (p * U32_RANGE) as u64).collect();
    let mut masks = vec![0.0_f32; k * n];
    let mut uniforms = [0_u32; UNIFORM_CHUNK];
    for row in masks.chunks_exact_mut(n.max(1)).take(k) {
        for (out, t) in row
            .chunks_mut(UNIFORM_CHUNK)
            .zip(thresholds.chunks(UNIFORM_CHUNK))
        {
            let draws = &mut uniforms[..out.len()];
            rng.fill(draws);
            for ((m, &x), &ti) in out.iter_mut().zip(draws.iter()).zip(t) {
                *m = if u64::from(x) < ti { 1.0 } else { 0.0 };
            }
        }
    }
    masks
}
