//! Dequantisation of every supported ggml type against the `gguf` Python
//! package (fixtures from scripts/fixtures/make_gguf_fixtures.py).

use std::path::PathBuf;

use pgprune::models::weights::gguf::{GgmlType, GgufFile};

const ROWS: u64 = 2;
const COLS: u64 = 256;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf").join(name)
}

fn expected(type_name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture(&format!("expected/{type_name}.f32"))).expect("expected values");
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Distance in units in the last place between two finite f32 values.
fn ulps(a: f32, b: f32) -> u32 {
    let key = |x: f32| {
        let bits = x.to_bits() as i32;
        if bits < 0 { i32::MIN - bits } else { bits }
    };
    key(a).abs_diff(key(b))
}

fn check_type(type_name: &str, ggml_type: GgmlType, max_ulps: u32) {
    let file = GgufFile::open(fixture("types.gguf")).expect("open types.gguf");
    let info = file.tensor_info(type_name).expect("tensor present");
    assert_eq!(info.ggml_type, ggml_type, "{type_name}: type");
    assert_eq!(info.dims, vec![COLS, ROWS], "{type_name}: dims");

    let got = file.dequantize(type_name).expect("dequantise");
    let want = expected(type_name);
    assert_eq!(got.len(), want.len(), "{type_name}: element count");
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        assert!(
            ulps(g, w) <= max_ulps,
            "{type_name}[{i}]: got {g}, expected {w} (more than {max_ulps} ulp apart)"
        );
    }
}

#[test]
fn dequant_f32() {
    check_type("f32", GgmlType::F32, 0);
}

// f16 and bf16 widen to f32 exactly, so no ulp of slack is needed.
#[test]
fn dequant_f16() {
    check_type("f16", GgmlType::F16, 0);
}

#[test]
fn dequant_bf16() {
    check_type("bf16", GgmlType::BF16, 0);
}

#[test]
fn dequant_q8_0() {
    check_type("q8_0", GgmlType::Q8_0, 0);
}

#[test]
fn dequant_q4_0() {
    check_type("q4_0", GgmlType::Q4_0, 0);
}

#[test]
fn dequant_q4_1() {
    check_type("q4_1", GgmlType::Q4_1, 0);
}

#[test]
fn dequant_q5_0() {
    check_type("q5_0", GgmlType::Q5_0, 0);
}

#[test]
fn dequant_q5_1() {
    check_type("q5_1", GgmlType::Q5_1, 0);
}

#[test]
fn dequant_q4_k() {
    check_type("q4_k", GgmlType::Q4K, 0);
}

#[test]
fn dequant_q5_k() {
    check_type("q5_k", GgmlType::Q5K, 0);
}

#[test]
fn dequant_q6_k() {
    check_type("q6_k", GgmlType::Q6K, 0);
}
