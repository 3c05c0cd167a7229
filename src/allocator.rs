//! How the daemon's process allocates memory: jemalloc, set as the global allocator by the
//! binaries (`src/main.rs`, and the bench's, whose deskgate server child must allocate as the
//! daemon does).
//!
//! glibc's malloc gives a thread that finds the arenas busy an arena of its own, up to eight
//! per core, and keeps most of an arena's freed memory for that arena. deskgate's threads (the
//! runtime's workers, the processor, the journal writer, the engine's flush and compaction)
//! allocate and free at very different paces, and with glibc's default arenas resident memory
//! rose by 12% between the 20th and the 40th minute of a steady soak (126 to 141 MB,
//! 2026-12-06). Limiting glibc to two arenas kept it level, but the processor then fell two
//! seconds of input behind the ingest bench's load (most likely waiting for the arenas' locks
//! the HTTP workers hold; not profiled), where with more arenas it kept pace. jemalloc gives each thread a cache of its
//! own and returns unused pages to the system on a timer (its background thread), and does
//! both: see docs/performance.md (the `soak` row and "The allocator").
//!
//! Only the binaries set it: a global allocator in this library would also be the test and
//! fuzz binaries', where the platform's allocator (and a sanitizer's) is wanted.

/// The allocator the binaries declare as `#[global_allocator]`.
pub use tikv_jemallocator::Jemalloc as Allocator;
