//! librqbit storage over shoal's own blob files (librqbit's filesystem storage would want
//! the file at `<dir>/<torrent name>`; shoal's is at `blobs/sha256/<xx>/<hex>`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::bail;
use librqbit::storage::{BoxStorageFactory, StorageFactory, StorageFactoryExt, TorrentStorage};
use librqbit::{ManagedTorrentShared, TorrentMetadata};

/// Seeds one complete blob, read-only.
#[derive(Clone)]
pub struct CompleteBlob {
    pub path: PathBuf,
}

#[derive(Clone)]
pub struct CompleteBlobStorage {
    file: Arc<File>,
}

impl StorageFactory for CompleteBlob {
    type Storage = CompleteBlobStorage;

    fn create(
        &self,
        _: &ManagedTorrentShared,
        metadata: &TorrentMetadata,
    ) -> anyhow::Result<CompleteBlobStorage> {
        if metadata.file_infos.len() != 1 {
            bail!("shoal torrents have exactly one file");
        }
        Ok(CompleteBlobStorage {
            file: Arc::new(File::open(&self.path)?),
        })
    }

    fn clone_box(&self) -> BoxStorageFactory {
        self.clone().boxed()
    }
}

impl TorrentStorage for CompleteBlobStorage {
    fn init(&mut self, _: &ManagedTorrentShared, _: &TorrentMetadata) -> anyhow::Result<()> {
        Ok(())
    }

    fn pread_exact(&self, _file: usize, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        Ok(self.file.read_exact_at(buf, offset)?)
    }

    fn pwrite_all(&self, _: usize, _: u64, _: &[u8]) -> anyhow::Result<()> {
        bail!("a complete blob is never written")
    }

    fn remove_file(&self, _: usize, _: &Path) -> anyhow::Result<()> {
        // The store owns the file; librqbit never deletes it.
        Ok(())
    }

    fn remove_directory_if_empty(&self, _: &Path) -> anyhow::Result<()> {
        Ok(())
    }

    fn ensure_file_length(&self, _: usize, len: u64) -> anyhow::Result<()> {
        let have = self.file.metadata()?.len();
        if have != len {
            bail!("blob file is {have} bytes, its torrent says {len}");
        }
        Ok(())
    }

    fn take(&self) -> anyhow::Result<Box<dyn TorrentStorage>> {
        Ok(Box::new(self.clone()))
    }
}
