//! Data types and devices as users name them on command lines and in files.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use crate::error::{Error, Result};

/// Floating-point type of model weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    Bf16,
    F16,
}

impl DType {
    pub fn kind(self) -> Kind {
        match self {
            DType::F32 => Kind::Float,
            DType::Bf16 => Kind::BFloat16,
            DType::F16 => Kind::Half,
        }
    }
}

impl FromStr for DType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(DType::F32),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            "f16" | "float16" => Ok(DType::F16),
            _ => Err(Error::invalid("dtype", s, "use f32, bf16 or f16")),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::Bf16 => "bf16",
            DType::F16 => "f16",
        })
    }
}

/// Parses `cpu` or `cuda:N` (`cuda` alone means `cuda:0`) and checks that a
/// CUDA device exists.
pub fn parse_device(s: &str) -> Result<Device> {
    let lower = s.to_ascii_lowercase();
    if lower == "cpu" {
        return Ok(Device::Cpu);
    }
    let index = match lower.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| Error::invalid("device", s, "use cpu or cuda:N, for example cuda:0"))?,
        None => return Err(Error::invalid("device", s, "use cpu or cuda:N, for example cuda:0")),
    };
    let available = tch::Cuda::device_count().max(0) as usize;
    if index >= available {
        return Err(Error::invalid(
            "device",
            s,
            format!("this machine has {available} CUDA device(s); use cpu or a smaller index"),
        ));
    }
    Ok(Device::Cuda(index))
}


/// Largest allocation, in bytes, that glibc serves from its heap once
/// [`retain_freed_memory`] has run. Larger blocks are still mapped and
/// unmapped one by one.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HEAP_ALLOCATION_LIMIT: i32 = 1 << 30;

/// Asks the C allocator to keep freed memory for reuse instead of returning
/// it to the kernel. Returns whether the allocator accepted the settings.
///
/// libtorch allocates activations and logits with `malloc`. By default
/// glibc maps each block above a dynamic threshold (at most 32 MiB) on its
/// own and unmaps it on free. Every forward pass then faults in and zeroes
/// its large buffers again, which cost a tenth to a fifth of a pruning step
/// on a 2-core CPU (`docs/benchmarks.md`). After this call such blocks come
/// from the heap and the heap is not trimmed, so a step reuses the pages of
/// the previous step. The process keeps its peak heap size until it exits.
///
/// All threads also share one heap (glibc's `M_ARENA_MAX` = 1). Otherwise
/// each thread that scores masks keeps its own untrimmed heap: on the 2-core
/// test machine two such threads raised the f32 step peak from 781 to 851
/// MiB, with no change in step time.
///
/// This changes a process-wide setting: call it once at start-up, before
/// loading a model, from a binary rather than from library code. It does
/// nothing and returns `false` on targets other than Linux with glibc.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only updates allocator parameters, and all values are in range.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_ALLOCATION_LIMIT) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
                && libc::mallopt(libc::M_ARENA_MAX, 1) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Hands the free pages of the C allocator's heap back to the kernel, for
/// example after loading a model, whose conversion buffers are not needed
/// again. Call it after large one-off allocations, because
/// [`retain_freed_memory`] turns off glibc's own trimming. Returns whether
/// any memory was released, and `false` on targets other than Linux with glibc.
pub fn trim_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only returns free heap pages to the kernel.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_names_parse() {
        assert_eq!("bf16".parse::<DType>().unwrap(), DType::Bf16);
        assert_eq!("F32".parse::<DType>().unwrap(), DType::F32);
        assert!("f64".parse::<DType>().is_err());
    }

    #[test]
    fn device_names_parse() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert!(parse_device("gpu").is_err());
        assert!(parse_device("cuda:x").is_err());
        assert!(parse_device("cuda:999").is_err());
    }
}
