//! A [`TensorSource`] over memory-mapped safetensors files, single or sharded.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use super::TensorSource;
use crate::error::{Error, Result};

/// File name of an unsharded checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// File name of the index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

struct Entry {
    file: usize,
    kind: Kind,
    shape: Vec<i64>,
    bytes: Range<usize>,
}

/// Tensors of one or more memory-mapped safetensors files.
///
/// Each [`TensorSource::load`] copies one tensor out of the mapping, so no
/// second full copy of the model is ever held.
pub struct SafetensorsSource {
    paths: Vec<PathBuf>,
    maps: Vec<Mmap>,
    entries: HashMap<String, Entry>,
}

#[derive(Deserialize)]
struct Index {
    weight_map: HashMap<String, String>,
}

impl SafetensorsSource {
    /// Opens `dir/model.safetensors`, or the shards that
    /// `dir/model.safetensors.index.json` lists.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let index_path = dir.join(INDEX_FILE);
        if index_path.is_file() {
            return Self::from_index(&index_path);
        }
        let single = dir.join(SINGLE_FILE);
        if !single.is_file() {
            return Err(Error::Format {
                path: dir.to_path_buf(),
                reason: format!("neither {SINGLE_FILE} nor {INDEX_FILE} found in this folder"),
            });
        }
        Self::from_files(&[single])
    }

    /// Opens the shards listed by a `model.safetensors.index.json`, checking
    /// that each tensor sits in the shard the index names.
    pub fn from_index(index_path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index_path).map_err(|e| Error::io(index_path, e))?;
        let index: Index = serde_json::from_str(&text).map_err(|source| Error::Json {
            context: index_path.display().to_string(),
            source,
        })?;
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let mut shards: Vec<String> = index.weight_map.values().cloned().collect();
        shards.sort();
        shards.dedup();
        let paths: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
        let source = Self::from_files(&paths)?;
        for (name, shard) in &index.weight_map {
            let Some(entry) = source.entries.get(name) else {
                return Err(Error::MissingTensor {
                    name: name.clone(),
                    file: dir.join(shard),
                });
            };
            if source.paths[entry.file] != dir.join(shard) {
                return Err(Error::Format {
                    path: index_path.to_path_buf(),
                    reason: format!(
                        "tensor '{name}' is listed in {shard} but found in {}",
                        source.paths[entry.file].display()
                    ),
                });
            }
        }
        Ok(source)
    }

    /// Opens the given safetensors files; a tensor name may appear only once.
    pub fn from_files(paths: &[PathBuf]) -> Result<Self> {
        let mut maps = Vec::with_capacity(paths.len());
        let mut entries = HashMap::new();
        for (file, path) in paths.iter().enumerate() {
            let handle = File::open(path).map_err(|e| Error::io(path, e))?;
            // SAFETY: the mapping is read-only; like every reader of
            // memory-mapped checkpoints we assume no one truncates or rewrites
            // the file while it is open.
            let map = unsafe { Mmap::map(&handle) }.map_err(|e| Error::io(path, e))?;
            let parsed = SafeTensors::deserialize(&map).map_err(|e| Error::Format {
                path: path.clone(),
                reason: format!("invalid or truncated safetensors file: {e}"),
            })?;
            let base = map.as_ptr() as usize;
            for (name, view) in parsed.tensors() {
                let kind = kind_of(view.dtype()).ok_or_else(|| Error::Format {
                    path: path.clone(),
                    reason: format!("tensor '{name}' has unsupported dtype {:?}", view.dtype()),
                })?;
                let start = view.data().as_ptr() as usize - base;
                let entry = Entry {
                    file,
                    kind,
                    shape: view.shape().iter().map(|&d| d as i64).collect(),
                    bytes: start..start + view.data().len(),
                };
                if let Some(previous) = entries.insert(name.clone(), entry) {
                    return Err(Error::Format {
                        path: path.clone(),
                        reason: format!(
                            "tensor '{name}' also appears in {}",
                            paths[previous.file].display()
                        ),
                    });
                }
            }
            maps.push(map);
        }
        Ok(Self {
            paths: paths.to_vec(),
            maps,
            entries,
        })
    }
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    match dtype {
        Dtype::F32 => Some(Kind::Float),
        Dtype::F16 => Some(Kind::Half),
        Dtype::BF16 => Some(Kind::BFloat16),
        Dtype::F64 => Some(Kind::Double),
        Dtype::I64 => Some(Kind::Int64),
        Dtype::I32 => Some(Kind::Int),
        Dtype::I16 => Some(Kind::Int16),
        Dtype::I8 => Some(Kind::Int8),
        Dtype::U8 => Some(Kind::Uint8),
        Dtype::BOOL => Some(Kind::Bool),
        _ => None,
    }
}

impl TensorSource for SafetensorsSource {
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.entries.keys().cloned().collect();
        names.sort();
        names
    }

    fn shape(&self, name: &str) -> Option<Vec<i64>> {
        self.entries.get(name).map(|e| e.shape.clone())
    }

    fn load(&self, name: &str, kind: Kind, device: Device) -> Result<Tensor> {
        let Some(entry) = self.entries.get(name) else {
            return Err(Error::MissingTensor {
                name: name.to_string(),
                file: self.paths.first().cloned().unwrap_or_default(),
            });
        };
        let bytes = &self.maps[entry.file][entry.bytes.clone()];
        let tensor = Tensor::f_from_data_size(bytes, &entry.shape, entry.kind)?;
        Ok(tensor.f_to_kind(kind)?.f_to_device(device)?)
    }

    fn file_of(&self, name: &str) -> PathBuf {
        match self.entries.get(name) {
            Some(e) => self.paths[e.file].clone(),
            None => self.paths.first().cloned().unwrap_or_default(),
        }
    }
}
