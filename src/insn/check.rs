//! Static checks that need no kernel.

use super::{AsmError, Program};

/// Checks a finished program. (Placeholder: the full checks land with the insn checks work.)
pub(crate) fn check(_program: &Program) -> Result<(), AsmError> {
    Ok(())
}
