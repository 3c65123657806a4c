//! The unit tests' allocator: `System`, counting each thread's live heap bytes, so a test can
//! check what a structure really keeps allocated (the history store's accounting, an idle TLS
//! connection) without other test threads disturbing it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

/// What malloc adds to a block: its header, and rounding up to 16 bytes.
fn charged(size: usize) -> isize {
    (size.div_ceil(16) * 16 + 16) as isize
}

// SAFETY: every call is passed to `System` unchanged; only a thread-local count is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|live| live.set(live.get() + charged(layout.size())));
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|live| live.set(live.get() - charged(layout.size())));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// This thread's live heap bytes, malloc's overhead included (allocated here and freed
/// elsewhere, or the reverse, skews it: measure within one thread).
pub fn live() -> isize {
    LIVE.with(Cell::get)
}
