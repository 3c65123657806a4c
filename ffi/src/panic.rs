//! The boundary every exported function runs inside: no panic unwinds into C.

use std::panic::{self, AssertUnwindSafe};

use crate::error::Failure;
use crate::last_error;
use crate::status::wspush_status;

/// Runs the body of an exported function: a failure becomes its status and the thread's
/// last error, a panic becomes `WSPUSH_STATUS_PANIC` instead of unwinding into C.
pub(crate) fn boundary(function: &str, body: impl FnOnce() -> Result<(), Failure>) -> wspush_status {
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => wspush_status::Ok,
        Ok(Err(failure)) => {
            last_error::set(failure.message);
            failure.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("a panic without a message");
            last_error::set(format!("{function} panicked (a bug in libwspush): {what}"));
            wspush_status::Panic
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_sets_the_last_error_and_a_success_keeps_it() {
        let status = boundary("f", || Err(Failure::invalid("the opcode 7 is neither text nor binary")));
        assert_eq!(status, wspush_status::InvalidArgument);
        assert_eq!(last_error::read(), "the opcode 7 is neither text nor binary");
        assert_eq!(boundary("g", || Ok(())), wspush_status::Ok);
        assert_eq!(last_error::read(), "the opcode 7 is neither text nor binary");
    }

    #[test]
    fn a_panic_becomes_a_status() {
        let status = boundary("wspush_test", || panic!("boom"));
        assert_eq!(status, wspush_status::Panic);
        assert_eq!(last_error::read(), "wspush_test panicked (a bug in libwspush): boom");
    }
}
