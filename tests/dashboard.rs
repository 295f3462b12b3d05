//! The dashboard as a browser shows it: headless Chromium (Debian's `chromium`) renders
//! `/_shoal/` of a node that cached a model; the DOM names the model, and screenshots (a
//! desktop and a phone) are kept in `target/ci-artifacts/`.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::*;

fn chromium() -> Option<&'static str> {
    for bin in ["chromium", "chromium-browser"] {
        if Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(bin);
        }
    }
    let msg = "chromium is not installed (apt install chromium)";
    if std::env::var("REQUIRE_E2E_TOOLS").as_deref() == Ok("1") {
        panic!("{msg}; REQUIRE_E2E_TOOLS=1 makes this a failure");
    }
    eprintln!("skipping: {msg}");
    None
}

/// Runs headless Chromium on `url` with `args`; its stdout.
fn browse(bin: &str, url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            // Lets the page's fetches finish before the DOM is dumped or the shot taken.
            "--virtual-time-budget=8000",
            &format!("--user-data-dir={}", profile.path().display()),
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_the_cached_model() {
    let Some(bin) = chromium() else { return };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = Model::new(vec![blob_bytes(2 << 20, 65)]);
        up.add_model("library/granite-code", "8b", &m);
        let shoal = Shoal::start(&up.url()).await;
        let base = shoal.url();
        shoal.pull("library/granite-code", "8b").await;

        // `/` sends a browser to the dashboard.
        let r = get(&format!("{base}/"), &[]).await;
        assert_eq!(r.status, 302);
        assert_eq!(r.header("location"), Some("/_shoal/"));

        let url = format!("{base}/_shoal/");
        let dom = tokio::task::spawn_blocking({
            let url = url.clone();
            move || browse(bin, &url, &["--dump-dom"])
        })
        .await
        .unwrap();
        assert!(dom.contains("<td>granite-code:8b</td>"), "{dom}");
        assert!(dom.contains(&format!("mirroring {}", up.url())), "{dom}");
        assert!(
            dom.contains(r#"<p class="msg" id="msg"></p>"#),
            "no error shown: {dom}"
        );

        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ci-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        for (file, size) in [
            ("dashboard.png", "1280,1400"),
            ("dashboard-phone.png", "390,1600"),
        ] {
            let path = dir.join(file);
            let _ = std::fs::remove_file(&path);
            let shot = format!("--screenshot={}", path.display());
            let window = format!("--window-size={size}");
            let url = url.clone();
            tokio::task::spawn_blocking(move || {
                browse(bin, &url, &[&shot, &window, "--hide-scrollbars"])
            })
            .await
            .unwrap();
            let png = std::fs::read(&path).expect("a screenshot");
            assert!(
                png.starts_with(b"\x89PNG") && png.len() > 10_000,
                "{file}: {} bytes",
                png.len()
            );
        }
    })
    .await
    .expect("test timed out");
}
