//! A simulated power cut (needs root and `/dev/fuse`): a "lazy" FUSE filesystem (`lazyfs.py`
//! beside this file, run by Debian's `/usr/bin/python3` with `python3-fusepy`) passes everything
//! through to a backing folder but keeps each file's writes and truncates in its memory until
//! that file is fsynced or fdatasynced. [`LazyFs::cut`] kills it with SIGKILL and unmounts, so
//! the backing folder holds only what was made durable; [`LazyFs::remount`] serves that again.
//!
//! [`Ext4Image`] adds what the per-file model treats as durable at once (creating, renaming and
//! unlinking files): an ext4 filesystem in an image file that lives on the lazy filesystem,
//! through a loop device, checked with `e2fsck -fp` after each cut.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The filesystem's program; written next to the backing folder so that a bench binary carries
/// it too.
const SCRIPT: &str = include_str!("lazyfs.py");

/// The Python that sees Debian's `python3-fusepy` (the machine's default `python3` may not).
const PYTHON: &str = "/usr/bin/python3";

/// A lazy filesystem mounted at `mount` over the folder `backing`.
pub struct LazyFs {
    pub mount: PathBuf,
    pub backing: PathBuf,
    script: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl LazyFs {
    /// Mounts a lazy filesystem at `mount` over `backing` (both created when missing); its
    /// program and log go to `work`.
    pub fn mount(work: &Path, backing: &Path, mount: &Path) -> Result<LazyFs, String> {
        for dir in [work, backing, mount] {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let script = work.join("lazyfs.py");
        std::fs::write(&script, SCRIPT).map_err(|e| format!("writing lazyfs.py: {e}"))?;
        let mut fs = LazyFs {
            mount: mount.to_owned(),
            backing: backing.to_owned(),
            script,
            log: work.join("lazyfs.log"),
            child: None,
        };
        fs.remount()?;
        Ok(fs)
    }

    /// Starts a new filesystem process over the backing folder and waits until it is mounted.
    pub fn remount(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "already mounted");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("the lazyfs log: {e}"))?;
        let child = Command::new(PYTHON)
            .arg(&self.script)
            .arg(&self.backing)
            .arg(&self.mount)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {PYTHON} for the lazy filesystem: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_fuse_mount(&self.mount) {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "the lazy filesystem exited with {status} (it needs root, /dev/fuse and \
                     python3-fusepy); its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ));
            }
            if Instant::now() > deadline {
                return Err("the lazy filesystem did not mount within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// The power cut: SIGKILL to the filesystem process (everything not fsynced is gone with
    /// its memory), then unmount. Whatever uses the filesystem must be stopped first.
    pub fn cut(&mut self) -> Result<(), String> {
        self.kill();
        unmount(&self.mount)
    }

    /// SIGKILL to the filesystem process alone, leaving the dead mount in place: the moment of
    /// the cut for an [`Ext4Image`] on it, which must be detached before [`LazyFs::cut`]
    /// unmounts (unmounting ext4 while this process lived would make everything durable).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The filesystem process's id, while mounted.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        let _ = self.cut();
    }
}

/// An ext4 filesystem in `image` (a file on a [`LazyFs`]), through a loop device, mounted at
/// `mount`.
pub struct Ext4Image {
    pub image: PathBuf,
    pub mount: PathBuf,
    device: Option<String>,
}

impl Ext4Image {
    /// Makes an ext4 filesystem of `mib` MiB in `backing_image` (the image's path in the lazy
    /// filesystem's backing folder, so it is durable before the first cut), then attaches
    /// `image` (the same file seen through the lazy filesystem) and mounts it at `mount`.
    pub fn create(
        backing_image: &Path,
        image: &Path,
        mount: &Path,
        mib: u64,
    ) -> Result<Ext4Image, String> {
        let file = std::fs::File::create(backing_image).map_err(|e| e.to_string())?;
        file.set_len(mib << 20).map_err(|e| e.to_string())?;
        // Every table written now, so that nothing initialises lazily through FUSE later.
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096"])
            .args(["-E", "lazy_itable_init=0,lazy_journal_init=0"])
            .arg(backing_image))?;
        let mut fs = Ext4Image {
            image: image.to_owned(),
            mount: mount.to_owned(),
            device: None,
        };
        fs.attach()?;
        Ok(fs)
    }

    /// Attaches the image to a free loop device and mounts it.
    pub fn attach(&mut self) -> Result<(), String> {
        std::fs::create_dir_all(&self.mount).map_err(|e| e.to_string())?;
        let device = run(Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&self.image))?
        .trim()
        .to_owned();
        self.device = Some(device.clone());
        run(Command::new("mount")
            .args(["-t", "ext4", &device])
            .arg(&self.mount))?;
        Ok(())
    }

    /// Unmounts and detaches, after [`LazyFs::kill`] (so that the image's I/O fails and
    /// nothing more becomes durable) and before [`LazyFs::cut`] unmounts the lazy filesystem.
    pub fn detach(&mut self) -> Result<(), String> {
        let Some(device) = self.device.take() else {
            return Ok(());
        };
        let unmounted = unmount(&self.mount);
        let detached = run(Command::new("losetup").args(["-d", &device])).map(drop);
        unmounted.and(detached)
    }

    /// What recovery after a power cut does: `e2fsck -fp` on the image (through `image`,
    /// normally the backing file), failing when it leaves errors uncorrected. Returns its report.
    pub fn check(image: &Path) -> Result<String, String> {
        let output = Command::new("e2fsck")
            .arg("-fp")
            .arg(image)
            .output()
            .map_err(|e| format!("e2fsck runs: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // 0: clean; 1: errors corrected; 2: corrected, reboot advised. 4 and up: not corrected.
        match output.status.code() {
            Some(code) if code < 4 => Ok(text),
            _ => Err(format!("e2fsck -fp failed with {}: {text}", output.status)),
        }
    }
}

impl Drop for Ext4Image {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}

/// Whether `path` is the mount point of a FUSE filesystem now.
fn is_fuse_mount(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    mounts.lines().any(|line| {
        let mut fields = line.split(' ');
        let (_, point, kind) = (fields.next(), fields.next(), fields.next());
        point == Some(&*wanted) && kind.is_some_and(|k| k.starts_with("fuse"))
    })
}

/// `umount`, falling back to a lazy one when something still holds the mount.
fn unmount(path: &Path) -> Result<(), String> {
    if run(Command::new("umount").arg(path)).is_ok() {
        return Ok(());
    }
    run(Command::new("umount").arg("-l").arg(path)).map(drop)
}

/// Runs a command to the end; its stdout, or an error with its stderr.
fn run(command: &mut Command) -> Result<String, String> {
    let output = command
        .output()
        .map_err(|e| format!("{command:?} does not run: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{command:?} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
