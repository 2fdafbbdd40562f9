//! The allocator of the two long-running programs (api-server and mqtt-subscriber): jemalloc,
//! not glibc's malloc, through [`use_jemalloc!`](crate::use_jemalloc).
//!
//! Both read InfluxDB answers of several MB at times (a cold monthly answer, a rollup catch-up)
//! on more than one worker thread, then idle for hours. glibc keeps what such a burst freed in
//! its per-thread arenas: the api-server idled at 16 MiB instead of 10 after one cold monthly
//! answer, and the subscriber at 16–20 MiB instead of 11 after catching up a month of 1 000
//! panels, `malloc_trim` notwithstanding. With jemalloc configured as below both idle near
//! where they started (BENCHMARKS.md has the measurements).

/// jemalloc's options, read before `main` (an operator can override them with
/// `_RJEM_MALLOC_CONF`):
/// - one arena: few threads, little contention;
/// - per-thread caches only for sizes up to 1 KiB (without them, cached answers were served
///   ~40 % slower; with the default 32 KiB they held ~1 MB more);
/// - freed pages handed back to the system by jemalloc's background thread half a second after
///   they fall free, instead of kept for reuse.
pub const MALLOC_CONF: &[u8] =
    b"narenas:1,tcache_max:1024,background_thread:true,dirty_decay_ms:500,muzzy_decay_ms:0\0";

#[doc(hidden)]
pub use tikv_jemallocator::Jemalloc;

/// Makes jemalloc, configured by [`MALLOC_CONF`], the allocator of the program whose binary
/// crate calls it (once, at the top level of `main.rs`). A macro, not a `#[global_allocator]`
/// here: the other programs linking this crate keep the system allocator.
#[macro_export]
macro_rules! use_jemalloc {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::allocator::Jemalloc = $crate::allocator::Jemalloc;

        /// jemalloc reads its options from this symbol: see `energy_service::allocator`.
        #[allow(non_upper_case_globals)]
        #[export_name = "_rjem_malloc_conf"]
        pub static malloc_conf: &u8 = &$crate::allocator::MALLOC_CONF[0];
    };
}
