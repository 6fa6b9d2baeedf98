//! The allocator's upkeep, so that memory a burst of traffic used goes back to the
//! system while keypin idles (docs/benchmarks.md, Memory).
//!
//! The binary's allocator is jemalloc (see `main.rs`). Its background thread
//! returns freed pages after its decay time, also when nothing allocates. It
//! runs at the lowest priority: a purge (some milliseconds of work after a
//! burst of connections closed) then waits for a moment a worker idles instead
//! of stalling every request of the worker on its core. Each thread also caches
//! objects it freed, for its next allocations; while keypin idles none come, so
//! every [`THREAD_CACHE_RELEASE`] each worker hands its cache back to the shared
//! bins, and the pages those objects sat in can go too. Where jemalloc is not
//! built (MSVC) these do nothing.

use std::time::Duration;

/// How often each worker hands its cache of freed objects back.
pub const THREAD_CACHE_RELEASE: Duration = Duration::from_secs(10);

/// The nice value of the allocator's purging threads: the lowest priority.
pub const PURGING_NICE: i32 = 19;

/// Start jemalloc's background purging thread, unless the operator's
/// `_RJEM_MALLOC_CONF` names `background_thread` and so decides itself.
///
/// jemalloc creates its first purging thread from the thread that turns purging
/// on, and that one creates the others; a new thread starts at its creator's
/// nice value. So purging is turned on from a short-lived thread that has
/// lowered its own priority to [`PURGING_NICE`] (Linux; elsewhere, from this
/// thread at its own priority).
pub fn start_background_purging() {
    #[cfg(not(target_env = "msvc"))]
    if !std::env::var("_RJEM_MALLOC_CONF").is_ok_and(|conf| conf.contains("background_thread")) {
        let started = std::thread::Builder::new()
            .name("keypin-purging".into())
            .spawn(|| {
                lower_own_priority();
                tikv_jemalloc_ctl::background_thread::write(true)
            })
            .map(|thread| thread.join());
        match started {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the allocator's background purging is off"),
            _ => tracing::warn!("the allocator's background purging is off: the thread starting it failed"),
        }
    }
}

/// Lower the calling thread (only it: Linux keeps a nice value per thread) to
/// [`PURGING_NICE`]. Raising a nice value needs no privilege.
#[cfg(not(target_env = "msvc"))]
fn lower_own_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(None, PURGING_NICE) {
        tracing::warn!(error = %e, "the allocator's purging runs at keypin's own priority");
    }
}

/// Hand the calling thread's cache of freed objects back to the allocator's
/// shared bins. A thread whose cache is off (`tcache:false`) is left so.
pub fn release_thread_cache() {
    #[cfg(not(target_env = "msvc"))]
    {
        use tikv_jemalloc_ctl::{Access as _, AsName as _};
        // Turning the cache off empties it; turning it on starts an empty one.
        let cache = b"thread.tcache.enabled\0".name();
        if cache.read() == Ok(true) {
            let released = cache.write(false).and_then(|()| cache.write(true));
            if let Err(e) = released {
                tracing::warn!(error = %e, "could not release the thread's allocator cache");
            }
        }
    }
}

#[cfg(all(test, not(target_env = "msvc")))]
mod tests {
    use tikv_jemalloc_ctl::{Access as _, AsName as _};

    use super::{PURGING_NICE, release_thread_cache, start_background_purging};

    #[test]
    fn a_thread_cache_released_stays_on_and_one_turned_off_stays_off() {
        std::thread::spawn(|| {
            let cache = b"thread.tcache.enabled\0".name();
            let on = || -> bool { cache.read().unwrap() };
            assert!(on(), "jemalloc starts threads with a cache");
            release_thread_cache();
            assert!(on());
            cache.write(false).unwrap();
            release_thread_cache();
            assert!(!on(), "a cache turned off is not turned back on");
        })
        .join()
        .unwrap();
    }

    /// The nice value of each of this process's threads named `name`.
    #[cfg(target_os = "linux")]
    fn nice_values(name: &str) -> Vec<i32> {
        let mut nices = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let path = task.unwrap().path();
            let (Ok(comm), Ok(stat)) =
                (std::fs::read_to_string(path.join("comm")), std::fs::read_to_string(path.join("stat")))
            else {
                continue; // the thread ended meanwhile
            };
            if comm.trim_end() == name {
                // Fields after the command's closing parenthesis start at the 3rd; nice is the 19th.
                let after = &stat[stat.rfind(')').unwrap() + 1..];
                nices.push(after.split_whitespace().nth(19 - 3).unwrap().parse().unwrap());
            }
        }
        nices
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_purging_threads_run_at_the_lowest_priority_and_the_caller_keeps_its_own() {
        let before = rustix::process::getpriority_process(None).unwrap();
        start_background_purging();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut nices = nice_values("jemalloc_bg_thd");
        while nices.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            nices = nice_values("jemalloc_bg_thd");
        }
        tikv_jemalloc_ctl::background_thread::write(false).unwrap();
        assert!(!nices.is_empty(), "no purging thread started");
        assert!(nices.iter().all(|&nice| nice == PURGING_NICE), "{nices:?}");
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), before, "the caller's priority moved");
    }
}
