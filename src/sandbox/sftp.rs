//! The SFTP subsystem of a sandbox host: the real file system, held to the
//! host's directory by [`Jail`].

use std::collections::HashMap;
use std::io::{self, SeekFrom};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use super::jail::{Jail, Refused};

/// Largest read served at once, as OpenSSH's sftp-server.
const MAX_READ: u32 = 256 * 1024;

/// One SFTP session.
pub(super) struct Sftp {
    jail: Jail,
    open: HashMap<String, Opened>,
    next: u64,
}

enum Opened {
    File(tokio::fs::File),
    /// Entries not yet sent; `None` once they have been.
    Dir(Option<Vec<File>>),
}

impl Sftp {
    pub(super) fn new(jail: Jail) -> Self {
        Self {
            jail,
            open: HashMap::new(),
            next: 0,
        }
    }

    fn path(&self, path: &str, follow: bool) -> Result<std::path::PathBuf, StatusReply> {
        self.jail.resolve(path, follow).map_err(|e| match e {
            Refused::Escapes(p) => StatusCode::PermissionDenied
                .with_message(format!("{p} is outside this sandbox host's directory")),
            Refused::Io(e) => io_status(&e),
        })
    }

    fn keep(&mut self, opened: Opened) -> String {
        self.next += 1;
        let handle = format!("h{}", self.next);
        self.open.insert(handle.clone(), opened);
        handle
    }

    fn file(&mut self, handle: &str) -> Result<&mut tokio::fs::File, StatusReply> {
        match self.open.get_mut(handle) {
            Some(Opened::File(f)) => Ok(f),
            _ => Err(StatusCode::Failure.with_message(format!("no open file {handle}"))),
        }
    }
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    }
}

fn io_status(e: &io::Error) -> StatusReply {
    let code = match e.kind() {
        io::ErrorKind::NotFound => StatusCode::NoSuchFile,
        io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    };
    code.with_message(e.to_string())
}

fn attrs(meta: &std::fs::Metadata) -> FileAttributes {
    FileAttributes {
        size: Some(meta.len()),
        uid: Some(meta.uid()),
        gid: Some(meta.gid()),
        // st_mode carries the file type bits too, as SFTP v3 wants.
        permissions: Some(meta.mode()),
        atime: u32::try_from(meta.atime()).ok(),
        mtime: u32::try_from(meta.mtime()).ok(),
        ..FileAttributes::default()
    }
}

/// Applies the attributes a client may set: permissions, size and times.
fn set_attrs(path: &Path, set: &FileAttributes) -> io::Result<()> {
    if let Some(mode) = set.permissions {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    if let Some(size) = set.size {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(size)?;
    }
    if let (Some(atime), Some(mtime)) = (set.atime, set.mtime) {
        use nix::sys::time::TimeVal;
        let tv = |s: u32| TimeVal::new(i64::from(s), 0);
        nix::sys::stat::utimes(path, &tv(atime), &tv(mtime)).map_err(io::Error::from)?;
    }
    Ok(())
}

impl russh_sftp::server::Handler for Sftp {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.into()
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let path = self.path(&filename, true)?;
        let mut options = std::fs::OpenOptions::from(pflags);
        // The path was checked; a link slipped in since must not be followed.
        options
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .mode(attrs.permissions.unwrap_or(0o644) & 0o7777);
        let file = options.open(&path).map_err(|e| io_status(&e))?;
        let handle = self.keep(Opened::File(tokio::fs::File::from_std(file)));
        Ok(Handle { id, handle })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.open.remove(&handle) {
            Some(Opened::File(mut f)) => f.flush().await.map_err(|e| io_status(&e))?,
            Some(Opened::Dir(_)) => {}
            None => {
                return Err(StatusCode::Failure.with_message(format!("no open handle {handle}")));
            }
        }
        Ok(ok(id))
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let file = self.file(&handle)?;
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| io_status(&e))?;
        let mut data = vec![0; len.min(MAX_READ) as usize];
        let n = file.read(&mut data).await.map_err(|e| io_status(&e))?;
        if n == 0 {
            return Err(StatusCode::Eof.into());
        }
        data.truncate(n);
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let file = self.file(&handle)?;
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| io_status(&e))?;
        file.write_all(&data).await.map_err(|e| io_status(&e))?;
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let path = self.path(&path, false)?;
        let meta = std::fs::symlink_metadata(path).map_err(|e| io_status(&e))?;
        Ok(Attrs {
            id,
            attrs: attrs(&meta),
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let path = self.path(&path, true)?;
        let meta = std::fs::metadata(path).map_err(|e| io_status(&e))?;
        Ok(Attrs {
            id,
            attrs: attrs(&meta),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let meta = self
            .file(&handle)?
            .metadata()
            .await
            .map_err(|e| io_status(&e))?;
        Ok(Attrs {
            id,
            attrs: attrs(&meta),
        })
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let path = self.path(&path, true)?;
        set_attrs(&path, &attrs).map_err(|e| io_status(&e))?;
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let file = self.file(&handle)?;
        if let Some(mode) = attrs.permissions {
            let perms = std::fs::Permissions::from_mode(mode & 0o7777);
            file.set_permissions(perms)
                .await
                .map_err(|e| io_status(&e))?;
        }
        if let Some(size) = attrs.size {
            file.set_len(size).await.map_err(|e| io_status(&e))?;
        }
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let dir = self.path(&path, true)?;
        let mut files = Vec::new();
        for name in [".", ".."] {
            if let Ok(meta) = std::fs::metadata(dir.join(name)) {
                files.push(File::new(name, attrs(&meta)));
            }
        }
        for entry in std::fs::read_dir(&dir).map_err(|e| io_status(&e))? {
            let entry = entry.map_err(|e| io_status(&e))?;
            if let Ok(meta) = entry.path().symlink_metadata() {
                files.push(File::new(entry.file_name().to_string_lossy(), attrs(&meta)));
            }
        }
        let handle = self.keep(Opened::Dir(Some(files)));
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        match self.open.get_mut(&handle) {
            Some(Opened::Dir(files)) => match files.take() {
                Some(files) if !files.is_empty() => Ok(Name { id, files }),
                _ => Err(StatusCode::Eof.into()),
            },
            _ => Err(StatusCode::Failure.with_message(format!("no open directory {handle}"))),
        }
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        let path = self.path(&filename, false)?;
        std::fs::remove_file(path).map_err(|e| io_status(&e))?;
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        use std::os::unix::fs::DirBuilderExt as _;
        let path = self.path(&path, false)?;
        std::fs::DirBuilder::new()
            .mode(attrs.permissions.unwrap_or(0o755) & 0o7777)
            .create(path)
            .map_err(|e| io_status(&e))?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        let path = self.path(&path, false)?;
        if path == self.jail.home() {
            return Err(StatusCode::PermissionDenied.with_message("the host's home stays"));
        }
        std::fs::remove_dir(path).map_err(|e| io_status(&e))?;
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let real = self.path(&path, true)?;
        let name = real.to_string_lossy().into_owned();
        Ok(Name {
            id,
            files: vec![File::dummy(name)],
        })
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        let from = self.path(&oldpath, false)?;
        let to = self.path(&newpath, false)?;
        std::fs::rename(from, to).map_err(|e| io_status(&e))?;
        Ok(ok(id))
    }

    async fn readlink(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let path = self.path(&path, false)?;
        let target = std::fs::read_link(path).map_err(|e| io_status(&e))?;
        Ok(Name {
            id,
            files: vec![File::dummy(target.to_string_lossy())],
        })
    }
}
