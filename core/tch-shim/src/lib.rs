//! The plain-data part of tch's API, without libtorch: what dctk's planning code names
//! (`Device`, `Kind`, CUDA queries) so that the same sources compile into `dctk-lite`, the
//! libtorch-free build behind `dctk fit`, `plan`, `data`, `report` and `status` (see
//! `core/lite/Cargo.toml` for why). Nothing here computes: a `Tensor` does not exist, so
//! any code that needs one fails to compile in the lite build and is gated to the full one.
//!
//! The CUDA queries answer "no CUDA". That is exact because the `dctk` front runs the lite
//! build only where no NVIDIA driver is present (`/dev/nvidiactl` absent), where libtorch
//! would find no CUDA device either; anywhere else it hands over to `dctk-torch`.

/// Where tensors live (tch's `Device`, same variants).
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    Cuda(usize),
    Mps,
    Vulkan,
}

impl Device {
    /// CUDA device 0 if CUDA is available, else the CPU: always the CPU here.
    pub fn cuda_if_available() -> Device {
        Device::Cpu
    }

    pub fn is_cuda(self) -> bool {
        matches!(self, Device::Cuda(_))
    }
}

/// Element types (the subset of tch's `Kind` dctk's planning names).
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    Float,
    BFloat16,
    Half,
    Double,
    Int64,
}

/// CUDA queries (tch's `Cuda`): no CUDA without an NVIDIA driver.
pub struct Cuda;

impl Cuda {
    pub fn is_available() -> bool {
        false
    }

    pub fn device_count() -> i64 {
        0
    }
}
