//! Files only the service's own user may read: the data dir holds the
//! embedded database (password hashes, token state) and, without SMTP, the
//! `.eml` files with one-time codes in them.

use std::io;
use std::path::Path;

/// Creates `dir` (and its parents) and makes it `rwx------`.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    restrict(dir, 0o700)
}

/// Makes an existing file `rw-------`.
pub fn restrict_file(file: &Path) -> io::Result<()> {
    restrict(file, 0o600)
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}
