//! `{data_dir}/bin`: installed binaries and the `next` / `current` selection read by
//! `scs-agent-launch` (see the module docs of [`crate::update`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const BIN_DIR: &str = "bin";

#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct LayoutError {
    what: &'static str,
    path: PathBuf,
    source: io::Error,
}

fn err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayoutError + 'a {
    move |source| LayoutError { what, path: path.to_path_buf(), source }
}

/// The update in flight, as recorded before the restart into the new binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub command_id: String,
    pub version: String,
    pub binary: PathBuf,
    pub previous_version: String,
}

pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        Layout { dir: data_dir.join(BIN_DIR) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Copies a verified file to `bin/scs-agent-<version>` (temp name, fsync, rename, fsync of the
    /// directory): the binary is complete on disk before anything points at it.
    pub fn install_binary(&self, from: &Path, version: &str) -> Result<PathBuf, LayoutError> {
        fs::create_dir_all(&self.dir).map_err(err("creating", &self.dir))?;
        let target = self.path(&format!("scs-agent-{version}"));
        let tmp = self.path(&format!(".scs-agent-{version}.tmp"));
        let mut src = File::open(from).map_err(err("opening", from))?;
        let mut out =
            OpenOptions::new().write(true).create(true).truncate(true).mode(0o755).open(&tmp).map_err(err("creating", &tmp))?;
        io::copy(&mut src, &mut out).map_err(err("writing", &tmp))?;
        out.set_permissions(fs::Permissions::from_mode(0o755)).map_err(err("chmod", &tmp))?;
        out.sync_all().map_err(err("syncing", &tmp))?;
        drop(out);
        fs::rename(&tmp, &target).map_err(err("renaming into", &target))?;
        self.sync_dir()?;
        Ok(target)
    }

    /// Points `name` at `target` atomically (a temp symlink renamed over the old one).
    fn set_link(&self, name: &str, target: &Path) -> Result<(), LayoutError> {
        let tmp = self.path(&format!(".{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp).map_err(err("linking", &tmp))?;
        let link = self.path(name);
        fs::rename(&tmp, &link).map_err(err("renaming into", &link))?;
        self.sync_dir()
    }

    /// Selects `binary` to be tried once at the next start: the attempt counter is cleared first,
    /// then `next` is set, then the pending record written last (its presence means "report me").
    pub fn stage_next(&self, binary: &Path, pending: &Pending) -> Result<(), LayoutError> {
        self.remove("next.tries")?;
        self.remove("rollback")?;
        self.set_link("next", binary)?;
        let text = format!(
            "command={}\nversion={}\nbinary={}\nprevious={}\n",
            pending.command_id,
            pending.version,
            pending.binary.display(),
            pending.previous_version
        );
        self.write_atomic("pending", &text)
    }

    /// The trial binary is healthy: `next` becomes `current` in one rename.
    pub fn promote_next(&self) -> Result<(), LayoutError> {
        let next = self.path("next");
        let current = self.path("current");
        fs::rename(&next, &current).map_err(err("renaming into", &current))?;
        self.remove("next.tries")?;
        self.sync_dir()
    }

    /// Records why the trial binary is abandoned (first reason wins: the launcher may add its own).
    pub fn record_rollback(&self, why: &str) {
        if self.path("rollback").exists() {
            return;
        }
        if let Err(e) = self.write_atomic("rollback", why) {
            log::error!("update: recording the rollback reason: {e}");
        }
    }

    pub fn rollback_reason(&self) -> Option<String> {
        read_small(&self.path("rollback")).map(|s| s.trim().to_owned())
    }

    pub fn has_next(&self) -> bool {
        fs::symlink_metadata(self.path("next")).is_ok()
    }

    /// Where `current` points, if anywhere.
    pub fn current(&self) -> Option<PathBuf> {
        fs::read_link(self.path("current")).ok()
    }

    pub fn pending(&self) -> Option<Pending> {
        let text = read_small(&self.path("pending"))?;
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('='))).map(str::to_owned);
        Some(Pending {
            command_id: field("command")?,
            version: field("version")?,
            binary: PathBuf::from(field("binary")?),
            previous_version: field("previous").unwrap_or_default(),
        })
    }

    /// The outcome has been reported: forget the pending record and the rollback reason, and delete
    /// binaries nothing points at any more.
    pub fn finish(&self) {
        for name in ["pending", "rollback"] {
            if let Err(e) = self.remove(name) {
                log::warn!("update: {e}");
            }
        }
        let keep: Vec<PathBuf> = ["current", "next"].iter().filter_map(|n| fs::read_link(self.path(n)).ok()).collect();
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let stale = e.file_name().to_str().is_some_and(|n| n.starts_with("scs-agent-")) && !keep.contains(&p);
            if stale {
                let _ = fs::remove_file(&p);
            }
        }
    }

    fn remove(&self, name: &str) -> Result<(), LayoutError> {
        let p = self.path(name);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(LayoutError { what: "removing", path: p, source: e }),
            _ => Ok(()),
        }
    }

    fn write_atomic(&self, name: &str, text: &str) -> Result<(), LayoutError> {
        fs::create_dir_all(&self.dir).map_err(err("creating", &self.dir))?;
        let tmp = self.path(&format!(".{name}.tmp"));
        let mut f = File::create(&tmp).map_err(err("creating", &tmp))?;
        f.write_all(text.as_bytes()).map_err(err("writing", &tmp))?;
        f.sync_all().map_err(err("syncing", &tmp))?;
        let target = self.path(name);
        fs::rename(&tmp, &target).map_err(err("renaming into", &target))?;
        self.sync_dir()
    }

    fn sync_dir(&self) -> Result<(), LayoutError> {
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(err("syncing", &self.dir))
    }
}

fn read_small(path: &Path) -> Option<String> {
    let mut s = String::new();
    File::open(path).ok()?.take(4096).read_to_string(&mut s).ok()?;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_promote_finish() {
        let d = std::env::temp_dir().join(format!("scs-layout-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let src = d.join("new");
        fs::write(&src, b"#!/bin/sh\n").unwrap();
        let l = Layout::new(&d);
        let bin = l.install_binary(&src, "1.2.3").unwrap();
        let p = Pending { command_id: "c1".into(), version: "1.2.3".into(), binary: bin.clone(), previous_version: "1.0".into() };
        l.stage_next(&bin, &p).unwrap();
        assert!(l.has_next());
        assert_eq!(l.pending(), Some(p));
        l.promote_next().unwrap();
        assert!(!l.has_next());
        assert_eq!(l.current(), Some(bin.clone()));
        l.record_rollback("first");
        l.record_rollback("second");
        assert_eq!(l.rollback_reason().as_deref(), Some("first"));
        fs::write(l.dir().join("scs-agent-0.9"), b"old").unwrap();
        l.finish();
        assert!(l.pending().is_none() && l.rollback_reason().is_none());
        assert!(bin.exists() && !l.dir().join("scs-agent-0.9").exists());
        fs::remove_dir_all(&d).unwrap();
    }
}
