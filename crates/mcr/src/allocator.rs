//! The memory allocator: mimalloc, and how soon it gives freed memory back to the system.
//!
//! A record view parses, merges and writes a few hundred kilobytes as many small values, and
//! frees them when the answer has gone. mimalloc's default is to return ("purge") freed memory
//! to the operating system 10 ms after it was last used, so with views ~80 ms apart nearly
//! every view took its memory afresh from the kernel: a page fault for each page touched, which
//! on a virtual machine costs several microseconds. In the benchmark (`docs/PERFORMANCE.md`)
//! that was a third of the time spent encoding the answer. One second keeps the memory of
//! steady traffic and still returns it soon after a burst: peak memory rose by about 20-40 MiB
//! at 64 clinicians.

/// Purge delay, ms: how long freed memory stays with the process before going back to the OS.
pub const PURGE_DELAY_MS: std::ffi::c_long = 1_000;

/// `mi_option_purge_delay` in `mimalloc.h`'s `mi_option_e` (v2 and v3 alike); the crate that
/// binds mimalloc does not name it. A test checks it against the environment variable
/// mimalloc reads for the same option.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Apply [`PURGE_DELAY_MS`], unless the operator chose a value with `MIMALLOC_PURGE_DELAY`
/// (mimalloc's own variable, which it reads at start-up).
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        set_purge_delay(PURGE_DELAY_MS);
    }
}

/// mimalloc's current purge delay, ms.
#[cfg(test)]
fn purge_delay() -> std::ffi::c_long {
    // SAFETY: reads one integer option; no preconditions, callable from any thread.
    #[expect(
        unsafe_code,
        reason = "mimalloc's option API is C; this reads one integer"
    )]
    unsafe {
        libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY)
    }
}

fn set_purge_delay(ms: std::ffi::c_long) {
    // SAFETY: stores one integer option, which mimalloc reads atomically; no preconditions,
    // callable from any thread at any time.
    #[expect(
        unsafe_code,
        reason = "mimalloc's option API is C; this sets one integer"
    )]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tune_sets_the_purge_delay() {
        super::set_purge_delay(10);
        assert_eq!(super::purge_delay(), 10);
        super::set_purge_delay(super::PURGE_DELAY_MS);
        assert_eq!(super::purge_delay(), super::PURGE_DELAY_MS);
    }

    /// The option number is mimalloc's purge delay: started with `MIMALLOC_PURGE_DELAY`, this
    /// test binary reads that value back through it.
    #[test]
    fn the_option_is_the_one_mimalloc_reads_from_its_environment() {
        const NAME: &str =
            "allocator::tests::the_option_is_the_one_mimalloc_reads_from_its_environment";
        if let Ok(expected) = std::env::var("MCR_TEST_EXPECT_PURGE_DELAY") {
            assert_eq!(super::purge_delay().to_string(), expected);
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().expect("this test binary"))
            .args(["--exact", NAME, "--test-threads=1"])
            .env("MIMALLOC_PURGE_DELAY", "1234")
            .env("MCR_TEST_EXPECT_PURGE_DELAY", "1234")
            .output()
            .expect("the test binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains("1 passed"), "the check ran: {stdout}");
    }
}
