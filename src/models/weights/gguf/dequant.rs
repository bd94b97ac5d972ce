//! Dequantisation of ggml block formats to f32.
//!
//! Each function below decodes one block, following the block structs and
//! the reference `dequantize_row_*` routines of ggml (`ggml-quants.c`). The
//! f16 scales convert to f32 exactly, and the arithmetic is done in f32 in
//! the same order as ggml's reference code.

use half::{bf16, f16};

use super::types::{GgmlType, QK, QK_K};

/// Blocks below this many elements are decoded on one thread, because
/// spawning threads costs more than decoding a small tensor.
const MIN_ELEMENTS_PER_THREAD: usize = 1 << 16;

/// Dequantises `data`, holding whole blocks of `ggml_type`, to f32.
///
/// Returns `None` if `data.len()` is not a whole number of blocks.
pub fn dequantize(ggml_type: GgmlType, data: &[u8]) -> Option<Vec<f32>> {
    let type_size = ggml_type.type_size();
    let block_size = ggml_type.block_size();
    if data.len() % type_size != 0 {
        return None;
    }
    let n_blocks = data.len() / type_size;
    let mut out = vec![0f32; n_blocks * block_size];

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = threads.min(out.len() / MIN_ELEMENTS_PER_THREAD).max(1);
    let blocks_per_thread = n_blocks.div_ceil(threads).max(1);

    std::thread::scope(|scope| {
        let chunks = data
            .chunks(blocks_per_thread * type_size)
            .zip(out.chunks_mut(blocks_per_thread * block_size));
        for (src, dst) in chunks {
            scope.spawn(move || decode_blocks(ggml_type, src, dst));
        }
    });
    Some(out)
}

/// Decodes the whole blocks in `src` into `dst`, whose length is the number
/// of blocks times the block size.
fn decode_blocks(ggml_type: GgmlType, src: &[u8], dst: &mut [f32]) {
    let blocks = src
        .chunks_exact(ggml_type.type_size())
        .zip(dst.chunks_exact_mut(ggml_type.block_size()));
    for (block, y) in blocks {
        match ggml_type {
            GgmlType::F32 => y[0] = f32::from_le_bytes([block[0], block[1], block[2], block[3]]),
            GgmlType::F16 => y[0] = f16_at(block, 0),
            GgmlType::BF16 => y[0] = bf16::from_le_bytes([block[0], block[1]]).to_f32(),
            GgmlType::Q4_0 => q4_0(block, y),
            GgmlType::Q4_1 => q4_1(block, y),
            GgmlType::Q5_0 => q5_0(block, y),
            GgmlType::Q5_1 => q5_1(block, y),
            GgmlType::Q8_0 => q8_0(block, y),
            GgmlType::Q4K => q4_k(block, y),
            GgmlType::Q5K => q5_k(block, y),
            GgmlType::Q6K => q6_k(block, y),
        }
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// `{ f16 d; u8 qs[16] }`: low nibbles are elements 0..16, high nibbles 16..32.
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..2 + QK / 2];
    for (j, &q) in qs.iter().enumerate() {
        y[j] = (i32::from(q & 0x0F) - 8) as f32 * d;
        y[j + QK / 2] = (i32::from(q >> 4) - 8) as f32 * d;
    }
}

/// `{ f16 d; f16 m; u8 qs[16] }`.
fn q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qs = &b[4..4 + QK / 2];
    for (j, &q) in qs.iter().enumerate() {
        y[j] = f32::from(q & 0x0F) * d + m;
        y[j + QK / 2] = f32::from(q >> 4) * d + m;
    }
}

/// `{ f16 d; u8 qh[4]; u8 qs[16] }`: bit j of `qh` is the fifth bit of
/// element j.
fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..6 + QK / 2];
    for (j, &q) in qs.iter().enumerate() {
        let high0 = ((qh >> j) << 4) & 0x10;
        let high1 = (qh >> (j + 12)) & 0x10;
        y[j] = ((u32::from(q & 0x0F) | high0) as i32 - 16) as f32 * d;
        y[j + QK / 2] = ((u32::from(q >> 4) | high1) as i32 - 16) as f32 * d;
    }
}

/// `{ f16 d; f16 m; u8 qh[4]; u8 qs[16] }`.
fn q5_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..8 + QK / 2];
    for (j, &q) in qs.iter().enumerate() {
        let high0 = ((qh >> j) << 4) & 0x10;
        let high1 = (qh >> (j + 12)) & 0x10;
        y[j] = (u32::from(q & 0x0F) | high0) as f32 * d + m;
        y[j + QK / 2] = (u32::from(q >> 4) | high1) as f32 * d + m;
    }
}

/// `{ f16 d; i8 qs[32] }`.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (j, &q) in b[2..2 + QK].iter().enumerate() {
        y[j] = f32::from(q as i8) * d;
    }
}

/// Unpacks the 6-bit scale and min of sub-block `j` (0..8) from the 12
/// packed bytes of a Q4_K or Q5_K super-block.
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (scale, min) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (f32::from(scale), f32::from(min))
}

/// `{ f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }`: eight sub-blocks of 32.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..16 + QK_K / 2];
    for (chunk, (q, out)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, min1) = (d * sc1, dmin * m1);
        let (d2, min2) = (d * sc2, dmin * m2);
        for l in 0..32 {
            out[l] = d1 * f32::from(q[l] & 0x0F) - min1;
            out[l + 32] = d2 * f32::from(q[l] >> 4) - min2;
        }
    }
}

/// `{ f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }`.
fn q5_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..16 + QK_K / 8];
    let qs = &b[16 + QK_K / 8..16 + QK_K / 8 + QK_K / 2];
    for (chunk, (q, out)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, min1) = (d * sc1, dmin * m1);
        let (d2, min2) = (d * sc2, dmin * m2);
        let bit_low = 1u8 << (2 * chunk);
        let bit_high = 2u8 << (2 * chunk);
        for l in 0..32 {
            let high_low = if qh[l] & bit_low != 0 { 16 } else { 0 };
            let high_high = if qh[l] & bit_high != 0 { 16 } else { 0 };
            out[l] = d1 * f32::from((q[l] & 0x0F) + high_low) - min1;
            out[l + 32] = d2 * f32::from((q[l] >> 4) + high_high) - min2;
        }
    }
}

/// `{ u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }`: 6-bit values in two
/// halves of 128 elements, 16 elements per scale.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, QK_K / 2 + QK_K / 4 + QK_K / 16);
    let scales_at = QK_K / 2 + QK_K / 4;
    for half in 0..2 {
        let ql = &b[half * 64..half * 64 + 64];
        let qh = &b[QK_K / 2 + half * 32..QK_K / 2 + half * 32 + 32];
        let sc = &b[scales_at + half * 8..scales_at + half * 8 + 8];
        let out = &mut y[half * 128..half * 128 + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = i32::from((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32;
            let q2 = i32::from((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
            let q3 = i32::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            let q4 = i32::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            let scale = |k: usize| d * f32::from(sc[k] as i8);
            out[l] = scale(is) * q1 as f32;
            out[l + 32] = scale(is + 2) * q2 as f32;
            out[l + 64] = scale(is + 4) * q3 as f32;
            out[l + 96] = scale(is + 6) * q4 as f32;
        }
    }
}
