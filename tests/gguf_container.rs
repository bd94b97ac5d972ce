//! The GGUF container: metadata of every value type, versions, and errors
//! (never panics) on truncated or corrupt files.

use std::path::{Path, PathBuf};

use pgprune::models::weights::gguf::{GgufFile, MetadataValue, DEFAULT_ALIGNMENT};
use pgprune::Error;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/types.gguf")
}

fn write_temp(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("case.gguf");
    std::fs::write(&path, bytes).expect("write temp file");
    path
}

/// Absolute offset of the end of the last tensor's data.
fn data_end(file: &GgufFile) -> usize {
    let last = file.tensor_infos().iter().map(|t| t.offset + t.n_bytes).max().unwrap_or(0);
    (file.data_offset() + last) as usize
}

fn format_reason(result: pgprune::Result<GgufFile>) -> String {
    match result {
        Err(Error::Format { reason, .. }) => reason,
        other => panic!("expected Error::Format, got {other:?}"),
    }
}

#[test]
fn metadata_every_value_type() {
    let file = GgufFile::open(fixture()).expect("open");
    let get = |key: &str| file.get(key).unwrap_or_else(|| panic!("{key} missing")).clone();
    assert_eq!(get("test.u8"), MetadataValue::U8(200));
    assert_eq!(get("test.i8"), MetadataValue::I8(-100));
    assert_eq!(get("test.u16"), MetadataValue::U16(60000));
    assert_eq!(get("test.i16"), MetadataValue::I16(-30000));
    assert_eq!(get("test.u32"), MetadataValue::U32(4_000_000_000));
    assert_eq!(get("test.i32"), MetadataValue::I32(-2_000_000_000));
    assert_eq!(get("test.f32"), MetadataValue::F32(1.5));
    assert_eq!(get("test.bool"), MetadataValue::Bool(true));
    assert_eq!(get("test.string"), MetadataValue::String("héllo".into()));
    assert_eq!(get("test.u64"), MetadataValue::U64(1 << 40));
    assert_eq!(get("test.i64"), MetadataValue::I64(-(1 << 40)));
    assert_eq!(get("test.f64"), MetadataValue::F64(-0.25));
    let ints = get("test.array_i32");
    let ints = ints.as_array().expect("array");
    assert_eq!(ints.len(), 3);
    assert_eq!(ints[1], MetadataValue::I32(-2));
    let strings = get("test.array_string");
    let strings: Vec<_> = strings.as_array().expect("array").iter().map(|v| v.as_str()).collect();
    assert_eq!(strings, vec![Some("a"), Some("bc")]);
    assert_eq!(get("general.architecture").as_str(), Some("llama"));
}

#[test]
fn header_layout() {
    let file = GgufFile::open(fixture()).expect("open");
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), DEFAULT_ALIGNMENT);
    assert_eq!(file.data_offset() % DEFAULT_ALIGNMENT, 0);
    assert_eq!(file.tensor_infos().len(), 11);
    let first = &file.tensor_infos()[0];
    assert_eq!(first.name, "f32");
    assert_eq!(first.offset, 0);
}

#[test]
fn version_2_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut bytes = std::fs::read(fixture()).expect("read fixture");
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let file = GgufFile::open(write_temp(dir.path(), &bytes)).expect("open v2");
    assert_eq!(file.version(), 2);
    assert_eq!(file.dequantize("q4_k").expect("dequantise").len(), 512);
}

#[test]
fn bad_magic_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut bytes = std::fs::read(fixture()).expect("read fixture");
    bytes[0] = b'X';
    let reason = format_reason(GgufFile::open(write_temp(dir.path(), &bytes)));
    assert!(reason.contains("magic"), "{reason}");
}

#[test]
fn unsupported_versions_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    for version in [1u32, 4, 3u32.swap_bytes()] {
        let mut bytes = std::fs::read(fixture()).expect("read fixture");
        bytes[4..8].copy_from_slice(&version.to_le_bytes());
        let reason = format_reason(GgufFile::open(write_temp(dir.path(), &bytes)));
        assert!(reason.contains("version") || reason.contains("big-endian"), "{version}: {reason}");
    }
}

#[test]
fn absurd_tensor_count_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut bytes = std::fs::read(fixture()).expect("read fixture");
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let reason = format_reason(GgufFile::open(write_temp(dir.path(), &bytes)));
    assert!(reason.contains("tensor count"), "{reason}");
}

#[test]
fn unknown_tensor_type_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut bytes = std::fs::read(fixture()).expect("read fixture");
    // The first tensor info follows the metadata: name "f32" (u64 length 3),
    // rank 2, two u64 dims, then the u32 type id.
    let marker = [3u8, 0, 0, 0, 0, 0, 0, 0, b'f', b'3', b'2', 2, 0, 0, 0];
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("first tensor info");
    let type_at = at + marker.len() + 16;
    bytes[type_at..type_at + 4].copy_from_slice(&9999u32.to_le_bytes());
    let reason = format_reason(GgufFile::open(write_temp(dir.path(), &bytes)));
    assert!(reason.contains("type id 9999"), "{reason}");
}

#[test]
fn truncated_data_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes = std::fs::read(fixture()).expect("read fixture");
    let end = data_end(&GgufFile::open(fixture()).expect("open"));
    let reason = format_reason(GgufFile::open(write_temp(dir.path(), &bytes[..end - 1])));
    assert!(reason.contains("truncated"), "{reason}");
}

#[test]
fn missing_file_is_io_error() {
    let result = GgufFile::open("/nonexistent/model.gguf");
    assert!(matches!(result, Err(Error::Io { .. })), "{result:?}");
}

/// Truncating the file at every offset must give an error or a file whose
/// tensors all dequantise, never a panic.
#[test]
fn truncation_never_panics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes = std::fs::read(fixture()).expect("read fixture");
    let mut opened = 0;
    for len in 0..bytes.len() {
        let path = write_temp(dir.path(), &bytes[..len]);
        match GgufFile::open(&path) {
            Err(Error::Format { .. }) => {}
            Err(other) => panic!("length {len}: expected Error::Format, got {other}"),
            Ok(file) => {
                opened += 1;
                for info in file.tensor_infos() {
                    file.dequantize(&info.name).expect("dequantise");
                }
            }
        }
    }
    // Only the padding after the last tensor's data can be cut off.
    let end = data_end(&GgufFile::open(fixture()).expect("open"));
    assert_eq!(opened, bytes.len() - end);
}

/// Flipping single bytes in the header must not panic either.
#[test]
fn corrupt_header_bytes_never_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let original = std::fs::read(fixture()).expect("read fixture");
    let file = GgufFile::open(fixture()).expect("open");
    let header_len = file.data_offset() as usize;
    for at in 0..header_len {
        for value in [0x00u8, 0xFF, 0x7F] {
            let mut bytes = original.clone();
            bytes[at] = value;
            let path = write_temp(dir.path(), &bytes);
            if let Ok(file) = GgufFile::open(&path) {
                for info in file.tensor_infos() {
                    file.dequantize(&info.name).expect("dequantise");
                }
            }
        }
    }
}

#[test]
fn other_architecture_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut bytes = std::fs::read(fixture()).expect("read fixture");
    // The value of general.architecture: u64 length 5, then "llama".
    let marker = [5u8, 0, 0, 0, 0, 0, 0, 0, b'l', b'l', b'a', b'm', b'a'];
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("architecture value");
    bytes[at + 8..at + 13].copy_from_slice(b"gemma");
    let file = GgufFile::open(write_temp(dir.path(), &bytes)).expect("open");
    assert_eq!(file.architecture().expect("architecture"), "gemma");
    match file.hf_config() {
        Err(Error::Format { reason, .. }) => assert!(reason.contains("'gemma'"), "{reason}"),
        other => panic!("expected Error::Format, got {other:?}"),
    }
}

#[test]
fn config_missing_hyperparameter_rejected() {
    // The fixture is a llama file without any llama.* hyperparameters.
    let file = GgufFile::open(fixture()).expect("open");
    match file.hf_config() {
        Err(Error::Config { field, .. }) => assert!(field.starts_with("llama."), "{field}"),
        other => panic!("expected Error::Config, got {other:?}"),
    }
}
