//! The allocator's upkeep, so that memory a burst of traffic used goes back to the
//! system while keypin idles (docs/benchmarks.md, Memory).
//!
//! The binary's allocator is jemalloc (see `main.rs`). Its background thread
//! returns freed pages after its decay time, also when nothing allocates. Each
//! thread also caches objects it freed, for its next allocations; while keypin
//! idles none come, so every [`THREAD_CACHE_RELEASE`] each worker hands its
//! cache back to the shared bins, and the pages those objects sat in can go
//! too. Where jemalloc is not built (MSVC) these do nothing.

use std::time::Duration;

/// How often each worker hands its cache of freed objects back.
pub const THREAD_CACHE_RELEASE: Duration = Duration::from_secs(10);

/// Start jemalloc's background purging thread, unless the operator's
/// `_RJEM_MALLOC_CONF` names `background_thread` and so decides itself.
pub fn start_background_purging() {
    #[cfg(not(target_env = "msvc"))]
    if !std::env::var("_RJEM_MALLOC_CONF").is_ok_and(|conf| conf.contains("background_thread"))
        && let Err(e) = tikv_jemalloc_ctl::background_thread::write(true)
    {
        tracing::warn!(error = %e, "the allocator's background purging is off");
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

    use super::release_thread_cache;

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
}
