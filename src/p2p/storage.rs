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

/// Called with the byte range of each piece librqbit has verified.
pub type OnPiece = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Lets shoal stop librqbit's writes before another source fills the gaps: once closed,
/// no write lands, and closing waits for a write in progress.
#[derive(Default)]
pub struct WriteGate {
    closed: std::sync::RwLock<bool>,
    /// Nothing has been written yet, so there is nothing to read (see `pread_exact`).
    written: std::sync::atomic::AtomicBool,
}

impl WriteGate {
    pub fn close(&self) {
        *self.closed.write().unwrap_or_else(|p| p.into_inner()) = true;
    }
}

/// Downloads into a fill's partial file and reports verified pieces.
#[derive(Clone)]
pub struct PartialBlob {
    pub file: Arc<File>,
    pub size: u64,
    pub piece_length: u64,
    pub gate: Arc<WriteGate>,
    pub on_piece: OnPiece,
}

impl StorageFactory for PartialBlob {
    type Storage = PartialBlob;

    fn create(
        &self,
        _: &ManagedTorrentShared,
        metadata: &TorrentMetadata,
    ) -> anyhow::Result<PartialBlob> {
        if metadata.file_infos.len() != 1 {
            bail!("shoal torrents have exactly one file");
        }
        Ok(self.clone())
    }

    fn clone_box(&self) -> BoxStorageFactory {
        self.clone().boxed()
    }
}

impl TorrentStorage for PartialBlob {
    fn init(&mut self, _: &ManagedTorrentShared, _: &TorrentMetadata) -> anyhow::Result<()> {
        Ok(())
    }

    fn pread_exact(&self, _file: usize, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        // librqbit first reads the whole file to see which pieces it already has. A new
        // partial has none; failing the first read makes it skip the rest instead of
        // SHA-1-ing gigabytes of zeros.
        if !self.gate.written.load(std::sync::atomic::Ordering::Acquire) {
            bail!("nothing downloaded yet");
        }
        Ok(self.file.read_exact_at(buf, offset)?)
    }

    fn pwrite_all(&self, _file: usize, offset: u64, buf: &[u8]) -> anyhow::Result<()> {
        let closed = self.gate.closed.read().unwrap_or_else(|p| p.into_inner());
        if *closed {
            bail!("this download was handed over to another source");
        }
        self.file.write_all_at(buf, offset)?;
        self.gate
            .written
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    fn remove_file(&self, _: usize, _: &Path) -> anyhow::Result<()> {
        Ok(())
    }

    fn remove_directory_if_empty(&self, _: &Path) -> anyhow::Result<()> {
        Ok(())
    }

    fn ensure_file_length(&self, _: usize, len: u64) -> anyhow::Result<()> {
        if len != self.size {
            bail!("the partial is {} bytes, the torrent says {len}", self.size);
        }
        Ok(())
    }

    fn take(&self) -> anyhow::Result<Box<dyn TorrentStorage>> {
        Ok(Box::new(self.clone()))
    }

    fn on_piece_completed(
        &self,
        piece: librqbit_core::lengths::ValidPieceIndex,
    ) -> anyhow::Result<()> {
        if *self.gate.closed.read().unwrap_or_else(|p| p.into_inner()) {
            return Ok(());
        }
        let start = piece.get() as u64 * self.piece_length;
        let end = (start + self.piece_length).min(self.size);
        (self.on_piece)(start, end);
        Ok(())
    }
}
