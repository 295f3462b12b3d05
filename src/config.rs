//! Configuration: one serde tree, built from layers with the precedence
//! defaults < TOML file < `SHOAL_*` environment < command-line flags.
//!
//! Each layer is merged and checked on its own, so an error names the key and the place
//! it came from (file, variable or flag). Unknown keys are refused everywhere. The result
//! is validated once and then immutable; modules receive their own sub-struct.
//!
//! Environment variables map to keys by lowercasing and splitting nested tables on `__`:
//! `SHOAL_DATA_DIR` → `data_dir`, `SHOAL_FETCH__CONNECTIONS` → `fetch.connections`.
//! `SHOAL_CONFIG` names the config file, like `--config`. Unknown `SHOAL_*` variables are
//! refused (a typo should not pass silently), except the service variables that Kubernetes
//! and Docker links inject for a service called "shoal" (`SHOAL_SERVICE_HOST`,
//! `SHOAL_PORT_9200_TCP`, ...), which are ignored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

mod values;

pub use values::{registry_spec, HostPattern, PeerUrl, Pin, RegistryName, RegistryUrl};

pub const ENV_PREFIX: &str = "SHOAL_";
const ENV_CONFIG: &str = "SHOAL_CONFIG";
const ENV_REGISTRIES: &str = "SHOAL_REGISTRIES";
pub const DEFAULT_UPSTREAM: &str = "https://registry.ollama.ai";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address for the registry API and admin endpoints.
    pub listen: SocketAddr,
    /// Blob files and the SQLite index.
    pub data_dir: PathBuf,
    /// The default registry: names without a host (`granite-code:8b`, Docker's
    /// `registry-mirrors`) and every intercepted host that is not a registry below.
    pub upstream: RegistryUrl,
    /// More registries, by the host name clients use: `[registries."ghcr.io"]`, with
    /// `url = "..."` where it is not `https://<host>` (`docker.io` means
    /// `https://registry-1.docker.io`). Built in: `hf.co` and `huggingface.co`.
    pub registries: BTreeMap<RegistryName, RegistryEntry>,
    /// Evict least-recently-used blobs beyond this total size. No limit when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cache_size: Option<ByteSize>,
    /// TCP address for BitTorrent peers (other shoal nodes, standard clients).
    pub bt_listen: SocketAddr,
    /// Other shoal nodes, `http://host:port` (LAN discovery finds more).
    pub peers: Vec<PeerUrl>,
    /// Also serve TLS here for the intercepted hosts (DNS mode: the site's DNS points
    /// registry.ollama.ai at this box). Off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_listen: Option<SocketAddr>,
    /// `host=ip[:port]` pins for shoal's own connections to upstream, so that a DNS
    /// override pointing the registry's name at this box does not loop back to it.
    pub resolve: Vec<Pin>,
    pub proxy: ProxyConfig,
    pub fetch: FetchConfig,
    pub p2p: P2pConfig,
    pub manifests: ManifestConfig,
    pub scrub: ScrubConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
}

/// One registry of `registries`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryEntry {
    /// Where its registry API is; `https://<host>` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<RegistryUrl>,
}

/// A registry as the modules below get it: its name and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    pub name: RegistryName,
    pub url: RegistryUrl,
}

/// How blobs are fetched from upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
    /// Parallel ranged connections per blob. A CDN caps each connection, so one stream is
    /// far slower than ollama's 16.
    pub connections: usize,
    /// Spans are not split below this size.
    pub min_span: ByteSize,
    /// A connection that delivers no bytes for this long is dropped and its range refetched.
    /// Must stay well under ollama's 30 s stall timer.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Budget for one manifest or metadata request, response headers included.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Attempts for manifest and metadata requests on transient failures.
    pub retries: u32,
    /// A fill that lands no byte for this long fails, and its clients get an error.
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
    /// Cap on all fetching from upstream together, bytes per second (e.g. "20MiB"), so a
    /// big prefetch does not fill the site's internet link. No cap when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<ByteSize>,
}

/// HTTPS-proxy mode (`CONNECT`) and DNS mode: which hosts are intercepted with shoal's CA,
/// which are tunnelled blindly, and (by omission) which are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Hosts whose TLS is terminated with a certificate from shoal's CA and whose registry
    /// API is served from the cache: `host`, `host:port` (default port 443) or
    /// `*.domain`. The upstream's own host is always added.
    pub intercept: Vec<HostPattern>,
    /// Hosts that `CONNECT` may reach through a blind tunnel (no interception, no
    /// caching): `host` or `host:port` (default port 443). Everything else is refused, so
    /// shoal is never an open proxy.
    pub allow: Vec<HostPattern>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            // The registry and the Cloudflare R2 host its blob redirects point to. shoal
            // never sends clients to the CDN itself, but intercepting it means no blob
            // fetch can bypass the cache.
            intercept: host_patterns(&["registry.ollama.ai", "*.r2.cloudflarestorage.com"]),
            // (Every host of `registries`, hf.co among them, is intercepted too.)
            // ollama's own site: sign-in keys, update checks and `ollama.com/...` names
            // are not registry traffic, but ollama fails without them. Hugging Face's other
            // hosts (its site, CDN): shoal follows hf.co's redirects there itself and never
            // sends clients to them, so they are only tunnelled.
            allow: host_patterns(&[
                "ollama.com",
                "www.ollama.com",
                "*.hf.co",
                "*.huggingface.co",
            ]),
        }
    }
}

/// Built-in patterns (valid by construction: a test parses the defaults).
fn host_patterns(list: &[&str]) -> Vec<HostPattern> {
    list.iter().filter_map(|h| h.parse().ok()).collect()
}

/// BitTorrent between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// A seeded blob with no peer for this long leaves the BitTorrent session (it is
    /// activated again, in about 0.5 s/GiB, when someone asks for it).
    #[serde(with = "humantime_serde")]
    pub idle_after: Duration,
    /// How often peers' catalogs are fetched.
    #[serde(with = "humantime_serde")]
    pub catalog_interval: Duration,
    /// A fill from peers that verifies no piece for this long hands the missing ranges to
    /// upstream. Well under ollama's 30 s stall timer.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// Find other shoal nodes on the LAN by multicast (and let them find this one).
    pub discovery: bool,
    /// Cap on BitTorrent uploads, bytes per second (e.g. "50MiB"), so seeding never fills
    /// the LAN. No cap when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_limit: Option<ByteSize>,
    /// Cap on BitTorrent downloads from peers, bytes per second. No cap when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_limit: Option<ByteSize>,
    /// When set, catalog and tracker requests must carry it: boxes outside the swarm cannot
    /// list what this node holds or find its peers. See docs/SWARM.md for what it does not do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swarm_key: Option<String>,
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            idle_after: Duration::from_secs(300),
            catalog_interval: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(5),
            discovery: true,
            upload_limit: None,
            download_limit: None,
            swarm_key: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManifestConfig {
    /// How long a manifest fetched by tag is served before it is revalidated upstream.
    #[serde(with = "humantime_serde")]
    pub tag_ttl: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `shoal=debug`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 9200)),
            data_dir: default_data_dir(),
            // invariant: a constant URL that parses (`defaults_serve` checks it).
            upstream: DEFAULT_UPSTREAM
                .parse()
                .expect("the default upstream parses"),
            registries: ["hf.co", "huggingface.co"]
                .into_iter()
                .filter_map(|h| h.parse().ok())
                .map(|h| (h, RegistryEntry::default()))
                .collect(),
            max_cache_size: None,
            bt_listen: SocketAddr::from(([0, 0, 0, 0], 6881)),
            peers: Vec::new(),
            tls_listen: None,
            resolve: Vec::new(),
            proxy: ProxyConfig::default(),
            fetch: FetchConfig::default(),
            p2p: P2pConfig::default(),
            manifests: ManifestConfig::default(),
            scrub: ScrubConfig::default(),
            admin: AdminConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            connections: 16,
            min_span: ByteSize::mib(4),
            stall_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retries: 3,
            give_up_after: Duration::from_secs(60),
            rate_limit: None,
        }
    }
}

/// The background scrub: every cached blob is hashed again within each period, at the
/// slowest rate that does it, and one that fails is dropped and fetched again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubConfig {
    /// A whole pass within this period; `0s` switches the scrub off.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig {
            period: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Admin requests that change something (`shoal verify`, ...) carry
/// `Authorization: Bearer <token>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The token. When absent, one is made on first start and kept in
    /// `<data-dir>/admin.token` (mode 0600), where the CLI finds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Ask for the token on reads too (the dashboard's data, stats, models, peers,
    /// `/metrics`), not only on changes. Off: reads are open on the LAN. Health, the
    /// registry API and what peers ask each other are never behind it.
    pub token_on_reads: bool,
}

impl Default for ManifestConfig {
    fn default() -> Self {
        ManifestConfig {
            // Short: a burst of pulls (a classroom) still costs one revalidation, and an
            // update upstream shows within half a minute.
            tag_ttl: Duration::from_secs(30),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// `$XDG_DATA_HOME/shoal`, else `~/.local/share/shoal`, else `./shoal-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("shoal");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h).join(".local/share/shoal");
    }
    PathBuf::from("shoal-data")
}

/// `shoal serve` flags. Every field is optional so that an absent flag leaves the lower
/// layers alone; defaults live in `Config::default`, never here.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML config file (also SHOAL_CONFIG).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:9200].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Directory for blobs and the index [default: ~/.local/share/shoal].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The default registry, for names without a host [default: https://registry.ollama.ai].
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// Another registry to cache, HOST[=URL], e.g. ghcr.io or docker.io (repeatable; also
    /// SHOAL_REGISTRIES, comma-separated). hf.co and huggingface.co are built in.
    #[arg(long = "registry", value_name = "HOST[=URL]")]
    pub registries: Vec<String>,
    /// Evict least-recently-used blobs beyond this size, e.g. 500GiB.
    #[arg(long, value_name = "SIZE")]
    pub max_cache_size: Option<String>,
    /// BitTorrent listen address [default: 0.0.0.0:6881].
    #[arg(long, value_name = "ADDR")]
    pub bt_listen: Option<String>,
    /// Another shoal node, http://host:port (repeatable; also SHOAL_PEERS, comma-separated).
    #[arg(long = "peer", value_name = "URL")]
    pub peers: Vec<String>,
    /// Do not look for other shoal nodes on the LAN (multicast discovery is on by default).
    #[arg(long)]
    pub no_discovery: bool,
    /// Also serve TLS for the intercepted hosts on this address (DNS mode), e.g. 0.0.0.0:443.
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Option<String>,
    /// Pin a host for shoal's own upstream connections, HOST=IP[:PORT] (repeatable; also
    /// SHOAL_RESOLVE, comma-separated). Needed in DNS mode.
    #[arg(long = "resolve", value_name = "HOST=IP")]
    pub resolve: Vec<String>,
    /// Log format [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Print the resolved configuration and exit.
    #[arg(long)]
    pub check_config: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("flag --{flag}: {message}")]
    Flag { flag: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

impl Config {
    /// Builds the configuration from flags and an explicit environment (tests pass their
    /// own; `main` passes `std::env::vars()`).
    pub fn load(
        args: &ServeArgs,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !is_injected_service_var(k))
            .collect();
        let mut table = defaults()?;

        let file = args.config.clone().or_else(|| {
            env.iter()
                .find(|(k, _)| k == ENV_CONFIG)
                .map(|(_, v)| PathBuf::from(v))
        });
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            lay_file(&mut table, &text).map_err(|message| ConfigError::File { path, message })?;
        }

        for (var, value) in env.iter().filter(|(k, _)| k != ENV_CONFIG) {
            if var == ENV_REGISTRIES {
                let specs = value.split(',').map(str::trim).filter(|p| !p.is_empty());
                lay_registries(&mut table, specs).map_err(|message| ConfigError::Env {
                    var: var.clone(),
                    message,
                })?;
                continue;
            }
            if let Some(key) = comma_list_key(var) {
                let list = value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| toml::Value::String(p.to_owned()))
                    .collect();
                set_checked(&mut table, &key, toml::Value::Array(list)).map_err(|message| {
                    ConfigError::Env {
                        var: var.clone(),
                        message,
                    }
                })?;
                continue;
            }
            let key: Vec<String> = var[ENV_PREFIX.len()..]
                .to_lowercase()
                .split("__")
                .map(str::to_owned)
                .collect();
            set_typed(&mut table, &key, value).map_err(|message| ConfigError::Env {
                var: var.clone(),
                message,
            })?;
        }

        let flags: [(&str, &[&str], Option<String>); 7] = [
            ("listen", &["listen"], args.listen.clone()),
            (
                "data-dir",
                &["data_dir"],
                args.data_dir
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned()),
            ),
            ("upstream", &["upstream"], args.upstream.clone()),
            (
                "max-cache-size",
                &["max_cache_size"],
                args.max_cache_size.clone(),
            ),
            ("bt-listen", &["bt_listen"], args.bt_listen.clone()),
            ("tls-listen", &["tls_listen"], args.tls_listen.clone()),
            (
                "log-format",
                &["log", "format"],
                args.log_format.map(|f| match f {
                    LogFormat::Text => "text".to_owned(),
                    LogFormat::Json => "json".to_owned(),
                }),
            ),
        ];
        if args.no_discovery {
            set_value(
                &mut table,
                &["p2p".to_owned(), "discovery".to_owned()],
                toml::Value::Boolean(false),
            );
        }
        for (flag, key, list) in [
            ("peer", "peers", &args.peers),
            ("resolve", "resolve", &args.resolve),
        ] {
            if list.is_empty() {
                continue;
            }
            let list = list
                .iter()
                .map(|p| toml::Value::String(p.clone()))
                .collect();
            set_checked(&mut table, &[key.to_owned()], toml::Value::Array(list)).map_err(
                |message| ConfigError::Flag {
                    flag: flag.to_owned(),
                    message,
                },
            )?;
        }
        lay_registries(&mut table, args.registries.iter().map(String::as_str)).map_err(
            |message| ConfigError::Flag {
                flag: "registry".to_owned(),
                message,
            },
        )?;
        for (flag, key, value) in flags {
            let Some(value) = value else { continue };
            let key: Vec<String> = key.iter().map(|s| s.to_string()).collect();
            set_checked(&mut table, &key, toml::Value::String(value)).map_err(|message| {
                ConfigError::Flag {
                    flag: flag.to_owned(),
                    message,
                }
            })?;
        }

        finish(table)
    }

    /// The defaults with a config file's text laid over them, as `load` reads a file (and
    /// what the config fuzz target feeds).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut table = defaults()?;
        lay_file(&mut table, text).map_err(|message| ConfigError::Invalid {
            key: "config",
            message,
        })?;
        finish(table)
    }

    /// Checks that go beyond types: ranges and cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: String| Err(ConfigError::Invalid { key, message });
        if self.p2p.swarm_key.as_deref().is_some_and(|k| {
            k.len() < 8
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        }) {
            return bad(
                "p2p.swarm_key",
                "must be at least 8 characters of A-Z a-z 0-9 - _ .".into(),
            );
        }
        if self
            .p2p
            .upload_limit
            .is_some_and(|l| l.as_u64() == 0 || l.as_u64() > u32::MAX as u64)
        {
            return bad(
                "p2p.upload_limit",
                "must be between 1 B/s and 4GiB/s".into(),
            );
        }
        if self
            .fetch
            .rate_limit
            .is_some_and(|l| l.as_u64() < 64 * 1024)
        {
            return bad(
                "fetch.rate_limit",
                "must be at least 64KiB (bytes per second)".into(),
            );
        }
        if self.p2p.stall_timeout.is_zero() || self.p2p.stall_timeout > Duration::from_secs(20) {
            return bad("p2p.stall_timeout", "must be between 1ms and 20s".into());
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir", "must not be empty".into());
        }
        if !(1..=64).contains(&self.fetch.connections) {
            return bad(
                "fetch.connections",
                format!("{} is out of range 1..=64", self.fetch.connections),
            );
        }
        if self.fetch.min_span.as_u64() < 64 * 1024 {
            return bad("fetch.min_span", "must be at least 64KiB".into());
        }
        // ollama restarts a part after 30 s without bytes; shoal has to switch before that.
        if self.fetch.stall_timeout.is_zero() || self.fetch.stall_timeout > Duration::from_secs(25)
        {
            return bad(
                "fetch.stall_timeout",
                format!(
                    "{} must be between 1ms and 25s (ollama gives up on a part after 30s)",
                    humantime::format_duration(self.fetch.stall_timeout)
                ),
            );
        }
        for (key, d) in [
            ("fetch.connect_timeout", self.fetch.connect_timeout),
            ("fetch.request_timeout", self.fetch.request_timeout),
            ("fetch.give_up_after", self.fetch.give_up_after),
            ("p2p.idle_after", self.p2p.idle_after),
            ("p2p.catalog_interval", self.p2p.catalog_interval),
        ] {
            if d.is_zero() {
                return bad(key, "must be greater than zero".into());
            }
        }
        if self.max_cache_size.is_some_and(|s| s.as_u64() == 0) {
            return bad("max_cache_size", "must be greater than zero".into());
        }
        if let Err(e) = self.log.level.parse::<tracing_subscriber::EnvFilter>() {
            return bad("log.level", e.to_string());
        }
        Ok(())
    }

    /// Every registry of `registries`, with its URL.
    pub fn registry_list(&self) -> Vec<Registry> {
        self.registries
            .iter()
            .map(|(name, e)| Registry {
                name: name.clone(),
                url: e.url.clone().unwrap_or_else(|| name.default_url()),
            })
            .collect()
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }

    pub fn index_path(&self) -> PathBuf {
        self.data_dir.join("index.sqlite")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// Adds `HOST[=URL]` registries to the table (a later layer overrides an earlier URL).
fn lay_registries<'a>(
    table: &mut toml::Table,
    specs: impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    for spec in specs {
        let (name, url) = registry_spec(spec)?;
        let key = ["registries".to_owned(), name.to_string(), "url".to_owned()];
        set_checked(table, &key, toml::Value::String(url.to_string()))?;
    }
    Ok(())
}

/// Variables holding a list, written comma-separated (`SHOAL_PEERS=http://a:9200,http://b:9200`),
/// and the key each sets.
fn comma_list_key(var: &str) -> Option<Vec<String>> {
    let key: &[&str] = match var {
        "SHOAL_PEERS" => &["peers"],
        "SHOAL_RESOLVE" => &["resolve"],
        "SHOAL_PROXY__INTERCEPT" => &["proxy", "intercept"],
        "SHOAL_PROXY__ALLOW" => &["proxy", "allow"],
        _ => return None,
    };
    Some(key.iter().map(|k| (*k).to_owned()).collect())
}

/// Variables an orchestrator sets for a service named "shoal", not meant for shoal itself.
fn is_injected_service_var(name: &str) -> bool {
    let rest = &name[ENV_PREFIX.len().min(name.len())..];
    rest == "PORT" || rest.starts_with("PORT_") || rest.starts_with("SERVICE_")
}

fn defaults() -> Result<toml::Table, ConfigError> {
    toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Invalid {
        key: "defaults",
        message: e.to_string(),
    })
}

/// Lays a config file's text over `table`, refusing unknown keys and wrong types.
fn lay_file(table: &mut toml::Table, text: &str) -> Result<(), String> {
    let layer: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    merge(table, layer);
    check(table)
}

/// The typed, validated configuration a layered table describes.
fn finish(table: toml::Table) -> Result<Config, ConfigError> {
    let config: Config = table
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid {
            key: "config",
            message: e.message().to_owned(),
        })?;
    config.validate()?;
    Ok(config)
}

fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (k, v) in layer {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(l)) => merge(b, l),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn set_value(table: &mut toml::Table, key: &[String], value: toml::Value) {
    let Some((last, parents)) = key.split_last() else {
        return;
    };
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        t = next;
    }
    t.insert(last.clone(), value);
}

/// Sets an environment value: as TOML when it parses as a number, bool or array, so that
/// `SHOAL_FETCH__CONNECTIONS=8` is an integer; as a string otherwise or when the typed
/// reading does not fit the field.
fn set_typed(table: &mut toml::Table, key: &[String], raw: &str) -> Result<(), String> {
    let typed = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_str() && !v.is_table());
    let mut last_err = String::new();
    for value in typed
        .into_iter()
        .chain([toml::Value::String(raw.to_owned())])
    {
        match set_checked(table, key, value) {
            Ok(()) => return Ok(()),
            Err(e) => last_err = e,
        }
    }
    Err(last_err)
}

/// Sets `key` to `value` only if the whole table still deserializes; on an error the table
/// is left as it was and the message says why.
fn set_checked(table: &mut toml::Table, key: &[String], value: toml::Value) -> Result<(), String> {
    let mut next = table.clone();
    set_value(&mut next, key, value);
    check(&next)?;
    *table = next;
    Ok(())
}

fn check(table: &toml::Table) -> Result<(), String> {
    Config::deserialize(table.clone())
        .map(|_| ())
        .map_err(|e| e.message().to_owned())
}

#[cfg(test)]
mod tests;
