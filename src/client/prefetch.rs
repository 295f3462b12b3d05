//! `shoal prefetch NAME`: warms a running shoal's cache by pulling a model through it, so
//! that its own fill engine (peers first, then upstream, verified) does the work.
//!
//! 1. The health answer says which registries the server caches; a name that gives a host
//!    it does not cache is refused (a name without a host means its default registry).
//!    Another registry's repository is asked for under its host (`/v2/hf.co/...`).
//! 2. The manifest, through the server, with an ollama User-Agent (registry.ollama.ai gates
//!    manifests on it) and every manifest type accepted. An index (multi-platform image)
//!    is followed to the manifest of the chosen platform(s): by default the one this
//!    machine would run (`linux/<its architecture>`).
//! 3. An ollama model's manifest is asked for once more with ollama's own Accept, the key
//!    under which `ollama pull` finds it cached (even with the internet down). When the
//!    server cannot reach upstream, that key is tried instead: the cache may hold the tag
//!    as ollama pulled it, and peers the blobs.
//! 4. Every blob is read whole with a plain GET and a non-ollama User-Agent (an ollama one
//!    gets the direct-URL step, no body), and drained. The server holds back the last bytes
//!    of a whole-blob GET until the digest matched and the blob is committed, so a complete
//!    body means a verified, cached blob: there is nothing to hash here.
//!
//! Must not: keep the bytes; talk to anything but the server.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use http::header::{ACCEPT, CONTENT_LENGTH, USER_AGENT};
use http::StatusCode;
use http_body_util::BodyExt;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use url::Url;

use super::{error_detail, Error as ClientError, ServerClient};
use crate::oci::{
    Descriptor, Digest, ManifestContent, ManifestError, ModelRef, Platform, Reference, RepoName,
    ANY_MANIFEST_ACCEPT, OLLAMA_MANIFEST_ACCEPT,
};

/// registry.ollama.ai answers manifests only to ollama User-Agents of a recent version.
pub const MANIFEST_UA: &str = "ollama/0.12.0 (shoal-prefetch)";
/// Not `ollama/*`: for that the server answers a plain GET with the direct-URL step.
const BLOB_UA: &str = concat!("shoal-prefetch/", env!("CARGO_PKG_VERSION"));
const SOURCE_HEADER: &str = "x-shoal-source";
const DIGEST_HEADER: &str = "docker-content-digest";
/// distribution refuses manifests over 4 MiB; so does shoal.
const MAX_MANIFEST: usize = 4 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The server retries upstream before it answers a manifest; give it the time.
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Until a blob's answer starts: the server may look the blob up in peers or upstream.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// A blob body that sends nothing this long is given up. The server switches sources
/// within seconds when one stalls; this only catches a server that is gone.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Blobs read at once: the small ones finish while a big one streams. Each fill already
/// spreads over many upstream connections inside the server.
const PARALLEL_BLOBS: usize = 3;

/// Where a blob's bytes came from, as the server said when its answer started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Cache,
    Upstream,
    Peers,
    /// The server did not say (an older shoal).
    Unknown,
}

impl Source {
    fn from_header(v: Option<&str>) -> Source {
        match v {
            Some("cache") => Source::Cache,
            Some("upstream") => Source::Upstream,
            Some("peers") => Source::Peers,
            _ => Source::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Upstream => "upstream",
            Source::Peers => "peers",
            Source::Unknown => "unknown",
        }
    }
}

/// Which manifests of an index (multi-platform image) to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platforms {
    /// `linux/<this machine's architecture>`.
    Host,
    /// Every platform the index lists (not attestations, which name none).
    All,
    Only {
        os: String,
        architecture: String,
        variant: Option<String>,
    },
}

/// Go's names for architectures, which image indexes use.
fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl FromStr for Platforms {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "all" {
            return Ok(Platforms::All);
        }
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric());
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platforms::Only {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platforms::Only {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(format!(
                "platform {s:?} is invalid: give os/arch[/variant] or all"
            )),
        }
    }
}

impl fmt::Display for Platforms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Platforms::Host => write!(f, "linux/{}", host_architecture()),
            Platforms::All => f.write_str("all"),
            Platforms::Only {
                os,
                architecture,
                variant,
            } => {
                write!(f, "{os}/{architecture}")?;
                variant.as_ref().map_or(Ok(()), |v| write!(f, "/{v}"))
            }
        }
    }
}

impl Platforms {
    fn matches(&self, p: &Platform) -> bool {
        match self {
            Platforms::Host => p.os == "linux" && p.architecture == host_architecture(),
            Platforms::All => !p.os.is_empty() && p.os != "unknown",
            Platforms::Only {
                os,
                architecture,
                variant,
            } => {
                &p.os == os
                    && &p.architecture == architecture
                    && variant
                        .as_ref()
                        .is_none_or(|v| p.variant.as_ref() == Some(v))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(transparent)]
    Server(#[from] ClientError),
    #[error("no answer within {after:?}")]
    NoAnswer { after: Duration },
    #[error("answered {status}{}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        status: StatusCode,
        detail: Option<String>,
    },
    #[error("the server announces {said} bytes, the manifest says {want}")]
    Size { said: u64, want: u64 },
    #[error("the server answers with blob {got}")]
    Digest { got: String },
    #[error("short body: {got} of {want} bytes")]
    Short { got: u64, want: u64 },
    #[error("more bytes than the {want} the manifest says")]
    Long { want: u64 },
    #[error("no bytes for {after:?}, after {got} of {want}")]
    Stalled {
        after: Duration,
        got: u64,
        want: u64,
    },
    #[error("the body broke off after {got} of {want} bytes")]
    Body {
        got: u64,
        want: u64,
        #[source]
        source: hyper::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PrefetchError {
    #[error(transparent)]
    Server(#[from] ClientError),
    #[error("{name} names registry {host}, but shoal at {server} caches only {upstream} (add it there with --registry {host})")]
    HostMismatch {
        name: String,
        host: String,
        server: String,
        upstream: String,
    },
    #[error("model {name} is not known to {upstream} (asked through shoal at {server})")]
    NotFound {
        name: String,
        server: String,
        upstream: String,
    },
    #[error("shoal at {server} answered {status} for the manifest of {name}{}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        name: String,
        server: String,
        status: StatusCode,
        detail: Option<String>,
    },
    #[error("the manifest of {name} cannot be read")]
    Manifest {
        name: String,
        #[source]
        source: ManifestError,
    },
    #[error("the index of {name} names another index ({digest}) for a platform")]
    NestedIndex { name: String, digest: Digest },
    #[error("{name} has no image for {want}; it has {available} (see --platform)")]
    NoPlatform {
        name: String,
        want: String,
        available: String,
    },
    #[error("{failed} of {total} blobs of {name} were not read completely: {details}")]
    Blobs {
        name: String,
        failed: usize,
        total: usize,
        details: String,
    },
}

/// One blob read whole.
#[derive(Debug, Clone)]
pub struct BlobReport {
    pub digest: Digest,
    pub size: u64,
    pub source: Source,
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub name: String,
    pub blobs: Vec<BlobReport>,
    pub elapsed: Duration,
}

impl Report {
    pub fn bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }

    pub fn count(&self, source: Source) -> usize {
        self.blobs.iter().filter(|b| b.source == source).count()
    }

    /// One line: blobs, bytes, where they came from, how long it took.
    pub fn summary(&self) -> String {
        let mut from = format!(
            "{} from cache, {} from upstream, {} from peers",
            self.count(Source::Cache),
            self.count(Source::Upstream),
            self.count(Source::Peers)
        );
        let unknown = self.count(Source::Unknown);
        if unknown > 0 {
            from.push_str(&format!(", {unknown} from an unknown source"));
        }
        format!(
            "prefetched {}: {} blobs, {} bytes ({}) in {:.1} s; {from}",
            self.name,
            self.blobs.len(),
            self.bytes(),
            HumanBytes(self.bytes()),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Whether a model name's registry host is the one at `upstream` (`scheme://host[:port]`).
/// A host without a port matches any port; Docker Hub's names for itself are one.
fn same_registry(host: &str, upstream: &str) -> bool {
    let Ok(up) = Url::parse(upstream) else {
        return false;
    };
    let (name_host, name_port) = match host.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>().ok()),
        _ => (host, None),
    };
    let hub = |h: &str| match h {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        h => h.to_ascii_lowercase(),
    };
    hub(name_host) == hub(up.host_str().unwrap_or(""))
        && name_port.is_none_or(|p| Some(p) == up.port_or_known_default())
}

/// Bars on a terminal, one plain line per finished blob elsewhere.
struct Ui {
    multi: Option<MultiProgress>,
}

impl Ui {
    fn line(&self, msg: &str) {
        match &self.multi {
            Some(m) => {
                if m.println(msg).is_err() {
                    eprintln!("{msg}");
                }
            }
            None => eprintln!("{msg}"),
        }
    }

    fn bar(&self, d: &Descriptor) -> ProgressBar {
        let Some(m) = &self.multi else {
            return ProgressBar::hidden();
        };
        let bar = m.add(ProgressBar::new(d.size));
        let style = ProgressStyle::with_template(
            "{prefix} {msg:>8} [{bar:24}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("sha256:{}", &d.digest.hex()[..12]));
        bar.set_message("waiting");
        bar
    }
}

/// Pulls `name` through the shoal at `base` (as from `client::server_base`): every blob of
/// its manifest is read whole, so that the server holds them all, verified, afterwards.
pub async fn prefetch(
    base: &str,
    name: &ModelRef,
    platforms: &Platforms,
    progress: bool,
) -> Result<Report, PrefetchError> {
    let started = Instant::now();
    let ui = Ui {
        multi: progress.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
    };
    let client = ServerClient::new(base.to_owned(), CONNECT_TIMEOUT);
    let health = client.health(CONNECT_TIMEOUT).await?;
    let upstream = health.upstream;
    let shown = name.to_string();
    // The repository as the server files it: another registry's under its host.
    let mut repo = name.repo.clone();
    match (&name.host, &upstream) {
        (Some(host), Some(up)) if !same_registry(host, up) => {
            let other = health
                .registries
                .iter()
                .find(|r| same_registry(host, &format!("https://{r}")))
                .and_then(|r| format!("{r}/{}", name.repo).parse().ok());
            match other {
                Some(qualified) => repo = qualified,
                None => {
                    let mut all = vec![up.clone()];
                    all.extend(health.registries.iter().cloned());
                    return Err(PrefetchError::HostMismatch {
                        name: shown,
                        host: host.clone(),
                        server: base.to_owned(),
                        upstream: all.join(", "),
                    });
                }
            }
        }
        (Some(host), None) => ui.line(&format!(
            "warning: shoal at {base} does not say which registry it mirrors; it may not be {host}"
        )),
        _ => {}
    }
    let fetcher = Manifests {
        client: &client,
        repo: &repo,
        name: &shown,
        upstream: upstream.as_deref().unwrap_or("its upstream"),
    };

    let blobs = blobs(&fetcher, name, platforms, &ui).await?;
    let total = blobs.len();
    let results = read_all(&client, &repo, &blobs, &ui).await;
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for (digest, r) in results {
        match r {
            Ok(b) => done.push(b),
            Err(e) => failed.push(format!("{digest}: {}", crate::telemetry::chain(&e))),
        }
    }
    if !failed.is_empty() {
        return Err(PrefetchError::Blobs {
            name: shown,
            failed: failed.len(),
            total,
            details: failed.join("; "),
        });
    }
    Ok(Report {
        name: shown,
        blobs: done,
        elapsed: started.elapsed(),
    })
}

/// The blobs `name` consists of, each once: layers then config, for each chosen platform.
async fn blobs(
    fetcher: &Manifests<'_>,
    name: &ModelRef,
    platforms: &Platforms,
    ui: &Ui,
) -> Result<Vec<Descriptor>, PrefetchError> {
    let shown = fetcher.name.to_owned();
    let reference = name.reference.to_string();
    let (body, as_ollama) = match fetcher.get(&reference, ANY_MANIFEST_ACCEPT).await {
        Ok(body) => (body, false),
        // Upstream unreachable: the cache may still hold the tag as ollama pulled it.
        Err(e @ PrefetchError::Refused { status, .. }) if status.is_server_error() => {
            match fetcher.get(&reference, OLLAMA_MANIFEST_ACCEPT).await {
                Ok(body) => (body, true),
                Err(_) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    let mut blobs = Vec::new();
    match fetcher.parse(&body)? {
        ManifestContent::Image { config, layers } => {
            let ollama = layers
                .iter()
                .any(|l| l.media_type.starts_with("application/vnd.ollama.image."));
            if ollama && !as_ollama && matches!(name.reference, Reference::Tag(_)) {
                // Not fatal: the blobs are what prefetch is for.
                if let Err(e) = fetcher.get(&reference, OLLAMA_MANIFEST_ACCEPT).await {
                    ui.line(&format!(
                        "warning: the manifest as ollama asks for it is not cached: {}",
                        crate::telemetry::chain(&e)
                    ));
                }
            }
            // ollama's order: layers, then the config.
            blobs.extend(layers);
            blobs.extend(config);
        }
        ManifestContent::Index(children) => {
            let wanted =
                |c: &&Descriptor| c.platform.as_ref().is_some_and(|p| platforms.matches(p));
            // One platform: the first listed that matches, as container runtimes pick.
            let chosen: Vec<&Descriptor> = if platforms == &Platforms::All {
                children.iter().filter(wanted).collect()
            } else {
                children.iter().find(wanted).into_iter().collect()
            };
            if chosen.is_empty() {
                let available: Vec<String> = children
                    .iter()
                    .filter_map(|c| c.platform.as_ref())
                    .filter(|p| Platforms::All.matches(p))
                    .map(|p| p.to_string())
                    .collect();
                return Err(PrefetchError::NoPlatform {
                    name: shown,
                    want: platforms.to_string(),
                    available: if available.is_empty() {
                        "none".to_owned()
                    } else {
                        available.join(", ")
                    },
                });
            }
            for child in chosen {
                let body = fetcher
                    .get(&child.digest.to_string(), ANY_MANIFEST_ACCEPT)
                    .await?;
                match fetcher.parse(&body)? {
                    ManifestContent::Image { config, layers } => {
                        blobs.extend(layers);
                        blobs.extend(config);
                    }
                    ManifestContent::Index(_) => {
                        return Err(PrefetchError::NestedIndex {
                            name: shown,
                            digest: child.digest,
                        })
                    }
                }
            }
        }
    }
    let mut seen = HashSet::new();
    blobs.retain(|b| seen.insert(b.digest));
    Ok(blobs)
}

/// Reads every blob whole, a few at a time; results in manifest order.
async fn read_all(
    client: &ServerClient,
    repo: &RepoName,
    blobs: &[Descriptor],
    ui: &Ui,
) -> Vec<(Digest, Result<BlobReport, BlobError>)> {
    // Owned descriptors: a closure over borrowed ones makes the future not provably Send
    // (the server spawns it for API prefetches).
    stream::iter(blobs.to_vec())
        .map(|d| async move {
            let bar = ui.bar(&d);
            let r = read_blob(client, repo, &d, &bar).await;
            match &r {
                Ok(b) if ui.multi.is_some() => bar.finish_with_message(b.source.as_str()),
                Ok(b) => ui.line(&format!(
                    "{} {} bytes from {} in {:.2} s",
                    b.digest,
                    b.size,
                    b.source.as_str(),
                    b.elapsed.as_secs_f64()
                )),
                Err(e) => {
                    bar.abandon_with_message("failed");
                    ui.line(&format!(
                        "{} failed: {}",
                        d.digest,
                        crate::telemetry::chain(e)
                    ));
                }
            }
            (d.digest, r)
        })
        .buffered(PARALLEL_BLOBS)
        .collect()
        .await
}

/// Manifests of one repository, through the server.
struct Manifests<'a> {
    client: &'a ServerClient,
    repo: &'a RepoName,
    name: &'a str,
    upstream: &'a str,
}

impl Manifests<'_> {
    async fn get(&self, reference: &str, accept: &str) -> Result<bytes::Bytes, PrefetchError> {
        let path = format!("/v2/{}/manifests/{reference}", self.repo);
        let headers = [(USER_AGENT, MANIFEST_UA), (ACCEPT, accept)];
        let (parts, body) = self
            .client
            .get_bytes(&path, &headers, MANIFEST_TIMEOUT, MAX_MANIFEST)
            .await?;
        match parts.status {
            StatusCode::OK => Ok(body),
            StatusCode::NOT_FOUND => Err(PrefetchError::NotFound {
                name: self.name.to_owned(),
                server: self.client.base().to_owned(),
                upstream: self.upstream.to_owned(),
            }),
            status => Err(PrefetchError::Refused {
                name: self.name.to_owned(),
                server: self.client.base().to_owned(),
                status,
                detail: error_detail(&body),
            }),
        }
    }

    fn parse(&self, body: &[u8]) -> Result<ManifestContent, PrefetchError> {
        ManifestContent::parse(body).map_err(|source| PrefetchError::Manifest {
            name: self.name.to_owned(),
            source,
        })
    }
}

/// GETs one blob whole and drains it, counting bytes.
async fn read_blob(
    client: &ServerClient,
    repo: &RepoName,
    d: &Descriptor,
    bar: &ProgressBar,
) -> Result<BlobReport, BlobError> {
    let started = Instant::now();
    let path = format!("/v2/{repo}/blobs/{}", d.digest);
    let resp = tokio::time::timeout(ANSWER_TIMEOUT, client.get(&path, &[(USER_AGENT, BLOB_UA)]))
        .await
        .map_err(|_| BlobError::NoAnswer {
            after: ANSWER_TIMEOUT,
        })??;
    if resp.status() != StatusCode::OK {
        let status = resp.status();
        let body = tokio::time::timeout(
            Duration::from_secs(10),
            http_body_util::Limited::new(resp.into_body(), 64 << 10).collect(),
        )
        .await;
        let detail = match body {
            Ok(Ok(b)) => error_detail(&b.to_bytes()),
            _ => None,
        };
        return Err(BlobError::Status { status, detail });
    }
    let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(said) = header(CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok()) {
        if said != d.size {
            return Err(BlobError::Size { said, want: d.size });
        }
    }
    if let Some(got) = header(DIGEST_HEADER).filter(|g| *g != d.digest.to_string()) {
        return Err(BlobError::Digest {
            got: got.to_owned(),
        });
    }
    let source = Source::from_header(header(SOURCE_HEADER));
    bar.set_message(source.as_str());
    bar.reset_elapsed();
    let mut body = resp.into_body();
    let mut got = 0u64;
    loop {
        let frame = tokio::time::timeout(IDLE_TIMEOUT, body.frame())
            .await
            .map_err(|_| BlobError::Stalled {
                after: IDLE_TIMEOUT,
                got,
                want: d.size,
            })?;
        let frame = match frame {
            None => break,
            Some(Ok(f)) => f,
            Some(Err(source)) => {
                return Err(BlobError::Body {
                    got,
                    want: d.size,
                    source,
                })
            }
        };
        if let Ok(data) = frame.into_data() {
            got += data.len() as u64;
            if got > d.size {
                return Err(BlobError::Long { want: d.size });
            }
            bar.inc(data.len() as u64);
        }
    }
    if got < d.size {
        return Err(BlobError::Short { got, want: d.size });
    }
    Ok(BlobReport {
        digest: d.digest,
        size: d.size,
        source,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_compare_by_host_and_port() {
        let ollama = "https://registry.ollama.ai";
        assert!(same_registry("registry.ollama.ai", ollama));
        assert!(same_registry("Registry.Ollama.AI", ollama));
        assert!(same_registry("registry.ollama.ai:443", ollama));
        assert!(!same_registry("registry.ollama.ai:80", ollama));
        assert!(!same_registry("hf.co", ollama));
        assert!(same_registry("docker.io", "https://registry-1.docker.io"));
        assert!(same_registry("127.0.0.1:5000", "http://127.0.0.1:5000"));
        assert!(!same_registry("127.0.0.1:5001", "http://127.0.0.1:5000"));
        assert!(same_registry("[::1]:5000", "http://[::1]:5000"));
        assert!(same_registry("[::1]", "http://[::1]:5000"));
        assert!(!same_registry("registry.ollama.ai", "not a url"));
    }

    #[test]
    fn platforms() {
        let p = |os: &str, arch: &str, v: Option<&str>| Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: v.map(Into::into),
        };
        let arm = "linux/arm64".parse::<Platforms>().unwrap();
        assert!(arm.matches(&p("linux", "arm64", Some("v8"))));
        assert!(!arm.matches(&p("linux", "amd64", None)));
        let v7 = "linux/arm/v7".parse::<Platforms>().unwrap();
        assert!(v7.matches(&p("linux", "arm", Some("v7"))));
        assert!(!v7.matches(&p("linux", "arm", Some("v6"))));
        assert!(Platforms::All.matches(&p("windows", "amd64", None)));
        assert!(!Platforms::All.matches(&p("unknown", "unknown", None)));
        assert!(Platforms::Host.matches(&p("linux", host_architecture(), None)));
        assert_eq!(v7.to_string(), "linux/arm/v7");
        for bad in ["", "linux", "linux/", "a/b/c/d", "linux/amd 64"] {
            assert!(bad.parse::<Platforms>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn summary_names_sources() {
        let d = Digest::of(b"x");
        let blob = |size, source| BlobReport {
            digest: d,
            size,
            source,
            elapsed: Duration::from_millis(10),
        };
        let r = Report {
            name: "library/tiny:1b".into(),
            blobs: vec![blob(1000, Source::Upstream), blob(24, Source::Cache)],
            elapsed: Duration::from_millis(1500),
        };
        assert_eq!(
            r.summary(),
            "prefetched library/tiny:1b: 2 blobs, 1024 bytes (1.00 KiB) in 1.5 s; \
             1 from cache, 1 from upstream, 0 from peers"
        );
    }
}
