//! The real `shoal` binary as a child process, for what only a process can show (kill -9,
//! signals, exit codes). Inherited `SHOAL_*` settings are removed so that a developer's
//! or CI's environment never changes what a test runs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, try_request};

/// `shoal` with a clean `SHOAL_*` environment.
pub fn shoal_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shoal"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SHOAL_") {
            c.env_remove(k);
        }
    }
    c
}

/// A running shoal process; dropping it kills it with SIGKILL.
pub struct ShoalProcess {
    pub child: Child,
    pub url: String,
}

impl Drop for ShoalProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `shoal serve` on `port` with test timings and waits until it is healthy.
pub async fn spawn_shoal(data: &Path, upstream: &str, port: u16) -> ShoalProcess {
    spawn_shoal_with(data, upstream, port, &[]).await
}

/// `spawn_shoal` with more `shoal serve` flags.
pub async fn spawn_shoal_with(
    data: &Path,
    upstream: &str,
    port: u16,
    extra: &[&str],
) -> ShoalProcess {
    spawn_shoal_opts(data, upstream, port, extra, &[], Stdio::inherit()).await
}

/// `spawn_shoal_with` with more environment variables (set after the test defaults, so
/// `RUST_LOG` or a `SHOAL_*` setting can override them) and its stderr sent to `stderr`.
pub async fn spawn_shoal_opts(
    data: &Path,
    upstream: &str,
    port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
    stderr: Stdio,
) -> ShoalProcess {
    let child = shoal_command()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .args(["--upstream", upstream])
        .args(["--bt-listen", "127.0.0.1:0", "--no-discovery"])
        .env("SHOAL_FETCH__STALL_TIMEOUT", "2s")
        .env("SHOAL_FETCH__MIN_SPAN", "256KiB")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("shoal binary runs");
    let url = format!("http://127.0.0.1:{port}");
    let health = format!("{url}/_shoal/v1/health");
    let ready = eventually(Duration::from_secs(20), async || {
        try_request(http::Method::GET, &health, &[])
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(ready, "shoal did not become healthy on port {port}");
    ShoalProcess { child, url }
}

/// Runs a command to its end: exit code (-1 when killed by a signal), stdout, stderr.
pub fn run_cmd(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
