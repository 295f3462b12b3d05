//! `GET /metrics`: the Prometheus text (OpenMetrics) agrees with `/_shoal/v1/stats`, has no
//! unbounded label, and parses with the Prometheus project's own Python parser.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use support::*;

/// `name{labels} value` lines, keyed by everything before the value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// Parses `text` with `prometheus_client`'s OpenMetrics parser (PyPI), when it is there.
fn python_parses(text: &str) -> Option<Result<(), String>> {
    let probe = Command::new("python3")
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        let msg = "python3 with prometheus_client (pip install prometheus-client) is missing";
        if std::env::var("REQUIRE_E2E_TOOLS").as_deref() == Ok("1") {
            panic!("{msg}; REQUIRE_E2E_TOOLS=1 makes this a failure");
        }
        eprintln!("skipping the parser check: {msg}");
        return None;
    }
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys\n\
             from prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
             print(len(list(p(sys.stdin.read()))))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Some(match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_agree_with_the_stats_and_parse() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(3 << 20, 91);
        let digest = up.add_blob(data.clone());
        let shoal = Shoal::start(&up.url()).await;
        let blob = format!("{}/v2/library/x/blobs/{digest}", shoal.url());
        assert_eq!(get(&blob, &[]).await.body, data, "a miss");
        shoal.settle().await;
        assert_eq!(get(&blob, &[]).await.body, data, "a hit");
        let bad = format!("{}/v2/library/x/blobs/sha256:nope", shoal.url());
        assert_eq!(get(&bad, &[]).await.status, 400);

        let r = get(&format!("{}/metrics", shoal.url()), &[]).await;
        assert_eq!(r.status, 200);
        assert!(r
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")));
        let text = String::from_utf8(r.body.to_vec()).unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(!text.contains("sha256"), "no digest in a label: {text}");
        let stats = shoal.stats().await;
        let m = samples(&text);
        let stat = |k: &str| stats[k].as_u64().unwrap() as f64;
        let size = data.len() as f64;
        let host = up.url().trim_start_matches("http://").to_owned();
        for (sample, want) in [
            (
                format!("shoal_upstream_bytes_total{{registry=\"{host}\"}}"),
                stat("upstream_bytes"),
            ),
            ("shoal_served_bytes_total{source=\"cache\"}".into(), size),
            ("shoal_served_bytes_total{source=\"upstream\"}".into(), size),
            ("shoal_served_bytes_total{source=\"peers\"}".into(), 0.0),
            ("shoal_blob_hits_total".into(), stat("blob_hits")),
            ("shoal_blob_misses_total".into(), stat("blob_misses")),
            ("shoal_fills_started_total".into(), 1.0),
            ("shoal_cache_bytes".into(), size),
            ("shoal_cache_limit_bytes".into(), f64::INFINITY),
            ("shoal_blobs".into(), 1.0),
            ("shoal_fills_running".into(), 0.0),
            ("shoal_peers{state=\"reachable\"}".into(), 0.0),
            (
                "shoal_requests_total{route=\"blob\",code=\"200\"}".into(),
                2.0,
            ),
            (
                // A path that names no endpoint is counted as "invalid", whatever it says.
                "shoal_requests_total{route=\"invalid\",code=\"400\"}".into(),
                1.0,
            ),
            ("shoal_fill_duration_seconds_count".into(), 1.0),
            ("shoal_damaged_blobs_total".into(), stat("damaged_blobs")),
        ] {
            assert_eq!(m.get(&sample), Some(&want), "{sample} in:\n{text}");
        }
        assert_eq!(stat("served_bytes"), 2.0 * size);
        if let Some(parsed) = python_parses(&text) {
            parsed.expect("the Prometheus parser reads it");
        }
    })
    .await
    .expect("test timed out");
}
