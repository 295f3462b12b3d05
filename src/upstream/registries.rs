//! Several registries on one node: the default one (`upstream`, for names without a host)
//! and the others by the host name clients use (`hf.co`, `ghcr.io`, ...).
//!
//! Inside shoal a repository of another registry carries its host as its first part
//! (`hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF`), the way Docker names it; a repository of
//! the default registry carries none. `qualify` turns what a request says (a path, a
//! `CONNECT`/SNI host, containerd's `?ns=`) into that one form, `resolve` turns it back
//! into a registry and the path that registry knows. A host that is not configured is
//! never fetched: shoal is no open proxy.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::config::{FetchConfig, Pin, Registry, RegistryUrl};
use crate::oci::RepoName;

use super::{Result, Upstream};

/// Docker Hub's registry API host: single-part names there mean `library/<name>`.
const DOCKER_HUB: &str = "registry-1.docker.io";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("registry {0:?} is not configured here (add it with --registry {0})")]
pub struct UnknownRegistry(pub String);

pub struct Registries {
    default: Arc<Upstream>,
    /// The other registries by name.
    named: HashMap<String, Arc<Upstream>>,
    /// Every host a client may use for a registry (its name, its URL's host) → its name;
    /// `None` for the default.
    hosts: HashMap<String, Option<String>>,
}

impl Registries {
    pub fn new(
        default: &RegistryUrl,
        others: &[Registry],
        cfg: &FetchConfig,
        pins: &[Pin],
    ) -> Result<Arc<Registries>> {
        let default_up = Upstream::new(default.host_port(), default, cfg, pins)?;
        let mut hosts = HashMap::new();
        hosts.insert(default.host_port(), None);
        let mut named = HashMap::new();
        for r in others {
            let name = r.name.to_string();
            if r.url == *default {
                // The default under another name (`--upstream https://registry-1.docker.io`
                // with `--registry docker.io`): one registry, one namespace of tags.
                hosts.insert(name, None);
                continue;
            }
            named.insert(
                name.clone(),
                Upstream::new(name.clone(), &r.url, cfg, pins)?,
            );
            hosts.entry(r.url.host_port()).or_insert(Some(name.clone()));
            hosts.insert(name.clone(), Some(name));
        }
        Ok(Arc::new(Registries {
            default: default_up,
            named,
            hosts,
        }))
    }

    /// The default registry.
    pub fn default_registry(&self) -> &Arc<Upstream> {
        &self.default
    }

    /// Every registry, the default first, then by name.
    pub fn all(&self) -> Vec<&Arc<Upstream>> {
        let mut named: Vec<_> = self.named.values().collect();
        named.sort_by(|a, b| a.registry().cmp(b.registry()));
        std::iter::once(&self.default).chain(named).collect()
    }

    /// Blob bytes each registry (with its CDN) sent, by name; together they make
    /// `upstream_bytes` (of a data dir that began with this version).
    pub fn fetched(&self) -> Vec<(String, u64)> {
        self.all()
            .into_iter()
            .map(|u| (u.registry().to_owned(), u.fetched_bytes.load(Relaxed)))
            .collect()
    }

    /// Adds the persisted counts of `fetched` at start-up (registries no longer configured
    /// are left out).
    pub fn restore(&self, counts: &[(String, u64)]) {
        for u in self.all() {
            if let Some((_, n)) = counts.iter().find(|(name, _)| name == u.registry()) {
                u.fetched_bytes.fetch_add(*n, Relaxed);
            }
        }
    }

    /// The names of the registries besides the default, and of the default's other names.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .hosts
            .keys()
            .map(String::as_str)
            .filter(|h| h.contains('.') && !h.contains(':') && *h != self.default.registry())
            .collect();
        names.sort_unstable();
        names
    }

    /// The repository a request means, in shoal's one form:
    /// - `via`, the host of an intercepted tunnel (HTTPS proxy or DNS mode), decides alone:
    ///   a registry's host means that registry; any other intercepted host (the default's
    ///   own, its CDN) the default;
    /// - else a first part that is a host name (`/v2/hf.co/...`) names the registry;
    /// - else containerd's `?ns=HOST`;
    /// - else the default.
    ///
    /// A host in the path or `ns` that is not configured is refused.
    pub fn qualify(
        &self,
        via: Option<&str>,
        ns: Option<&str>,
        name: RepoName,
    ) -> Result<RepoName, UnknownRegistry> {
        let known = |host: &str| -> Result<Option<&str>, UnknownRegistry> {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            match self.hosts.get(&host) {
                Some(n) => Ok(n.as_deref()),
                None => Err(UnknownRegistry(host)),
            }
        };
        let (registry, path) = if let Some(via) = via {
            (self.intercepted(via), name)
        } else if let Some((host, rest)) = split_host(&name) {
            (known(host)?, rest)
        } else if let Some(ns) = ns.filter(|ns| !ns.is_empty()) {
            (known(ns)?, name)
        } else {
            (None, name)
        };
        let up = registry
            .and_then(|r| self.named.get(r))
            .unwrap_or(&self.default);
        let path = docker_library(up, path);
        Ok(match registry {
            None => path,
            Some(r) => format!("{r}/{path}")
                .parse()
                .map_err(|_| UnknownRegistry(r.to_owned()))?,
        })
    }

    /// The registry that requests on an intercepted host (proxy or DNS mode) go to: the
    /// one of that name, else the default (as `qualify` routes them).
    pub fn by_host(&self, host: &str) -> &Arc<Upstream> {
        self.intercepted(host)
            .and_then(|name| self.named.get(name))
            .unwrap_or(&self.default)
    }

    /// The named registry an intercepted host is, if any (else requests on it go to the
    /// default).
    fn intercepted(&self, host: &str) -> Option<&str> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.get(&host)?.as_deref()
    }

    /// The registry of a repository in shoal's form, and the repository as that registry
    /// names it.
    pub fn resolve(&self, repo: &RepoName) -> (&Arc<Upstream>, RepoName) {
        if let Some((host, rest)) = split_host(repo) {
            if let Some(up) = self.named.get(host) {
                return (up, rest);
            }
        }
        (&self.default, repo.clone())
    }
}

/// `hf.co/x/y` → (`hf.co`, `x/y`): a first part with a dot is a host, as Docker reads it.
fn split_host(repo: &RepoName) -> Option<(&str, RepoName)> {
    let (first, rest) = repo.as_str().split_once('/')?;
    if !first.contains('.') {
        return None;
    }
    Some((first, rest.parse().ok()?))
}

/// Docker Hub's rule: `alpine` is `library/alpine`.
fn docker_library(up: &Upstream, path: RepoName) -> RepoName {
    let hub = up.base_url().host_str() == Some(DOCKER_HUB);
    if hub && !path.as_str().contains('/') {
        if let Ok(p) = format!("library/{path}").parse() {
            return p;
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registries() -> Arc<Registries> {
        let list = [
            "hf.co",
            "ghcr.io=http://127.0.0.1:5001",
            "docker.io",
            "quay.io=http://127.0.0.1:5000",
        ]
        .iter()
        .map(|s| {
            let (name, url) = crate::config::registry_spec(s).unwrap();
            Registry { name, url }
        })
        .collect::<Vec<_>>();
        let default = "http://127.0.0.1:5000".parse().unwrap();
        Registries::new(&default, &list, &FetchConfig::default(), &[]).unwrap()
    }

    fn q(
        r: &Registries,
        via: Option<&str>,
        ns: Option<&str>,
        name: &str,
    ) -> Result<String, UnknownRegistry> {
        r.qualify(via, ns, name.parse().unwrap())
            .map(|n| n.to_string())
    }

    #[test]
    fn requests_name_one_registry() {
        let r = registries();
        let ok = |via, ns, name, want: &str| assert_eq!(q(&r, via, ns, name).as_deref(), Ok(want));
        // Mirror mode: the path's host, then ?ns=, then the default.
        ok(None, None, "library/granite-code", "library/granite-code");
        ok(None, None, "hf.co/user/repo", "hf.co/user/repo");
        ok(None, Some("ghcr.io"), "owner/app", "ghcr.io/owner/app");
        ok(
            None,
            Some("docker.io"),
            "alpine",
            "docker.io/library/alpine",
        );
        ok(None, None, "docker.io/alpine", "docker.io/library/alpine");
        // A registry's URL host is the registry; the default's own is the default, and
        // so is a name whose URL is the default's (quay.io here).
        ok(
            None,
            None,
            "registry-1.docker.io/library/x",
            "docker.io/library/x",
        );
        ok(None, Some("quay.io"), "a/b", "a/b");
        // Tunnels: the intercepted host decides; the path is taken as it is.
        ok(Some("hf.co"), None, "user/repo", "hf.co/user/repo");
        ok(Some("HF.CO."), None, "user/repo", "hf.co/user/repo");
        ok(Some("registry.ollama.ai"), None, "library/x", "library/x");
        ok(
            Some("abc.r2.cloudflarestorage.com"),
            Some("hf.co"),
            "library/x",
            "library/x",
        );
        ok(
            Some("registry-1.docker.io"),
            None,
            "library/alpine",
            "docker.io/library/alpine",
        );
        // Not configured: refused, whether by path or ns.
        let no = |via, ns, name, host: &str| {
            assert_eq!(q(&r, via, ns, name), Err(UnknownRegistry(host.to_owned())));
        };
        no(None, None, "evil.example/x/y", "evil.example");
        no(None, Some("evil.example"), "x/y", "evil.example");
        no(None, Some("Evil.Example"), "x/y", "evil.example");
    }

    #[test]
    fn qualified_names_resolve_to_their_registry() {
        let r = registries();
        let check = |name: &str, registry: &str, path: &str| {
            let (up, p) = r.resolve(&name.parse().unwrap());
            assert_eq!((up.registry(), p.as_str()), (registry, path), "{name}");
        };
        check("library/x", "127.0.0.1:5000", "library/x");
        check("hf.co/user/repo", "hf.co", "user/repo");
        check("ghcr.io/o/a/b", "ghcr.io", "o/a/b");
        // Only configured names are split off: anything else is the default's own path.
        check("other.io/x", "127.0.0.1:5000", "other.io/x");
        assert_eq!(r.all().len(), 4, "default, hf.co, ghcr.io, docker.io");
        assert_eq!(
            r.names(),
            [
                "docker.io",
                "ghcr.io",
                "hf.co",
                "quay.io",
                "registry-1.docker.io"
            ],
            "names clients may use, the default's own left out"
        );
    }
}
