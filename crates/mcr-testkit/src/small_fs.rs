//! A small filesystem a test can fill up: a `tmpfs` of a few MiB mounted on a new directory
//! under the system temp dir (the tests run as root, as in CI; mounting needs root or
//! `CAP_SYS_ADMIN`). A test that cannot mount one panics with the reason: it never skips.
//! The mount is undone when the value is dropped (also on panic); a test process killed with
//! `SIGKILL` leaves it mounted until the machine restarts (it holds only test data).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted `tmpfs`; [`SmallFs::fill`] takes every free byte, [`SmallFs::free`] gives them back.
#[derive(Debug)]
pub struct SmallFs {
    dir: PathBuf,
}

const FILLER: &str = "filler.bin";

impl SmallFs {
    /// Mount a `tmpfs` of `mib` MiB on a new directory.
    ///
    /// # Panics
    ///
    /// When the filesystem cannot be mounted, saying why and what the test needs.
    pub fn mount(mib: u32) -> Self {
        let dir = std::env::temp_dir().join(crate::unique("mcr-testkit-smallfs"));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("mcr-testkit: cannot create {}: {e}", dir.display()));
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0755"),
                "tmpfs",
            ])
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("mcr-testkit: cannot run mount: {e}"));
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            panic!(
                "mcr-testkit: this test fills a small filesystem and could not mount one \
                 (`mount -t tmpfs` on {}: {}{}). Run the tests as root (as ./scripts/test and CI \
                 do) in a container allowed to mount (CAP_SYS_ADMIN).",
                dir.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Self { dir }
    }

    /// The mounted directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Write a filler file until the filesystem refuses (`ENOSPC`); returns its size in bytes.
    ///
    /// # Panics
    ///
    /// When the filler cannot be created or the filesystem fails with anything but "full".
    pub fn fill(&self) -> u64 {
        let path = self.dir.join(FILLER);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("mcr-testkit: cannot create {}: {e}", path.display()));
        let mut written = 0u64;
        for chunk in [64 * 1024usize, 4096, 512, 1] {
            let block = vec![0x5a_u8; chunk];
            loop {
                match file.write(&block) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) if e.raw_os_error() == Some(28) => break,
                    Err(e) => panic!("mcr-testkit: filling {}: {e}", path.display()),
                }
            }
        }
        let _ = file.sync_all();
        written
    }

    /// Remove the filler: the space it took is free again.
    ///
    /// # Panics
    ///
    /// When the filler exists and cannot be removed.
    pub fn free(&self) {
        let path = self.dir.join(FILLER);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("mcr-testkit: cannot remove {}: {e}", path.display()),
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Lazy: a process that still has a file open there (a gateway being stopped) does not
        // keep the mount from going.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}
