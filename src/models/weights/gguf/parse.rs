//! Bounds-checked parsing of the GGUF header, metadata and tensor infos.
//!
//! Layout (GGUF v2 and v3, little-endian): magic `GGUF`, u32 version,
//! u64 tensor count, u64 metadata count, the metadata key/value pairs, the
//! tensor infos, padding to the alignment, then the tensor data. Every read
//! checks the remaining length first, so a truncated or corrupt file yields a
//! message instead of a panic.

use std::collections::BTreeMap;

use super::types::{GgmlType, MetadataValue};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Maximum tensor rank, ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;
/// Maximum nesting of metadata arrays, a cap that stops a corrupt file from
/// recursing without end. The SmolLM2 file has no nested arrays at all.
const MAX_ARRAY_DEPTH: usize = 8;

/// Location, shape and storage type of one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// The llama.cpp tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions as stored in GGUF, innermost (contiguous) first.
    pub dims: Vec<u64>,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Byte offset from the start of the data section.
    pub offset: u64,
    /// Byte length of the stored data.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// The parsed header of a GGUF file.
#[derive(Debug)]
pub struct Header {
    pub version: u32,
    pub metadata: BTreeMap<String, MetadataValue>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute byte offset of the data section.
    pub data_offset: u64,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], String> {
        let remaining = self.bytes.len() - self.pos;
        if n > remaining {
            return Err(format!(
                "truncated: {field} needs {n} bytes at offset {} but only {remaining} remain",
                self.pos
            ));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u32(&mut self, field: &str) -> Result<u32, String> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &str) -> Result<u64, String> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// Reads a count and checks that `count * min_item_bytes` fits in the
    /// rest of the file, so an absurd count fails before any allocation.
    fn count(&mut self, min_item_bytes: usize, field: &str) -> Result<usize, String> {
        let count = self.u64(field)?;
        let remaining = (self.bytes.len() - self.pos) as u64;
        let needed = count.checked_mul(min_item_bytes as u64);
        match needed {
            Some(needed) if needed <= remaining => Ok(count as usize),
            _ => Err(format!(
                "{field} = {count} cannot fit in the {remaining} bytes left at offset {}",
                self.pos
            )),
        }
    }

    fn string(&mut self, field: &str) -> Result<String, String> {
        let len = self.count(1, field)?;
        let at = self.pos;
        let bytes = self.take(len, field)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| format!("{field} at offset {at} is not valid UTF-8: {e}"))
    }

    fn value(&mut self, type_id: u32, depth: usize, key: &str) -> Result<MetadataValue, String> {
        use MetadataValue as V;
        Ok(match type_id {
            0 => V::U8(self.array::<1>(key)?[0]),
            1 => V::I8(i8::from_le_bytes(self.array(key)?)),
            2 => V::U16(u16::from_le_bytes(self.array(key)?)),
            3 => V::I16(i16::from_le_bytes(self.array(key)?)),
            4 => V::U32(self.u32(key)?),
            5 => V::I32(i32::from_le_bytes(self.array(key)?)),
            6 => V::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => V::Bool(false),
                1 => V::Bool(true),
                other => return Err(format!("metadata '{key}': invalid bool byte {other}")),
            },
            8 => V::String(self.string(key)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(format!(
                        "metadata '{key}': arrays nested deeper than {MAX_ARRAY_DEPTH}"
                    ));
                }
                let item_type = self.u32(key)?;
                let min_bytes = min_value_bytes(item_type)
                    .ok_or_else(|| format!("metadata '{key}': unknown array item type {item_type}"))?;
                let len = self.count(min_bytes, key)?;
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    items.push(self.value(item_type, depth + 1, key)?);
                }
                V::Array(items)
            }
            10 => V::U64(self.u64(key)?),
            11 => V::I64(i64::from_le_bytes(self.array(key)?)),
            12 => V::F64(f64::from_le_bytes(self.array(key)?)),
            other => return Err(format!("metadata '{key}': unknown value type {other}")),
        })
    }
}

/// Smallest encoded size of a value of GGUF type `type_id`, or `None` for an
/// unknown type. Strings and arrays need at least their u64 length.
fn min_value_bytes(type_id: u32) -> Option<usize> {
    Some(match type_id {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8..=12 => 8,
        _ => return None,
    })
}

/// Parses the header of a GGUF file held in `bytes` and checks that every
/// tensor's data lies inside the file.
pub fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    let mut cur = Cursor { bytes, pos: 0 };
    let magic = cur.array::<4>("magic")?;
    if magic != GGUF_MAGIC {
        return Err(format!("bad magic {magic:02x?}, expected \"GGUF\"; not a GGUF file"));
    }
    let version = cur.u32("version")?;
    if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
        return Err("big-endian GGUF files are not supported; convert it to little-endian".into());
    }
    if version != 2 && version != 3 {
        return Err(format!(
            "unsupported GGUF version {version}; only versions 2 and 3 are read, re-convert the model with a current llama.cpp"
        ));
    }

    // A tensor info takes at least 8 (name length) + 4 (rank) + 4 (type) + 8
    // (offset) bytes, a key/value pair at least 8 + 4 + 1.
    let n_tensors = cur.count(24, "tensor count")?;
    let n_kv = cur.count(13, "metadata count")?;

    let mut metadata = BTreeMap::new();
    for _ in 0..n_kv {
        let key = cur.string("metadata key")?;
        let type_id = cur.u32(&key)?;
        let value = cur.value(type_id, 0, &key)?;
        metadata.insert(key, value);
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(MetadataValue::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(other) => {
            return Err(format!(
                "general.alignment = {other:?} is invalid; expected a u32 power of two"
            ))
        }
    };

    let mut tensors = Vec::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        tensors.push(tensor_info(&mut cur)?);
    }

    let data_offset = (cur.pos as u64).div_ceil(alignment) * alignment;
    let data_len = (bytes.len() as u64).saturating_sub(data_offset);
    for t in &tensors {
        if t.offset % alignment != 0 {
            return Err(format!(
                "tensor '{}' offset {} is not a multiple of the alignment {alignment}",
                t.name, t.offset
            ));
        }
        let end = t.offset.checked_add(t.n_bytes);
        if end.is_none_or(|end| end > data_len) {
            return Err(format!(
                "tensor '{}' data [{}, +{}) runs past the end of the data section ({data_len} bytes); the file is truncated",
                t.name, t.offset, t.n_bytes
            ));
        }
    }

    Ok(Header {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

fn tensor_info(cur: &mut Cursor<'_>) -> Result<TensorInfo, String> {
    let name = cur.string("tensor name")?;
    let rank = cur.u32(&name)? as usize;
    if rank == 0 || rank > MAX_DIMS {
        return Err(format!("tensor '{name}' has rank {rank}; expected 1 to {MAX_DIMS}"));
    }
    let mut dims = Vec::with_capacity(rank);
    for _ in 0..rank {
        dims.push(cur.u64(&name)?);
    }
    let type_id = cur.u32(&name)?;
    let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
        format!("tensor '{name}' has ggml type id {type_id}, which this crate cannot dequantise")
    })?;
    let offset = cur.u64(&name)?;

    // Shapes are handed to libtorch as i64.
    if let Some(dim) = dims.iter().find(|&&d| d > i64::MAX as u64) {
        return Err(format!("tensor '{name}' has dimension {dim}, larger than i64::MAX"));
    }
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("tensor '{name}' dims {dims:?} overflow the element count"))?;
    let block = ggml_type.block_size() as u64;
    if dims[0] % block != 0 {
        return Err(format!(
            "tensor '{name}' row length {} is not a multiple of the {ggml_type} block size {block}",
            dims[0]
        ));
    }
    let n_bytes = (n_elements / block)
        .checked_mul(ggml_type.type_size() as u64)
        .ok_or_else(|| format!("tensor '{name}' byte size overflows"))?;
    Ok(TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        n_bytes,
    })
}
