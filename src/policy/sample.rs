//! Bulk Bernoulli sampling from an injected random number generator.

use rand::Rng;

/// Converts a uniform `u32` to a float in [0, 1) with 32 random bits.
const U32_TO_UNIT: f64 = 1.0 / 4_294_967_296.0;

/// Number of uniforms drawn per call to the generator. Large enough that the
/// generator's block function dominates, small enough to stay in L1 cache.
const UNIFORM_CHUNK: usize = 4096;

/// Draws `k` masks with `mask[r][i] = 1.0` with probability `probs[i]`,
/// returned row-major as `k * probs.len()` values of 0.0 and 1.0.
///
/// Unit `i` is kept when `u < probs[i]` for a uniform `u` in [0, 1), so a
/// probability of exactly 0 never keeps and exactly 1 always keeps. The
/// draws are consumed in row-major order, so a given generator state always
/// yields the same masks.
pub(crate) fn sample_rows<R: Rng + ?Sized>(probs: &[f64], k: usize, rng: &mut R) -> Vec<f32> {
    let n = probs.len();
    let mut masks = vec![0.0_f32; k * n];
    let mut uniforms = [0_u32; UNIFORM_CHUNK];
    for row in masks.chunks_exact_mut(n.max(1)).take(k) {
        for (out, p) in row
            .chunks_mut(UNIFORM_CHUNK)
            .zip(probs.chunks(UNIFORM_CHUNK))
        {
            let draws = &mut uniforms[..out.len()];
            rng.fill(draws);
            for ((m, &x), &pi) in out.iter_mut().zip(draws.iter()).zip(p) {
                *m = f32::from((x as f64 * U32_TO_UNIT) < pi);
            }
        }
    }
    masks
}
