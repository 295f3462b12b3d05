//! Configuration values that are more than strings, parsed once when the configuration is
//! read (so a bad one stops start-up with a message naming its key), and handed to the
//! modules below already typed: they never parse them again.
//!
//! Each is written in TOML, the environment and flags as the string it parses from.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use url::Url;

/// A registry's base URL: http or https, a host, nothing after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegistryUrl(Url);

impl RegistryUrl {
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// `host[:port]`: how the registry is named in cached tags and logs.
    pub fn host_port(&self) -> String {
        let host = self.0.host_str().unwrap_or_default();
        match self.0.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        }
    }
}

impl FromStr for RegistryUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |reason: &str| format!("{s:?} is not a registry URL: {reason}");
        let u = Url::parse(s).map_err(|_| bad("not a URL"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        if u.host_str().is_none_or(str::is_empty) {
            return Err(bad("it has no host"));
        }
        if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
            return Err(bad("it must not carry a query, fragment or credentials"));
        }
        if u.path() != "/" && !u.path().is_empty() {
            return Err(bad("registries live at the root; give no path"));
        }
        Ok(RegistryUrl(u))
    }
}

/// The host name a registry is known by (`hf.co`, `ghcr.io`, `docker.io`): how clients
/// name it (a model name's first part, containerd's `?ns=`, a `CONNECT` target) and the
/// namespace of its cached tags. Lowercase DNS labels with at least one dot, no port: it
/// must fit as the first part of a repository path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegistryName(String);

impl RegistryName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL a name means when none is given: `https://<name>`, except Docker Hub, whose
    /// registry API lives at `registry-1.docker.io`.
    pub fn default_url(&self) -> RegistryUrl {
        let host = match self.0.as_str() {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            h => h,
        };
        // invariant: a validated host name makes a valid https URL.
        format!("https://{host}")
            .parse()
            .expect("a host name makes a registry URL")
    }
}

impl FromStr for RegistryName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let host = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
        };
        if host.len() > 253 || !host.contains('.') || !host.split('.').all(label_ok) {
            return Err(format!(
                "{s:?} is not a registry host name (such as hf.co or ghcr.io; no scheme, port or path)"
            ));
        }
        Ok(RegistryName(host))
    }
}

impl fmt::Display for RegistryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `HOST[=URL]`, as `--registry` and `SHOAL_REGISTRIES` take it: a registry and where it
/// is (`https://HOST` when no URL is given).
pub fn registry_spec(s: &str) -> Result<(RegistryName, RegistryUrl), String> {
    let (name, url) = match s.split_once('=') {
        Some((n, u)) => (n, Some(u.trim())),
        None => (s, None),
    };
    let name: RegistryName = name.parse()?;
    let url = match url {
        Some(u) => u.parse()?,
        None => name.default_url(),
    };
    Ok((name, url))
}

/// Another shoal node: `http(s)://host[:port]`, kept in that normal form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PeerUrl(String);

impl PeerUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PeerUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |reason: &str| format!("{s:?} is not a peer URL: {reason}");
        let u = Url::parse(s).map_err(|_| bad("not a URL"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        if !(u.path().is_empty() || u.path() == "/") || u.query().is_some() {
            return Err(bad("give only scheme, host and port"));
        }
        Ok(PeerUrl(match u.port() {
            Some(p) => format!("{}://{host}:{p}", u.scheme()),
            None => format!("{}://{host}", u.scheme()),
        }))
    }
}

/// `host=ip[:port]`: connect to `addr` for `host`, bypassing DNS. Port 0 means the URL's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pin {
    /// Lowercase, without a final dot.
    pub host: String,
    pub addr: SocketAddr,
}

impl FromStr for Pin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (host, addr) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not HOST=IP or HOST=IP:PORT"))?;
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        {
            return Err(format!("{s:?}: {host:?} is not a host name"));
        }
        let addr = addr.trim();
        let addr = addr
            .parse::<SocketAddr>()
            .or_else(|_| {
                addr.parse::<std::net::IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 0))
            })
            .map_err(|_| format!("{s:?}: {addr:?} is not an IP address or IP:PORT"))?;
        Ok(Pin { host, addr })
    }
}

/// `host`, `host:port` or `*.domain[:port]`: lowercase host (with its `*.`), port 443
/// when none is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPattern {
    pub host: String,
    pub port: u16,
}

impl HostPattern {
    /// Whether `host` (lowercase, no final dot) on `port` matches.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        port == self.port
            && match self.host.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                None => host == self.host,
            }
    }
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("{s:?}: {p:?} is not a port"))?,
            ),
            None => (s, 443),
        };
        let bare = host.strip_prefix("*.").unwrap_or(host);
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if bare.split('.').all(label_ok) {
            Ok(HostPattern {
                host: host.to_ascii_lowercase(),
                port,
            })
        } else {
            Err(format!("{s:?} is not a host name, host:port or *.domain"))
        }
    }
}

macro_rules! string_forms {
    ($($t:ident),*) => {$(
        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.to_string()
            }
        }
    )*};
}
string_forms!(RegistryUrl, RegistryName, PeerUrl, Pin, HostPattern);

impl fmt::Display for RegistryUrl {
    /// Without the trailing slash the `url` crate adds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str().trim_end_matches('/'))
    }
}

impl fmt::Display for PeerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.addr.port() == 0 {
            write!(f, "{}={}", self.host, self.addr.ip())
        } else {
            write!(f, "{}={}", self.host, self.addr)
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port == 443 {
            f.write_str(&self.host)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_urls() {
        for ok in [
            "https://registry.ollama.ai",
            "http://127.0.0.1:5000",
            "https://r.example/",
        ] {
            let u: RegistryUrl = ok.parse().unwrap();
            assert_eq!(u.to_string(), ok.trim_end_matches('/'));
        }
        assert_eq!(
            "http://127.0.0.1:5000"
                .parse::<RegistryUrl>()
                .unwrap()
                .host_port(),
            "127.0.0.1:5000"
        );
        for bad in [
            "",
            "registry.ollama.ai",
            "ftp://x",
            "https://",
            "https://x/v2",
            "https://u:p@x",
            "https://x/?a=1",
        ] {
            let e = bad.parse::<RegistryUrl>().unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn registry_names_and_specs() {
        let n: RegistryName = "HF.co.".parse().unwrap();
        assert_eq!(n.as_str(), "hf.co");
        assert_eq!(n.default_url().to_string(), "https://hf.co");
        let (n, u) = registry_spec("docker.io").unwrap();
        assert_eq!(
            (n.as_str(), u.to_string().as_str()),
            ("docker.io", "https://registry-1.docker.io")
        );
        let (n, u) = registry_spec("ghcr.io=http://127.0.0.1:5000").unwrap();
        assert_eq!(
            (n.as_str(), u.host_port().as_str()),
            ("ghcr.io", "127.0.0.1:5000")
        );
        for bad in [
            "",
            "localhost",
            "ghcr.io:443",
            "https://ghcr.io",
            "a/b.c",
            "-x.io",
            "a..b",
            "x.io=ftp://y",
        ] {
            let e = registry_spec(bad).unwrap_err();
            assert!(e.contains("registry"), "{bad}: {e}");
        }
    }

    #[test]
    fn peer_urls() {
        let p: PeerUrl = "http://box2:9200/".parse().unwrap();
        assert_eq!(p.as_str(), "http://box2:9200");
        for bad in ["box2:9200", "ftp://x", "http://x/path", "http://x?q=1", ""] {
            assert!(bad.parse::<PeerUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn pins() {
        let p: Pin = "Registry.Ollama.AI.=1.2.3.4".parse().unwrap();
        assert_eq!(p.host, "registry.ollama.ai");
        assert_eq!(p.addr, "1.2.3.4:0".parse().unwrap());
        assert_eq!(p.to_string(), "registry.ollama.ai=1.2.3.4");
        let p: Pin = "h=[::1]:8443".parse().unwrap();
        assert_eq!(p.to_string(), "h=[::1]:8443");
        for bad in ["h", "=1.2.3.4", "h=notanip", "h_x=1.2.3.4"] {
            assert!(bad.parse::<Pin>().is_err(), "{bad}");
        }
    }

    #[test]
    fn host_patterns() {
        let p: HostPattern = "*.r2.cloudflarestorage.com".parse().unwrap();
        assert!(p.matches("abc.r2.cloudflarestorage.com", 443));
        assert!(!p.matches("r2.cloudflarestorage.com", 443));
        assert!(!p.matches("abc.r2.cloudflarestorage.com", 8443));
        let p: HostPattern = "Host:8443".parse().unwrap();
        assert!(p.matches("host", 8443));
        assert_eq!(p.to_string(), "host:8443");
        for bad in ["", "a..b", "host:0", "host:x", "*.", "a b"] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad}");
        }
    }
}
