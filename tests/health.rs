//! `shoal health`, the container's health check: exit 0 when the server answers 200, exit 1
//! (never 2, which Docker reserves) with a one-line reason otherwise, and quickly.

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use support::*;

async fn health(url: &str) -> (Output, Duration) {
    let mut cmd = shoal_command();
    cmd.args(["health", "--url", url]);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("binary runs"))
        .await
        .unwrap();
    (out, started.elapsed())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_server_exits_zero() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let upstream = dead_url();
        let shoal = Shoal::start(&upstream).await;
        // The endpoint names the registry it mirrors (`shoal prefetch` checks it).
        let r = get(&format!("{}/_shoal/v1/health", shoal.url()), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["status"], "ok");
        assert_eq!(r.json()["upstream"], upstream.as_str());

        let (out, _) = health(&shoal.url()).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        // SHOAL_SERVER stands in for --url.
        let mut cmd = shoal_command();
        cmd.arg("health").env("SHOAL_SERVER", shoal.url());
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_answers_exit_one_with_a_reason() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        // Nothing listening.
        let dead = dead_url();
        let (out, _) = health(&dead).await;
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&dead), "names the URL: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");

        // Something else listening: not a 200.
        let up = FakeUpstream::start().await;
        let (out, _) = health(&up.url()).await;
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("404"), "{}", stderr(&out));

        // Not a URL.
        let (out, _) = health("ftp://x").await;
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("ftp://x"), "{}", stderr(&out));
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_fails_within_seconds() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        // Accepts connections and reads nothing: a hung process.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let (out, took) = health(&url).await;
        hold.abort();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("did not answer"), "{}", stderr(&out));
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(10),
            "gave up after {took:?}"
        );
    })
    .await
    .expect("test timed out");
}
