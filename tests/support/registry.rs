//! The real software the end-to-end tests run around shoal: child processes bounded in
//! time and kept on loopback, Debian's `docker-registry` as an upstream, and oras-py
//! (`tests/e2e/oras_client.py`) as an OCI client. Used by `e2e_registry` and `e2e_clients`.

use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use http::Method;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::try_request;

pub const ORAS_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/oras_client.py");
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
    let registry = find_docker_registry().await;
    if registry.is_none() {
        missing.push(DOCKER_REGISTRY_HINT.to_owned());
    }
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

/// A docker-registry child process on 127.0.0.1, storing into a temp dir. Killed on drop.
pub struct Registry {
    child: Option<ChildGuard>,
    pub addr: String,
    dir: tempfile::TempDir,
}

enum NotReady {
    /// The process ended (most likely a race for the port it was given).
    Exited(String),
    Timeout(String),
}

impl Registry {
    pub async fn start(bin: &Path) -> Registry {
        // The port is found free, released, then handed to the registry: another process
        // can take it in between, so a registry that exits at once is retried.
        let mut last = String::new();
        for _ in 0..3 {
            let mut reg = Registry::spawn(bin);
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

    fn spawn(bin: &Path) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", super::free_port());
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {data}\n\
             http:\n  addr: {addr}\n  secret: shoal-e2e-test\n",
            data = dir.path().join("data").display(),
        );
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
        }
    }

    async fn wait_ready(&mut self) -> Result<(), NotReady> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let url = format!("{}/v2/", self.url());
        loop {
            if let Ok(r) = try_request(Method::GET, &url, &[]).await {
                if r.status == 200 {
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
