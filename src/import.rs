//! `shoal import DIR`: takes an existing ollama models directory into the cache, so that a
//! box that already has models seeds them to the LAN without downloading anything.
//!
//! - `blobs/sha256-<hex>`: each file is read once, checking its sha256 and computing its
//!   torrent's piece hashes in the same pass; if it matches its name it is hard-linked into
//!   the store (copied only when the data dir is on another filesystem). A file that does
//!   not match is reported and left alone.
//! - `manifests/<host>/<namespace>/<model>/<tag>`: filed under that registry, repository
//!   and tag, byte for byte, as ollama pulled them, for ollama's Accept.
//! - `manifests-v2/<host>/...` (ollama ≥ 0.40; `ollama.com` is registry.ollama.ai): the
//!   same for 0.40's Accept. A tag there may hold a manifest list, whose children ollama
//!   keeps as blobs (taken in with the blobs above); a plain manifest is filed for the
//!   older Accept too, since the registry answers both alike.
//!
//! Nothing is imported that was not verified; the source directory is never modified.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest as _, Sha256};

use crate::oci::{
    manifest_media_type, Digest, Reference, RepoName, OLLAMA_LIST_TYPE, OLLAMA_MANIFEST_ACCEPT,
    OLLAMA_V040_ACCEPT_KEY,
};
use crate::p2p::torrent::PieceHasher;
use crate::store::{now_ms, Store, StoredManifest, TagKey};

/// Manifests are small; anything bigger is not one.
const MAX_MANIFEST: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path} is not an ollama models directory (no blobs/ or manifests/ in it)")]
    NotModels { path: PathBuf },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot import into the store")]
    Store(#[from] crate::store::Error),
}

#[derive(Debug, Default)]
pub struct Report {
    /// Blobs taken in without copying a byte.
    pub linked: u64,
    /// Blobs copied (the data dir is on another filesystem).
    pub copied: u64,
    /// Blobs the cache already had.
    pub present: u64,
    pub bytes: u64,
    pub manifests: u64,
    /// Files refused, with why.
    pub refused: Vec<(PathBuf, String)>,
}

/// An ollama models dir, given as `~/.ollama/models` or as `~/.ollama`.
fn models_dir(dir: &Path) -> Result<PathBuf, Error> {
    for d in [dir.to_owned(), dir.join("models")] {
        if ["blobs", "manifests", "manifests-v2"]
            .iter()
            .any(|sub| d.join(sub).is_dir())
        {
            return Ok(d);
        }
    }
    Err(Error::NotModels {
        path: dir.to_owned(),
    })
}

pub async fn import(store: &Store, dir: &Path, show_progress: bool) -> Result<Report, Error> {
    let dir = models_dir(dir)?;
    let mut report = Report::default();

    // Blobs first, so that manifests land with what they name.
    let blobs = dir.join("blobs");
    let mut todo = Vec::new();
    if blobs.is_dir() {
        let read = |source| Error::Read {
            path: blobs.clone(),
            source,
        };
        for entry in std::fs::read_dir(&blobs).map_err(read)? {
            let entry = entry.map_err(read)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // ollama's names are sha256-<hex>; its partial downloads carry a suffix.
            let Some(digest) = name
                .strip_prefix("sha256-")
                .and_then(|h| format!("sha256:{h}").parse::<Digest>().ok())
            else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            if store.blob_size(&digest).is_some() {
                report.present += 1;
            } else {
                todo.push((digest, entry.path(), meta.len()));
            }
        }
    }
    let total: u64 = todo.iter().map(|(_, _, n)| n).sum();
    let bar = if show_progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("verifying");
    for (digest, path, size) in todo {
        let hashed = {
            let (path, bar) = (path.clone(), bar.clone());
            tokio::task::spawn_blocking(move || hash_file(&path, size, &bar)).await
        };
        let read_err = |source| Error::Read {
            path: path.clone(),
            source,
        };
        let (got, torrent) = hashed
            .map_err(|e| read_err(std::io::Error::other(e)))?
            .map_err(read_err)?;
        if got != digest {
            report
                .refused
                .push((path, format!("its bytes hash to {got}, not {digest}")));
            continue;
        }
        let torrent = torrent.finish(digest, size).into_row();
        if store.adopt(digest, size, path, torrent).await? {
            report.linked += 1;
        } else {
            report.copied += 1;
        }
        report.bytes += size;
    }
    bar.finish_and_clear();

    // Manifests: manifests/<host>/<namespace>/<model>/<tag>, and the same under
    // manifests-v2 for ollama ≥ 0.40.
    for layout in [Layout::Legacy, Layout::V040] {
        let root = dir.join(layout.dir());
        for path in files_at_depth(&root, 4) {
            match manifest(&root, &path, layout) {
                Ok((keys, m)) => {
                    for key in keys {
                        store.put_manifest(m.clone(), Some(key), now_ms()).await?;
                    }
                    report.manifests += 1;
                }
                Err(why) => report.refused.push((path, why)),
            }
        }
    }
    Ok(report)
}

/// sha256 and torrent piece hashes of a file, in one read.
fn hash_file(path: &Path, size: u64, bar: &ProgressBar) -> std::io::Result<(Digest, PieceHasher)> {
    let mut sha = Sha256::new();
    let mut pieces = PieceHasher::new(size);
    let seen = crate::store::stream_file(path, |b| {
        sha.update(b);
        pieces.update(b);
        bar.inc(b.len() as u64);
    })?;
    if seen != size {
        return Err(std::io::Error::other(format!(
            "changed while being read ({seen} of {size} bytes)"
        )));
    }
    Ok((Digest::from_bytes(sha.finalize().into()), pieces))
}

fn files_at_depth(root: &Path, depth: usize) -> Vec<PathBuf> {
    let mut level = vec![root.to_owned()];
    for _ in 0..depth {
        let mut next = Vec::new();
        for d in level {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            next.extend(entries.flatten().map(|e| e.path()));
        }
        level = next;
    }
    level.into_iter().filter(|p| p.is_file()).collect()
}

/// Where a version of ollama keeps its tags.
#[derive(Debug, Clone, Copy)]
enum Layout {
    Legacy,
    V040,
}

impl Layout {
    fn dir(self) -> &'static str {
        match self {
            Layout::Legacy => "manifests",
            Layout::V040 => "manifests-v2",
        }
    }
}

/// The tag keys and bytes of one manifest file, or why it is refused.
fn manifest(
    root: &Path,
    path: &Path,
    layout: Layout,
) -> Result<(Vec<TagKey>, StoredManifest), String> {
    let rel = path.strip_prefix(root).map_err(|e| e.to_string())?;
    let parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let [host, ns, model, tag] = parts.as_slice() else {
        return Err(format!(
            "not at {}/<host>/<namespace>/<model>/<tag>",
            layout.dir()
        ));
    };
    let repo: RepoName = format!("{ns}/{model}")
        .parse()
        .map_err(|e: crate::oci::NameError| e.to_string())?;
    if !matches!(tag.parse::<Reference>(), Ok(Reference::Tag(_))) {
        return Err(format!("{tag:?} is not a tag"));
    }
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_MANIFEST {
        return Err("too large for a manifest".into());
    }
    let body = std::fs::read(path).map_err(|e| e.to_string())?;
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("not a manifest: {e}"))?;
    if json.get("schemaVersion").is_none() {
        return Err("not a manifest: no schemaVersion".into());
    }
    let media_type = manifest_media_type(None, &body);
    let accepts = match layout {
        Layout::Legacy => vec![OLLAMA_MANIFEST_ACCEPT],
        Layout::V040 if media_type == OLLAMA_LIST_TYPE => vec![OLLAMA_V040_ACCEPT_KEY],
        Layout::V040 => vec![OLLAMA_V040_ACCEPT_KEY, OLLAMA_MANIFEST_ACCEPT],
    };
    // ollama ≥ 0.40 files the library under ollama.com; it is registry.ollama.ai's.
    let registry = match (layout, host.as_str()) {
        (Layout::V040, "ollama.com") => "registry.ollama.ai".to_owned(),
        _ => host.clone(),
    };
    let keys = accepts
        .into_iter()
        .map(|accept| TagKey {
            registry: registry.clone(),
            repo: repo.to_string(),
            tag: tag.clone(),
            accept: accept.to_owned(),
        })
        .collect();
    Ok((
        keys,
        StoredManifest {
            digest: Digest::of(&body),
            media_type,
            body: body.into(),
            // The admin imports it for the LAN, as if pulled without credentials.
            private: false,
        },
    ))
}
