//! The real software the end-to-end tests run around shoal: child processes bounded in
//! time and kept on loopback, Debian's `docker-registry` as an upstream, and oras-py
//! (`tests/e2e/oras_client.py`) as an OCI client, and the real `curl` and containerd's
//! `ctr`. Used by `e2e_registry`, `e2e_clients` and `e2e_auth`.

use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Method;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::try_request;

pub const ORAS_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/oras_client.py");
/// Makes a small multi-platform OCI image layout (see `oci_image`).
pub const OCI_IMAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/oci_image.py");
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Bound for any one child process (a pull, a push, a curl).
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Prerequisites

/// Whether `REQUIRE_E2E_TOOLS=1` asks for a missing tool to fail the test.
pub fn tools_required() -> bool {
    std::env::var("REQUIRE_E2E_TOOLS").as_deref() == Ok("1")
}

/// Says what is missing and returns, so that the test is skipped; panics instead when
/// `REQUIRE_E2E_TOOLS=1`.
pub fn skip_for_missing(test: &str, missing: &[String]) {
    let what = format!("missing {}", missing.join("; "));
    if tools_required() {
        panic!("{test}: {what} (REQUIRE_E2E_TOOLS=1: failing instead of skipping)");
    }
    // Straight to stderr: libtest swallows `eprintln!` output of passing tests.
    let _ = writeln!(std::io::stderr(), "{test}: SKIPPED, {what}");
}

/// Whether `program --version` runs and exits 0. When it does not, the test is skipped
/// (or fails, with `REQUIRE_E2E_TOOLS=1`), `install` saying how to get it.
pub fn tool_available(test: &str, program: &str, install: &str) -> bool {
    let ok = std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip_for_missing(test, &[format!("{program} ({install})")]);
    }
    ok
}

/// Whether `cmd` runs and exits 0 within `limit`.
pub async fn runs(cmd: Command, limit: Duration) -> bool {
    matches!(run(cmd, limit).await, Ok(o) if o.status.success())
}

/// Debian's `docker-registry`, if installed (also looked for in /usr/bin, in case PATH
/// lacks it).
pub async fn find_docker_registry() -> Option<PathBuf> {
    for cand in ["docker-registry", "/usr/bin/docker-registry"] {
        let mut cmd = Command::new(cand);
        cmd.arg("--version");
        if runs(cmd, Duration::from_secs(10)).await {
            return Some(PathBuf::from(cand));
        }
    }
    None
}

pub const DOCKER_REGISTRY_HINT: &str =
    "docker-registry (Debian's distribution registry): apt-get install docker-registry";

/// `find_docker_registry`; when it is not there, `DOCKER_REGISTRY_HINT` joins `missing`.
pub async fn need_docker_registry(missing: &mut Vec<String>) -> Option<PathBuf> {
    let registry = find_docker_registry().await;
    if registry.is_none() {
        missing.push(DOCKER_REGISTRY_HINT.to_owned());
    }
    registry
}

/// Whether python3 can import oras-py.
pub async fn oras_available() -> bool {
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import oras.client, oras.provider, oras.version; print(oras.version.__version__)",
    ]);
    runs(cmd, Duration::from_secs(20)).await
}

pub const ORAS_HINT: &str = "python3 with the oras package (oras-py 0.2.x): pip install oras";

/// What every registry end-to-end test needs, docker-registry and oras-py: the registry's
/// path, and a line in `missing` for each one that is not there.
pub async fn registry_tools(missing: &mut Vec<String>) -> Option<PathBuf> {
    let registry = need_docker_registry(missing).await;
    if !oras_available().await {
        missing.push(ORAS_HINT.to_owned());
    }
    registry
}

/// Whether `program --version` runs; when it does not, `hint` joins `missing`.
pub async fn need(program: &str, hint: &str, missing: &mut Vec<String>) -> bool {
    let mut cmd = Command::new(program);
    cmd.arg("--version");
    let ok = runs(cmd, Duration::from_secs(10)).await;
    if !ok {
        missing.push(hint.to_owned());
    }
    ok
}

pub const HTPASSWD_HINT: &str =
    "htpasswd (docker-registry's users file): apt-get install apache2-utils";

/// Whether `htpasswd` runs (it has no `--version`: this makes one entry).
pub async fn htpasswd_available() -> bool {
    let mut cmd = Command::new("htpasswd");
    cmd.args(["-Bbn", "probe", "probe"]);
    runs(cmd, Duration::from_secs(10)).await
}

/// One line of an htpasswd file for `user` (bcrypt, which docker-registry requires).
pub async fn htpasswd_entry(user: &str, password: &str) -> String {
    let mut cmd = Command::new("htpasswd");
    cmd.args(["-Bbn", user, password]);
    let out = run(cmd, COMMAND_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("htpasswd: {e}"));
    assert!(out.status.success(), "htpasswd: {}", out.describe());
    out.stdout_str().trim().to_owned()
}

/// Where containerd's socket may be: its own service, or the one the Docker engine
/// starts for itself. `CONTAINERD_ADDRESS` (as `ctr` reads it) comes first.
pub const CONTAINERD_SOCKETS: [&str; 2] = [
    "/run/containerd/containerd.sock",
    "/var/run/docker/containerd/containerd.sock",
];

/// The socket of a containerd that `ctr` reaches, or `None` after adding what is
/// missing (ctr itself, or a running containerd) to `missing`.
pub async fn find_containerd(missing: &mut Vec<String>) -> Option<String> {
    let ctr_hint = "ctr (containerd's CLI): apt-get install containerd";
    if !need("ctr", ctr_hint, missing).await {
        return None;
    }
    let mut cands: Vec<String> = std::env::var("CONTAINERD_ADDRESS").into_iter().collect();
    cands.extend(CONTAINERD_SOCKETS.iter().map(|s| s.to_string()));
    for sock in cands {
        let mut cmd = Command::new("ctr");
        cmd.args(["--address", &sock, "--timeout", "5s", "version"]);
        if runs(cmd, Duration::from_secs(15)).await {
            return Some(sock);
        }
    }
    missing.push(format!(
        "a running containerd that ctr can reach (tried CONTAINERD_ADDRESS and {}; \
         start containerd, as root)",
        CONTAINERD_SOCKETS.join(", ")
    ));
    None
}

// ---------------------------------------------------------------------------------------
// Child processes

/// Kills the child when dropped, so that a test timeout or panic leaves no process behind.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn describe(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        )
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs a command to completion without blocking the runtime. Output goes to anonymous
/// temp files (a pipe could fill up while nobody reads it).
pub async fn run(mut cmd: Command, limit: Duration) -> Result<Output, String> {
    let desc = format!("{cmd:?}");
    let mut out = tempfile::tempfile().map_err(|e| format!("{desc}: temp file: {e}"))?;
    let mut err = tempfile::tempfile().map_err(|e| format!("{desc}: temp file: {e}"))?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(err.try_clone().map_err(|e| e.to_string())?);
    let mut child = ChildGuard(cmd.spawn().map_err(|e| format!("{desc}: {e}"))?);
    let deadline = tokio::time::Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.0.try_wait().map_err(|e| format!("{desc}: {e}"))? {
            break s;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{desc}: still running after {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let read_back = |f: &mut std::fs::File| {
        let mut v = Vec::new();
        f.rewind().and_then(|_| f.read_to_end(&mut v)).map(|_| v)
    };
    Ok(Output {
        status,
        stdout: read_back(&mut out).map_err(|e| format!("{desc}: {e}"))?,
        stderr: read_back(&mut err).map_err(|e| format!("{desc}: {e}"))?,
    })
}

/// Runs `prog args` on loopback only, bounded; the output whatever the exit status.
pub async fn exec(prog: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    no_proxy(&mut cmd);
    run(cmd, COMMAND_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{prog} {args:?}: {e}"))
}

/// As `exec`, and panics unless it exits 0.
pub async fn exec_ok(prog: &str, args: &[&str]) -> Output {
    let out = exec(prog, args).await;
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}",
        out.describe()
    );
    out
}

/// `skopeo` with no signature policy file needed (`--insecure-policy`: nothing here is
/// signed); the output whatever the exit status.
pub async fn skopeo(args: &[&str]) -> Output {
    let mut all = vec!["--insecure-policy"];
    all.extend_from_slice(args);
    exec("skopeo", &all).await
}

/// As `skopeo`, and panics unless it exits 0.
pub async fn skopeo_ok(args: &[&str]) -> Output {
    let out = skopeo(args).await;
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        out.describe()
    );
    out
}

/// `skopeo copy --all` of the OCI layout `layout`'s `tag` into `registry` (host:port,
/// plain HTTP) as `repo:tag`, with `creds` (user:password) if given.
pub async fn skopeo_copy(
    layout: &Path,
    registry: &str,
    repo: &str,
    tag: &str,
    creds: Option<&str>,
) {
    let src = format!("oci:{}:{tag}", layout.display());
    let dest = format!("docker://{registry}/{repo}:{tag}");
    let mut args = vec!["copy", "--all", "--dest-tls-verify=false"];
    if let Some(c) = creds {
        args.extend_from_slice(&["--dest-creds", c]);
    }
    args.extend_from_slice(&[&src, &dest]);
    skopeo_ok(&args).await;
}

/// Runs a command from a `Drop` (no runtime there), bounded in time; errors are ignored:
/// this is clean-up.
pub fn run_blocking(prog: &str, args: &[&str], limit: Duration) -> Option<String> {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    no_proxy(&mut cmd);
    let mut out = tempfile::tempfile().ok()?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().ok()?)
        .stderr(Stdio::null());
    let mut child = ChildGuard(cmd.spawn().ok()?);
    let deadline = std::time::Instant::now() + limit;
    while child.0.try_wait().ok()?.is_none() {
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut s = String::new();
    out.rewind().ok()?;
    out.read_to_string(&mut s).ok()?;
    Some(s)
}

/// A log file of a child process (shoal's stderr), whose last lines are shown if the test
/// fails.
pub struct LogOnPanic {
    pub what: &'static str,
    pub path: PathBuf,
}

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- {} log (last lines)", self.what);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// Keeps every request on loopback whatever proxy the environment names.
pub fn no_proxy(cmd: &mut Command) {
    for v in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("NO_PROXY", "*").env("no_proxy", "*");
}

// ---------------------------------------------------------------------------------------
// docker-registry

/// The realm of a registry started with `Registry::start_htpasswd`, as its
/// `WWW-Authenticate: Basic realm="..."` challenge names it.
pub const REGISTRY_REALM: &str = "shoal-test";

/// A docker-registry child process on 127.0.0.1, storing into a temp dir. Killed on drop.
pub struct Registry {
    child: Option<ChildGuard>,
    pub addr: String,
    dir: tempfile::TempDir,
    /// Whether it asks for Basic credentials (htpasswd): then `GET /v2/` answers 401.
    auth: bool,
}

enum NotReady {
    /// The process ended (most likely a race for the port it was given).
    Exited(String),
    Timeout(String),
}

impl Registry {
    pub async fn start(bin: &Path) -> Registry {
        Registry::start_opts(bin, None).await
    }

    /// A registry that serves only the users of `htpasswd` (an htpasswd file's content,
    /// bcrypt: `htpasswd_entry`), with Basic auth in realm `REGISTRY_REALM`; anonymous
    /// requests get 401 and a Basic challenge.
    pub async fn start_htpasswd(bin: &Path, htpasswd: &str) -> Registry {
        Registry::start_opts(bin, Some(htpasswd)).await
    }

    async fn start_opts(bin: &Path, htpasswd: Option<&str>) -> Registry {
        // The port is found free, released, then handed to the registry: another process
        // can take it in between, so a registry that exits at once is retried.
        let mut last = String::new();
        for _ in 0..3 {
            let mut reg = Registry::spawn(bin, htpasswd);
            match reg.wait_ready().await {
                Ok(()) => return reg,
                Err(NotReady::Exited(log)) => last = log,
                Err(NotReady::Timeout(log)) => {
                    panic!("docker-registry did not answer GET /v2/ in time; its log:\n{log}")
                }
            }
        }
        panic!("docker-registry exited at start-up three times; its last log:\n{last}");
    }

    fn spawn(bin: &Path, htpasswd: Option<&str>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", super::free_port());
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {data}\n\
             http:\n  addr: {addr}\n  secret: shoal-e2e-test\n",
            data = dir.path().join("data").display(),
        );
        if let Some(users) = htpasswd {
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, format!("{}\n", users.trim_end())).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: {REGISTRY_REALM}\n    path: {}\n",
                path.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // distribution lets REGISTRY_* variables override the config file.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(k);
            }
        }
        let child = ChildGuard(cmd.spawn().expect("spawn docker-registry"));
        Registry {
            child: Some(child),
            addr,
            dir,
            auth: htpasswd.is_some(),
        }
    }

    async fn wait_ready(&mut self) -> Result<(), NotReady> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let url = format!("{}/v2/", self.url());
        loop {
            if let Ok(r) = try_request(Method::GET, &url, &[]).await {
                if r.status == 200 || (self.auth && r.status == 401) {
                    return Ok(());
                }
            }
            let exited = match self.child.as_mut() {
                Some(c) => !matches!(c.0.try_wait(), Ok(None)),
                None => true,
            };
            if exited {
                return Err(NotReady::Exited(self.log()));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(NotReady::Timeout(self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Kills the registry and waits until it is gone.
    pub fn stop(&mut self) {
        drop(self.child.take());
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- docker-registry log (last lines)");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// oras-py

/// Runs `tests/e2e/oras_client.py` and returns its JSON report; panics unless it says ok.
pub async fn oras(args: &[&str], cwd: &Path) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(ORAS_CLIENT)
        .args(args)
        .current_dir(cwd)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    no_proxy(&mut cmd);
    let out = run(cmd, COMMAND_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("oras {args:?}: {e}"));
    let report = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str::<Value>(l).ok());
    match report {
        Some(v) if out.status.success() && v["ok"] == true => v,
        _ => panic!("oras {args:?} failed: {}", out.describe()),
    }
}

/// What oras pulled, checked against what was pushed; every request must have gone to
/// `host` and succeeded.
pub fn check_pull(report: &Value, outdir: &Path, files: &[(&str, &[u8])], host: &str) {
    let pulled = report["files"].as_array().expect("files in the report");
    assert_eq!(pulled.len(), files.len(), "{report}");
    for (name, want) in files {
        let got = std::fs::read(outdir.join(name))
            .unwrap_or_else(|e| panic!("pulled file {name}: {e}; report {report}"));
        assert!(
            got == *want,
            "{name}: pulled {} bytes (sha256 {}), pushed {} bytes (sha256 {})",
            got.len(),
            sha256(&got),
            want.len(),
            sha256(want)
        );
    }
    for r in report["requests"]
        .as_array()
        .expect("requests in the report")
    {
        let url = r["url"].as_str().unwrap_or("");
        assert!(
            url.starts_with(&format!("http://{host}/")),
            "request bypassed {host}: {r}"
        );
        assert_eq!(r["status"], 200, "{r}");
    }
}

// ---------------------------------------------------------------------------------------
// curl

/// A response as curl received it (the last one, when it wrote several).
pub struct CurlResp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CurlResp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Status, headers and the start of the body, for assertion messages.
    pub fn describe(&self) -> String {
        let n = self.body.len().min(300);
        format!(
            "{} {:?} {:?}",
            self.status,
            self.headers,
            String::from_utf8_lossy(&self.body[..n])
        )
    }
}

/// One request with the real curl binary (no config file, no proxy, no redirects); its
/// files go into `dir`. Panics if curl itself fails (not on an HTTP error status).
pub async fn curl(dir: &Path, args: &[&str], url: &str) -> CurlResp {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let body = dir.join(format!("curl-{n}.body"));
    let heads = dir.join(format!("curl-{n}.headers"));
    let mut cmd = Command::new("curl");
    cmd.args(["-q", "-sS", "--noproxy", "*", "--max-time", "30", "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&heads)
        .args(args)
        .arg(url);
    no_proxy(&mut cmd);
    let out = run(cmd, COMMAND_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("curl {args:?} {url}: {e}"));
    assert!(
        out.status.success(),
        "curl {args:?} {url}: {}",
        out.describe()
    );
    let raw = std::fs::read_to_string(&heads).unwrap();
    // The last response block (curl writes one per response, e.g. after a 100).
    let last = raw
        .rfind("HTTP/")
        .map(|i| &raw[i..])
        .unwrap_or_else(|| panic!("curl {url}: no status line in {raw:?}"));
    let mut lines = last.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("curl {url}: bad status line in {raw:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    CurlResp {
        status,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------
// containerd

/// A containerd namespace of this run; its images, content and the namespace itself are
/// removed when dropped (also when the test fails).
pub struct CtrNamespace {
    pub address: String,
    pub name: String,
}

impl CtrNamespace {
    /// `ctr` arguments for this namespace, then `rest`.
    pub fn args<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["--address", &self.address, "--namespace", &self.name];
        v.extend_from_slice(rest);
        v
    }
}

impl Drop for CtrNamespace {
    fn drop(&mut self) {
        let limit = Duration::from_secs(60);
        let list = |what: &str| {
            run_blocking("ctr", &self.args(&[what, "ls", "-q"]), limit)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        for image in list("images") {
            run_blocking(
                "ctr",
                &self.args(&["images", "rm", "--sync", &image]),
                limit,
            );
        }
        for digest in list("content") {
            run_blocking("ctr", &self.args(&["content", "rm", &digest]), limit);
        }
        run_blocking(
            "ctr",
            &["--address", &self.address, "namespaces", "rm", &self.name],
            limit,
        );
    }
}

/// A `--hosts-dir` for containerd in which shoal (`shoal_host`, host:port) is the only
/// mirror of `registry` (e.g. `ghcr.io`); the fallback server is a dead address, so
/// nothing can come from anywhere but shoal.
pub fn ctr_hosts_dir(dir: &Path, registry: &str, shoal_host: &str) -> PathBuf {
    let hosts = dir.join("hosts.d");
    std::fs::create_dir_all(hosts.join(registry)).unwrap();
    std::fs::write(
        hosts.join(registry).join("hosts.toml"),
        format!(
            "server = \"{}\"\n\n[host.\"http://{shoal_host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            super::dead_url()
        ),
    )
    .unwrap();
    hosts
}

// ---------------------------------------------------------------------------------------
// Test images

/// Unique per run (pid and clock): for tags, containerd namespaces, and labels that make
/// an image's bytes new, so that no local store of Docker or containerd already holds them.
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{}", std::process::id(), nanos % 1_000_000_000_000)
}

/// Makes a small multi-platform OCI image (`tests/e2e/oci_image.py`: linux/amd64 and
/// linux/arm64) as the layout `dir/layout`, tagged `tag`, its config labelled `label`;
/// returns the layout's path and the script's report (index, manifests, blobs).
pub async fn oci_image(dir: &Path, tag: &str, label: &str) -> (PathBuf, Value) {
    let layout = dir.join("layout");
    let out = exec_ok(
        "python3",
        &[
            OCI_IMAGE,
            "--out",
            layout.to_str().unwrap(),
            "--tag",
            tag,
            "--label",
            label,
        ],
    )
    .await;
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("oci_image.py output: {e}: {}", out.describe()));
    (layout, v)
}

// ---------------------------------------------------------------------------------------
// shoal's admin endpoints (of a shoal process, by its base URL)

/// `GET {url}{path}` as JSON; panics unless it answers 200.
pub async fn admin(url: &str, path: &str) -> Value {
    let r = super::get(&format!("{url}{path}"), &[]).await;
    assert_eq!(r.status, 200, "GET {path}: {:?}", r.body);
    r.json()
}

pub async fn stats(url: &str) -> Value {
    admin(url, "/_shoal/v1/stats").await
}

/// The stats once no fill runs (what was fetched is committed and counted).
pub async fn settled_stats(url: &str) -> Value {
    let idle = super::eventually(Duration::from_secs(20), async || {
        stats(url).await["fills_running"] == 0
    })
    .await;
    let s = stats(url).await;
    assert!(idle, "fills still running: {s}");
    s
}

// ---------------------------------------------------------------------------------------
// Small helpers

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// A counter of shoal's stats; panics when it is missing.
pub fn counter(stats: &Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("stats lack {name}: {stats}"))
}
