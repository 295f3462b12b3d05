//! The binary as users meet it: bad settings stop start-up with a message naming them
//! (exit 64), `--check-config` shows the resolved configuration, SIGTERM stops cleanly.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

fn shoal() -> Command {
    shoal_command()
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("shoal.toml");
    std::fs::write(
        &cfg,
        "listen = \"127.0.0.1:0\"\nmax_cache_sise = \"1GiB\"\n",
    )
    .unwrap();
    let cases: Vec<(Command, &str)> = vec![
        (
            {
                let mut c = shoal();
                c.args(["serve", "--listen", "nowhere"]);
                c
            },
            "--listen",
        ),
        (
            {
                let mut c = shoal();
                c.args(["serve", "--upstream", "ftp://x"]);
                c
            },
            "upstream",
        ),
        (
            {
                let mut c = shoal();
                c.args(["serve", "--max-cache-size", "lots"]);
                c
            },
            "--max-cache-size",
        ),
        (
            {
                let mut c = shoal();
                c.args(["serve", "--config"]).arg(&cfg);
                c
            },
            "max_cache_sise",
        ),
        (
            {
                let mut c = shoal();
                c.args(["serve"]).env("SHOAL_LISTN", "x");
                c
            },
            "SHOAL_LISTN",
        ),
        (
            {
                let mut c = shoal();
                c.args(["serve"]).env("SHOAL_FETCH__CONNECTIONS", "0");
                c
            },
            "fetch.connections",
        ),
        (
            {
                let mut c = shoal();
                c.args(["serve", "--config", "/nonexistent/shoal.toml"]);
                c
            },
            "/nonexistent/shoal.toml",
        ),
    ];
    for (mut cmd, needle) in cases {
        let (code, _, err) = run(&mut cmd);
        assert_eq!(code, 64, "{needle}: {err}");
        assert!(err.contains(needle), "stderr must name {needle}: {err}");
    }
}

#[test]
fn check_config_prints_the_resolved_configuration() {
    let (code, out, err) = run(shoal()
        .args(["serve", "--check-config", "--listen", "127.0.0.1:9999"])
        .env("SHOAL_FETCH__CONNECTIONS", "8"));
    assert_eq!(code, 0, "{err}");
    let v: toml::Table = out.parse().expect("TOML on stdout");
    assert_eq!(v["listen"].as_str(), Some("127.0.0.1:9999"));
    assert_eq!(v["upstream"].as_str(), Some("https://registry.ollama.ai"));
    assert_eq!(v["fetch"]["connections"].as_integer(), Some(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = shoal()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--upstream", &dead_url()])
        .args(["--bt-listen", "127.0.0.1:0", "--no-discovery"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/_shoal/v1/health");
    assert!(
        eventually(Duration::from_secs(20), async || {
            try_request(http::Method::GET, &url, &[])
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await
    );
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "shoal did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("shoal stopped"), "{err}");
}
