//! Paths an SFTP client names, held inside one host's directory.
//!
//! Paths are the real ones (the same a command on the host sees, so a path
//! learned with `echo $HOME` works for uploads); relative ones start at the
//! host's home. Every directory on the way is resolved by the kernel
//! (`canonicalize`), so `..` and symlinks are judged by where they really
//! lead, and anything that leads outside is refused. The last component is
//! followed only where the operation follows links (open, stat), never for
//! lstat, remove, rename or mkdir, which act on the link itself.

use std::io;
use std::path::{Component, Path, PathBuf};

/// A host's directory, canonical.
#[derive(Debug, Clone)]
pub(super) struct Jail {
    home: PathBuf,
}

/// Why a path was refused.
#[derive(Debug)]
pub(super) enum Refused {
    /// It leads outside the host's directory.
    Escapes(String),
    /// A directory on the way does not exist, or is not readable.
    Io(io::Error),
}

impl Jail {
    pub(super) fn new(home: &Path) -> io::Result<Self> {
        Ok(Self {
            home: home.canonicalize()?,
        })
    }

    pub(super) fn home(&self) -> &Path {
        &self.home
    }

    /// Where `path` leads; `follow` resolves a final symlink too.
    pub(super) fn resolve(&self, path: &str, follow: bool) -> Result<PathBuf, Refused> {
        let escapes = || Refused::Escapes(path.to_string());
        // As the kernel does: `link/` (or `link/.`) means the directory it names.
        let follow = follow || path.ends_with('/') || path.ends_with("/.");
        let joined = if path.starts_with('/') {
            PathBuf::from(path)
        } else {
            self.home.join(path)
        };
        let normal = lexical(&joined);
        if normal == self.home {
            return Ok(self.home.clone());
        }
        let (Some(parent), Some(name)) = (normal.parent(), normal.file_name()) else {
            return Err(escapes());
        };
        let parent = parent.canonicalize().map_err(Refused::Io)?;
        if !parent.starts_with(&self.home) {
            return Err(escapes());
        }
        let full = parent.join(name);
        let is_link = std::fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink());
        if !(follow && is_link) {
            return Ok(full);
        }
        // A dangling link could be created through, so it must resolve too.
        let target = full.canonicalize().map_err(|_| escapes())?;
        if target.starts_with(&self.home) {
            Ok(target)
        } else {
            Err(escapes())
        }
    }
}

/// `path` with `.` dropped and `..` applied to the text (never above `/`).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jail() -> (tempfile::TempDir, Jail) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        std::fs::create_dir(dir.path().join("home/sub")).unwrap();
        std::fs::write(dir.path().join("secret"), "x").unwrap();
        let jail = Jail::new(&dir.path().join("home")).unwrap();
        (dir, jail)
    }

    #[test]
    fn paths_inside_resolve_to_real_paths() {
        let (_dir, jail) = jail();
        let home = jail.home().to_owned();
        assert_eq!(jail.resolve(".", true).unwrap(), home);
        assert_eq!(jail.resolve("sub/../new", true).unwrap(), home.join("new"));
        let abs = home.join("sub/file");
        assert_eq!(jail.resolve(abs.to_str().unwrap(), true).unwrap(), abs);
    }

    #[test]
    fn dot_dot_and_absolute_paths_outside_are_refused() {
        let (_dir, jail) = jail();
        for path in ["..", "../secret", "sub/../../secret", "/etc/passwd", "/"] {
            assert!(
                matches!(jail.resolve(path, true), Err(Refused::Escapes(_))),
                "{path} was not refused"
            );
        }
    }

    #[test]
    fn symlinks_leading_out_are_refused_when_followed() {
        let (dir, jail) = jail();
        let home = jail.home().to_owned();
        std::os::unix::fs::symlink(dir.path(), home.join("out")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("nowhere"), home.join("dangling")).unwrap();
        std::os::unix::fs::symlink("sub", home.join("in")).unwrap();
        assert!(matches!(
            jail.resolve("out/secret", true),
            Err(Refused::Escapes(_))
        ));
        assert!(matches!(
            jail.resolve("out", true),
            Err(Refused::Escapes(_))
        ));
        assert!(matches!(
            jail.resolve("dangling", true),
            Err(Refused::Escapes(_))
        ));
        // The link itself (lstat, remove) is inside and may be handled.
        assert_eq!(jail.resolve("out", false).unwrap(), home.join("out"));
        assert!(matches!(
            jail.resolve("out/", false),
            Err(Refused::Escapes(_))
        ));
        assert_eq!(jail.resolve("in/x", true).unwrap(), home.join("sub/x"));
    }
}
