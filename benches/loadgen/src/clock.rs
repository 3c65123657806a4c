//! One clock for every process of a run: `CLOCK_MONOTONIC`, which the publisher (one
//! process) and the clients (others) on the same machine share, so a timestamp written into
//! a payload by one can be subtracted from the time another reads it.

/// Nanoseconds on the machine-wide monotonic clock.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
