//! A real tmpfs mounted for a test (needs root), so that a full disk under deskgate's state is
//! a real `ENOSPC`; resized in place to fill it and to give the space back.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted at a path, unmounted when dropped.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`, such as `8m`) at `path`, creating it.
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("the mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs(path.to_owned())
    }

    /// Resizes the filesystem in place (`mount -o remount,size=`); files stay. The kernel
    /// refuses a size below what is used.
    pub fn resize(&self, bytes: u64) -> Result<(), String> {
        let output = Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(&self.0)
            .output()
            .map_err(|e| format!("mount runs: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "resizing the tmpfs to {bytes} bytes: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    pub fn free_bytes(&self) -> u64 {
        let stat = nix::sys::statvfs::statvfs(&self.0).expect("statvfs of the tmpfs");
        stat.blocks_available() as u64 * stat.fragment_size() as u64
    }

    pub fn used_bytes(&self) -> u64 {
        let stat = nix::sys::statvfs::statvfs(&self.0).expect("statvfs of the tmpfs");
        (stat.blocks() as u64 - stat.blocks_free() as u64) * stat.fragment_size() as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
