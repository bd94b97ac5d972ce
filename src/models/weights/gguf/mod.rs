//! GGUF files (llama.cpp's model format), versions 2 and 3.
//!
//! [`GgufFile`] memory-maps a file, parses its metadata and tensor infos,
//! dequantises tensors to f32 and hands them out as a [`TensorSource`] under
//! Hugging Face names and layout.

mod config;
pub mod dequant;
pub mod names;
mod parse;
mod types;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::models::weights::TensorSource;

pub use parse::{TensorInfo, DEFAULT_ALIGNMENT};
pub use types::{GgmlType, MetadataValue};

use names::RopePermutation;

/// An open, memory-mapped GGUF file.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    metadata: BTreeMap<String, MetadataValue>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_offset: u64,
    /// Index into `tensors` by llama.cpp name.
    by_name: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("tensors", &self.tensors.len())
            .field("metadata", &self.metadata.len())
            .finish()
    }
}

impl GgufFile {
    /// Opens and parses `path`.
    ///
    /// Returns [`Error::Io`] if the file cannot be opened and
    /// [`Error::Format`] if it is not a valid GGUF v2/v3 file, is truncated,
    /// or contains a tensor type this crate cannot dequantise.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: the map is read-only. Another process truncating or
        // rewriting the file while it is mapped could change the bytes under
        // us (or fault on truncation), as with every memory-mapped reader;
        // model files are not expected to change while loaded.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let header = parse::parse_header(&mmap).map_err(|reason| Error::Format {
            path: path.clone(),
            reason,
        })?;
        let by_name = header
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        tracing::debug!(
            path = %path.display(),
            version = header.version,
            tensors = header.tensors.len(),
            "opened GGUF file"
        );
        Ok(Self {
            path,
            mmap,
            version: header.version,
            metadata: header.metadata,
            tensors: header.tensors,
            alignment: header.alignment,
            data_offset: header.data_offset,
            by_name,
        })
    }

    /// Returns the file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the tensor data in bytes.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute byte offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Returns all metadata key/value pairs.
    pub fn metadata(&self) -> &BTreeMap<String, MetadataValue> {
        &self.metadata
    }

    /// Returns the metadata value under `key`, if present.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata.get(key)
    }

    /// Tensor infos in file order, under llama.cpp names.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Returns the info of llama.cpp tensor `gguf_name`, if present.
    pub fn tensor_info(&self, gguf_name: &str) -> Option<&TensorInfo> {
        self.by_name.get(gguf_name).map(|&i| &self.tensors[i])
    }

    /// Returns the stored bytes of llama.cpp tensor `gguf_name`.
    pub fn raw_data(&self, gguf_name: &str) -> Result<&[u8]> {
        let info = self.tensor_info(gguf_name).ok_or_else(|| Error::MissingTensor {
            name: gguf_name.to_string(),
            file: self.path.clone(),
        })?;
        // `open` checked that every tensor lies inside the file.
        let start = (self.data_offset + info.offset) as usize;
        Ok(&self.mmap[start..start + info.n_bytes as usize])
    }

    /// Dequantises llama.cpp tensor `gguf_name` to f32 in stored order
    /// (GGUF dims, innermost first), without any layout change.
    pub fn dequantize(&self, gguf_name: &str) -> Result<Vec<f32>> {
        let info = self.tensor_info(gguf_name).ok_or_else(|| Error::MissingTensor {
            name: gguf_name.to_string(),
            file: self.path.clone(),
        })?;
        let raw = self.raw_data(gguf_name)?;
        dequant::dequantize(info.ggml_type, raw).ok_or_else(|| Error::Format {
            path: self.path.clone(),
            reason: format!(
                "tensor '{gguf_name}' holds {} bytes, not a whole number of {} blocks",
                raw.len(),
                info.ggml_type
            ),
        })
    }

    /// Returns the `general.architecture` string, or an error if it is missing.
    pub fn architecture(&self) -> Result<&str> {
        self.get("general.architecture")
            .and_then(MetadataValue::as_str)
            .ok_or_else(|| self.format_error("metadata key 'general.architecture' is missing or not a string"))
    }

    /// Builds a Hugging Face `config.json` style object from the metadata.
    ///
    /// Returns [`Error::Format`] for an architecture other than `llama` and
    /// [`Error::Config`] for a missing or invalid hyperparameter.
    pub fn hf_config(&self) -> Result<serde_json::Value> {
        config::hf_config(self)
    }

    /// Number of heads whose RoPE rows llama.cpp permuted in `permutation`'s
    /// tensors.
    fn rope_heads(&self, permutation: RopePermutation) -> Result<usize> {
        let arch = self.architecture()?;
        let key = match permutation {
            RopePermutation::Query => format!("{arch}.attention.head_count"),
            RopePermutation::Key => format!("{arch}.attention.head_count_kv"),
        };
        let value = match (self.get(&key), permutation) {
            (Some(v), _) => v.as_u64(),
            // Without head_count_kv, llama.cpp uses head_count (no GQA).
            (None, RopePermutation::Key) => {
                return self.rope_heads(RopePermutation::Query);
            }
            (None, RopePermutation::Query) => None,
        };
        match value {
            Some(n) if n > 0 => Ok(n as usize),
            _ => Err(self.format_error(&format!(
                "metadata key '{key}' is missing or not a positive integer"
            ))),
        }
    }

    fn format_error(&self, reason: &str) -> Error {
        Error::Format {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// Loads llama.cpp tensor `gguf_name` as f32 values in Hugging Face
    /// layout (row-major over the reversed GGUF dims, RoPE rows un-permuted).
    fn load_hf_layout(&self, gguf_name: &str) -> Result<(Vec<f32>, Vec<i64>)> {
        let info = self.tensor_info(gguf_name).ok_or_else(|| Error::MissingTensor {
            name: gguf_name.to_string(),
            file: self.path.clone(),
        })?;
        let shape = hf_shape(info);
        let values = self.dequantize(gguf_name)?;
        let Some(permutation) = names::rope_permutation(gguf_name) else {
            return Ok((values, shape));
        };
        let n_heads = self.rope_heads(permutation)?;
        let (rows, cols) = match info.dims[..] {
            [cols, rows] => (rows as usize, cols as usize),
            _ => {
                return Err(self.format_error(&format!(
                    "tensor '{gguf_name}' has dims {:?}; expected a matrix",
                    info.dims
                )))
            }
        };
        if n_heads.checked_mul(2).is_none_or(|pair_rows| rows % pair_rows != 0) {
            return Err(self.format_error(&format!(
                "tensor '{gguf_name}' has {rows} rows, not a multiple of 2 x {n_heads} heads, so its RoPE permutation cannot be undone"
            )));
        }
        Ok((names::unpermute_rope_rows(&values, rows, cols, n_heads), shape))
    }
}

/// Returns the Hugging Face shape of a tensor, its GGUF dims reversed.
fn hf_shape(info: &TensorInfo) -> Vec<i64> {
    // `open` checked that the data fits in the file, so each dim fits in i64.
    info.dims.iter().rev().map(|&d| d as i64).collect()
}

impl TensorSource for GgufFile {
    fn names(&self) -> Vec<String> {
        self.tensors
            .iter()
            .filter_map(|t| names::gguf_to_hf(&t.name))
            .collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<i64>> {
        let gguf_name = names::hf_to_gguf(name)?;
        self.tensor_info(&gguf_name).map(hf_shape)
    }

    fn load(&self, name: &str, kind: Kind, device: Device) -> Result<Tensor> {
        let missing = || Error::MissingTensor {
            name: name.to_string(),
            file: self.path.clone(),
        };
        let gguf_name = names::hf_to_gguf(name).ok_or_else(missing)?;
        if self.tensor_info(&gguf_name).is_none() {
            return Err(missing());
        }
        let (values, shape) = self.load_hf_layout(&gguf_name)?;
        let tensor = Tensor::f_from_slice(&values)?.f_reshape(&shape)?;
        Ok(tensor.f_to_kind(kind)?.f_to_device(device)?)
    }

    fn file_of(&self, _name: &str) -> PathBuf {
        self.path.clone()
    }
}
