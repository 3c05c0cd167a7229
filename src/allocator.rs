//! How the daemon's process allocates memory: glibc's malloc with at most two arenas.
//!
//! glibc gives a thread that finds the arenas busy an arena of its own, up to eight per core,
//! and an arena's freed memory is mostly kept for its own thread's later use. deskgate's
//! threads (the runtime's workers, the processor, the journal writer, the engine's flush and
//! compaction) allocate and free at very different paces, so with one arena each the process
//! kept memory that only one thread could reuse: resident memory rose by 12% between the 20th
//! and the 40th minute of a steady soak (126 to 141 MB, 2026-12-06). Two arenas keep it level
//! (see docs/performance.md, "soak"). An operator's own `MALLOC_ARENA_MAX` wins.

/// Limits glibc's malloc to two arenas unless `MALLOC_ARENA_MAX` says otherwise. Call it first
/// thing in `main`, before any thread starts: an arena already made is not given back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // the one call into libc that no safe wrapper offers
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt takes two integers and changes a malloc parameter; glibc documents it
    // as safe to call at any time (MT-Safe), and M_ARENA_MAX with a positive value is a valid
    // parameter. Its result (1 on success) needs no handling: on failure the default stays.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
}

/// Elsewhere the platform's allocator is left as it is.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_arenas() {}
