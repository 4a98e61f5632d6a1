//! Kernel BTF reader (interim stub until the reader lands).

use std::fmt;

/// Where a kernel function's BTF lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncLocation {
    pub type_id: u32,
    pub module: Option<String>,
}

/// BTF reading failure.
#[derive(Clone, Debug)]
pub struct BtfError(String);

impl fmt::Display for BtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BtfError {}

/// Finds a kernel function's BTF id.
pub fn find_kernel_func(name: &str) -> Result<FuncLocation, BtfError> {
    Err(BtfError(format!("BTF reader not available yet for {name}")))
}
