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
