//! The admin token: what `Authorization: Bearer …` must carry on admin requests that
//! change something. Set by config (`admin.token`), else made on first start and kept in
//! `<data-dir>/admin.token` (mode 0600), where the CLI on the same box reads it.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// The token kept in the data dir, made now if there is none.
pub fn load_or_create(data_dir: &Path) -> io::Result<String> {
    match read(data_dir) {
        Ok(t) => return Ok(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| io::Error::other("no secure random source"))?;
    let token = hex::encode(bytes);
    let path = path(data_dir);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(format!("{token}\n").as_bytes())?;
    f.sync_all()?;
    Ok(token)
}

/// The token kept in the data dir.
pub fn read(data_dir: &Path) -> io::Result<String> {
    let token = fs::read_to_string(path(data_dir))?.trim().to_owned();
    if token.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is empty", path(data_dir).display()),
        ));
    }
    Ok(token)
}

/// Whether an `Authorization` header value carries `token` (compared in constant time).
pub fn authorizes(header: Option<&[u8]>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
        return false;
    };
    let want = token.as_bytes();
    given.len() == want.len()
        && given
            .iter()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_once_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let t = load_or_create(dir.path()).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(load_or_create(dir.path()).unwrap(), t, "kept across starts");
        let mode = fs::metadata(path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(authorizes(Some(format!("Bearer {t}").as_bytes()), &t));
        assert!(!authorizes(Some(format!("Bearer {t}x").as_bytes()), &t));
        assert!(!authorizes(Some(t.as_bytes()), &t));
        assert!(!authorizes(None, &t));
    }
}
