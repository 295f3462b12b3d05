//! gopull: the Go stand-in for ollama's registry client in `../shared/tools/ollama-pull`
//! (Go's own net/http: HTTP/2 via ALPN, HTTPS_PROXY, SSL_CERT_FILE; ollama's part layout,
//! stall timer, retries and on-disk layout), built once and run as a subprocess.
//!
//! Needs the gopull source beside the repository and `go` (`apt-get install golang-go`).
//! Without the source, `gopull()` says `SKIPPED` and returns `None`; without `go` too,
//! unless `REQUIRE_E2E_TOOLS=1` (CI), which makes it a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

/// Small parts, so that test blobs are split into many ranged GETs as big models are.
pub const MIN_PART: &str = "262144";

// ---------------------------------------------------------------------------------------
// Building gopull

pub fn gopull_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/ollama-pull")
}

/// The gopull binary, built at most once per test process (and reused across processes
/// while the source is unchanged); `None` when the test must be skipped, said on stdout.
pub fn gopull() -> Option<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let src = gopull_src();
        if !src.join("main.go").is_file() {
            return Err(format!(
                "gopull source not found at {} (it lives beside the repository, in \
                 ../shared/tools/ollama-pull)",
                src.display()
            ));
        }
        let go = Command::new("go").arg("version").output();
        if !go.as_ref().is_ok_and(|o| o.status.success()) {
            let msg = format!(
                "gopull tests need Go >= 1.19 to build {}: apt-get install golang-go ({go:?})",
                src.display()
            );
            if std::env::var("REQUIRE_E2E_TOOLS").as_deref() == Ok("1") {
                panic!("{msg}; REQUIRE_E2E_TOOLS=1 makes this a failure");
            }
            return Err(msg);
        }
        Ok(build(&src))
    });
    match built {
        Ok(bin) => Some(bin.clone()),
        Err(why) => {
            println!("SKIPPED: {why}");
            None
        }
    }
}

fn build(src: &Path) -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gopull");
    std::fs::create_dir_all(&out).unwrap();
    // Serializes builds across test processes (nextest runs one per test).
    let lock = std::fs::File::create(out.join("build.lock")).unwrap();
    lock.lock().unwrap();
    let bin = out.join("gopull");
    if is_fresh(&bin, src) {
        return bin;
    }
    let tmp = out.join(format!("gopull.tmp-{}", std::process::id()));
    let o = Command::new("go")
        .args(["build", "-buildvcs=false", "-o"])
        .arg(&tmp)
        .arg(".")
        .current_dir(src)
        // Hermetic: our own cache, no cgo (no C compiler needed), no toolchain or module
        // downloads.
        .env("GOCACHE", out.join("go-cache"))
        .env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .output()
        .expect("run go build");
    assert!(
        o.status.success(),
        "go build of {} failed:\n{}{}",
        src.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::rename(&tmp, &bin).unwrap();
    bin
}

/// The binary exists and is newer than every file of the source.
fn is_fresh(bin: &Path, src: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    std::fs::read_dir(src).unwrap().all(|e| {
        e.and_then(|e| e.metadata())
            .and_then(|m| m.modified())
            .is_ok_and(|t| t <= built)
    })
}

// ---------------------------------------------------------------------------------------
// Running gopull

/// Kills the child when dropped, so a test that times out leaves no process behind.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    /// gopull's last stdout line.
    pub json: Value,
    pub stderr: String,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.code == Some(0) && self.json["ok"] == true
    }

    pub fn expect_ok(&self, what: &str) {
        assert!(
            self.ok(),
            "{what}: gopull failed (exit {:?}): {}\n{}",
            self.code,
            self.json,
            self.stderr
        );
    }

    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
}

/// Runs `gopull -insecure -models <models> [extra...] <name>` to its end.
pub async fn run_gopull(bin: &Path, models: &Path, name: &str, extra: &[&str]) -> Outcome {
    let mut args = vec!["-insecure"];
    args.extend_from_slice(extra);
    run_gopull_with(bin, models, name, &args, &[]).await
}

/// Runs `gopull -models <models> [args...] <name>` with `env` added (and any proxy or
/// OLLAMA_MODELS variable of the caller's environment removed) to its end.
pub async fn run_gopull_with(
    bin: &Path,
    models: &Path,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Outcome {
    let logs = tempfile::tempdir().unwrap();
    let out_path = logs.path().join("stdout");
    let err_path = logs.path().join("stderr");
    let mut cmd = Command::new(bin);
    cmd.arg("-models")
        .arg(models)
        .args(["-min-part", MIN_PART])
        .args(args)
        .arg(name)
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env_remove("OLLAMA_MODELS")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let mut child = Running(cmd.spawn().expect("spawn gopull"));
    // No tokio "process" feature here: poll the child instead of blocking a worker thread.
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    let last = stdout.lines().last().unwrap_or("");
    let json = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!("gopull's last stdout line is not JSON ({e}): {stdout:?}\nstderr:\n{stderr}")
    });
    // Shown by the test harness when the test fails.
    println!("gopull {name} exited {status}: {last}\n{stderr}");
    Outcome {
        code: status.code(),
        json,
        stderr,
    }
}
