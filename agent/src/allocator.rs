//! The `argus-agent` binary's global allocator: mimalloc, or glibc malloc
//! when `ARGUS_AGENT_ALLOCATOR=system` is set in the environment.
//!
//! # Why not just glibc
//!
//! Every log line becomes a few short-lived allocations (its record, body,
//! attributes, the encoded batch), freed a batch later on another thread.
//! Under glibc that cross-thread churn (`malloc_consolidate`,
//! `unlink_chunk`) was about a quarter of the agent's CPU per line in
//! `benches/agent/throughput.rs`; mimalloc's thread-local free lists make it
//! a small fraction.
//!
//! # Why a switch
//!
//! Operators debugging memory reach for tools (heaptrack, valgrind,
//! `MALLOC_*`/`GLIBC_TUNABLES`) that understand glibc; and the throughput
//! benchmark compares both allocators on the same binary in one run.
//!
//! # Footprint
//!
//! mimalloc commits its arenas eagerly where the kernel overcommits, which
//! tripled the idle agent's RSS (11.8 → 30.7 MiB, over the 15 MiB budget) for
//! no throughput gain; the agent turns that off (`arena_eager_commit = 0`)
//! before mimalloc's first allocation: idle RSS 12.3 MiB and a lower peak.
//!
//! # Safety of the switch
//!
//! The choice is made once, at the process's first allocation, and never
//! changes: every block is freed by the allocator that allocated it. The
//! environment is read with `getenv(3)`, which does not allocate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

use mimalloc::MiMalloc;

/// The environment variable read at the first allocation.
pub const ENV: &str = "ARGUS_AGENT_ALLOCATOR";

const UNDECIDED: u8 = 0;
const MIMALLOC: u8 = 1;
const SYSTEM: u8 = 2;

static CHOICE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// `mi_option_arena_eager_commit` in `mimalloc.h`'s `mi_option_e` (same
/// position in mimalloc 2 and 3).
const MI_OPTION_ARENA_EAGER_COMMIT: std::ffi::c_int = 4;

// In the static library `libmimalloc-sys` links (the `mimalloc` crate does
// not re-export its option API without the `extended` feature).
unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// The allocator to install with `#[global_allocator]` in the binary.
pub struct AgentAllocator;

impl AgentAllocator {
    #[inline]
    fn system() -> bool {
        match CHOICE.load(Ordering::Relaxed) {
            MIMALLOC => false,
            SYSTEM => true,
            _ => Self::decide(),
        }
    }

    #[cold]
    fn decide() -> bool {
        // SAFETY: a NUL-terminated name; getenv only reads the environment.
        let v = unsafe { libc::getenv(c"ARGUS_AGENT_ALLOCATOR".as_ptr()) };
        // SAFETY: getenv returns null or a NUL-terminated string.
        let system = !v.is_null() && unsafe { std::ffi::CStr::from_ptr(v) }.to_bytes() == b"system";
        if !system {
            // SAFETY: sets a plain option before mimalloc's first allocation;
            // mimalloc never calls back into this allocator.
            unsafe { mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
        }
        let choice = if system { SYSTEM } else { MIMALLOC };
        // Threads racing on the first allocations all read the same
        // environment; the first store wins and the rest agree with it.
        match CHOICE.compare_exchange(UNDECIDED, choice, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => system,
            Err(decided) => decided == SYSTEM,
        }
    }

    /// Which allocator this process uses, for the startup log line: `None`
    /// when `AgentAllocator` is not the global allocator (the `argus`
    /// binary), since it then never allocated.
    pub fn in_use() -> Option<&'static str> {
        match CHOICE.load(Ordering::Relaxed) {
            MIMALLOC => Some("mimalloc"),
            SYSTEM => Some("system"),
            _ => None,
        }
    }
}

// SAFETY: forwards every call to one of two sound allocators, always the same
// one for the life of the process (see the module doc).
unsafe impl GlobalAlloc for AgentAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe {
            if Self::system() {
                System.alloc(layout)
            } else {
                MiMalloc.alloc(layout)
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if Self::system() {
                System.alloc_zeroed(layout)
            } else {
                MiMalloc.alloc_zeroed(layout)
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from the same allocator (the choice never changes).
        unsafe {
            if Self::system() {
                System.dealloc(ptr, layout)
            } else {
                MiMalloc.dealloc(ptr, layout)
            }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`.
        unsafe {
            if Self::system() {
                System.realloc(ptr, layout, new_size)
            } else {
                MiMalloc.realloc(ptr, layout, new_size)
            }
        }
    }
}
