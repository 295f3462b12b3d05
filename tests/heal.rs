//! A cache that heals itself with no client asking: the background scrub finds a damaged
//! blob and fetches it again; `POST /_shoal/v1/verify` (and `shoal verify`) hashes every
//! blob now, needs the admin token, and reports and mends what fails.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use http::Method;
use support::*;

const MIB: usize = 1 << 20;

fn blob_file(shoal: &Shoal, digest: &str) -> PathBuf {
    let hex = &digest[7..];
    shoal
        .dir
        .path()
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(hex)
}

fn flip_byte(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[!b[0]], at).unwrap();
}

/// Caches `data` through `shoal` (repository `library/x`) and waits until it is held.
async fn cache(shoal: &Shoal, digest: &str, data: &[u8]) {
    let r = get(&format!("{}/v2/library/x/blobs/{digest}", shoal.url()), &[]).await;
    assert_eq!(r.body, data);
    shoal.settle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scrub_finds_and_mends_a_damaged_blob_that_no_request_touches() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(3 * MIB, 81);
        let digest = up.add_blob(data.clone());
        let other = blob_bytes(MIB, 82);
        let other_digest = up.add_blob(other.clone());
        let shoal =
            Shoal::start_with(&up.url(), |c| c.scrub.period = Duration::from_millis(500)).await;
        cache(&shoal, &digest, &data).await;
        cache(&shoal, &other_digest, &other).await;
        let sent = up.counts.cdn_bytes.load(SeqCst);

        flip_byte(&blob_file(&shoal, &digest), 2 * MIB as u64);
        let mended = eventually(Duration::from_secs(20), async || {
            let s = shoal.stats().await;
            s["damaged_blobs"] == 1 && s["mended_blobs"] == 1
        })
        .await;
        let stats = shoal.stats().await;
        assert!(mended, "{stats}");
        assert_eq!(std::fs::read(blob_file(&shoal, &digest)).unwrap(), data);
        let again = up.counts.cdn_bytes.load(SeqCst) - sent;
        assert_eq!(
            again, MIB as u64,
            "only the damaged piece (1 MiB) of the damaged blob came again, once"
        );
        let scrubbed = eventually(Duration::from_secs(10), async || {
            shoal.stats().await["verified_blobs"].as_u64().unwrap() >= 2
        })
        .await;
        let stats = shoal.stats().await;
        assert!(
            scrubbed,
            "the sound one and the mended one are hashed too: {stats}"
        );
        assert_eq!(stats["blob_hits"], 0, "the scrub is not a use: {stats}");
        assert_eq!(stats["served_bytes"], 4 * MIB, "nor is mending: {stats}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_needs_the_admin_token_then_reports_and_mends() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(2 * MIB, 83);
        let digest = up.add_blob(data.clone());
        let sound = blob_bytes(MIB, 84);
        let sound_digest = up.add_blob(sound.clone());
        let shoal = Shoal::start(&up.url()).await;
        cache(&shoal, &digest, &data).await;
        cache(&shoal, &sound_digest, &sound).await;
        let url = format!("{}/_shoal/v1/verify", shoal.url());

        // Without the token, or with a wrong one: 401 with an OCI error body, nothing done.
        for auth in [None, Some("Bearer not-the-token")] {
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
            let r = request(Method::POST, &url, &headers).await;
            assert_eq!(r.status, 401);
            let body: serde_json::Value = r.json();
            assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED", "{body}");
        }
        assert_eq!(shoal.stats().await["verified_blobs"], 0);
        assert_eq!(request(Method::GET, &url, &[]).await.status, 405);

        let token = std::fs::read_to_string(shoal.dir.path().join("admin.token")).unwrap();
        let bearer = format!("Bearer {}", token.trim());
        std::fs::remove_file(blob_file(&shoal, &digest)).unwrap();
        let r = request(Method::POST, &url, &[("authorization", &bearer)]).await;
        assert_eq!(r.status, 200);
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&r.body)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["blobs"], 2, "{lines:?}");
        let result = |d: &str| {
            lines
                .iter()
                .find(|l| l["digest"] == d)
                .map(|l| l["result"].clone())
        };
        assert_eq!(result(&digest), Some("mended".into()), "{lines:?}");
        assert_eq!(result(&sound_digest), Some("sound".into()), "{lines:?}");
        let done = lines.last().unwrap();
        assert_eq!(
            (done["done"].clone(), done["mended"].clone()),
            (true.into(), 1.into())
        );
        assert_eq!(std::fs::read(blob_file(&shoal, &digest)).unwrap(), data);
    })
    .await
    .expect("test timed out");
}

/// `shoal verify` as an admin runs it: the token from the data dir, a summary, exit codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shoal_verify_command() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(MIB, 85);
        let digest = up.add_blob(data.clone());
        let dir = tempfile::tempdir().unwrap();
        let p = spawn_shoal(dir.path(), &up.url(), free_port()).await;
        assert_eq!(
            get(&format!("{}/v2/library/x/blobs/{digest}", p.url), &[])
                .await
                .body,
            data
        );
        let hex = &digest[7..];
        let file = dir.path().join("blobs/sha256").join(&hex[..2]).join(hex);
        let held = eventually(Duration::from_secs(10), async || file.exists()).await;
        assert!(held);
        flip_byte(&file, 100);

        let (url, data_dir) = (p.url.clone(), dir.path().to_owned());
        let (code, out, err) = tokio::task::spawn_blocking(move || {
            run_cmd(
                shoal_command()
                    .args(["verify", "--server", &url, "--data-dir"])
                    .arg(&data_dir),
            )
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("verified 1 blobs") && out.contains("1 mended"),
            "{out}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), data);

        let url = p.url.clone();
        let (code, _, err) = tokio::task::spawn_blocking(move || {
            run_cmd(shoal_command().args(["verify", "--server", &url, "--token", "wrong"]))
        })
        .await
        .unwrap();
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("401"), "{err}");

        let empty = tempfile::tempdir().unwrap();
        let url = p.url.clone();
        let (code, _, err) = tokio::task::spawn_blocking(move || {
            run_cmd(
                shoal_command()
                    .args(["verify", "--server", &url, "--data-dir"])
                    .arg(empty.path()),
            )
        })
        .await
        .unwrap();
        assert_eq!(code, 64, "{err}");
        assert!(err.contains("admin.token"), "{err}");
        let (code, _, _) = tokio::task::spawn_blocking(|| {
            run_cmd(shoal_command().args(["verify", "--server", "ftp://x"]))
        })
        .await
        .unwrap();
        assert_eq!(code, 64);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_of_a_blob_found_damaged_is_cut() {
    use http_body_util::{BodyExt, Empty};
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(32 * MIB, 86);
        let digest = up.add_blob(data.clone());
        let shoal = Shoal::start(&up.url()).await;
        cache(&shoal, &digest, &data).await;
        let sent = up.counts.cdn_bytes.load(SeqCst);

        // A client starts reading the blob, then stalls (its socket fills, so shoal's
        // reader waits) while rot sits near the end, where shoal has not read yet.
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Empty<bytes::Bytes>>();
        let uri = format!("{}/v2/library/x/blobs/{digest}", shoal.url());
        let resp = client.get(uri.parse().unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut got = Vec::new();
        while got.len() < MIB {
            let frame = body.frame().await.unwrap().unwrap();
            got.extend_from_slice(frame.data_ref().unwrap());
        }
        flip_byte(&blob_file(&shoal, &digest), 31 * MIB as u64);

        // shoal verify finds it: dropped, and mended from its sound pieces.
        let token = std::fs::read_to_string(shoal.dir.path().join("admin.token")).unwrap();
        let bearer = format!("Bearer {}", token.trim());
        let url = format!("{}/_shoal/v1/verify", shoal.url());
        let r = request(Method::POST, &url, &[("authorization", &bearer)]).await;
        assert!(String::from_utf8_lossy(&r.body).contains("\"mended\""));

        // The stalled reader goes on: it is cut before the end, and every byte it got is
        // the blob's.
        let cut = loop {
            match body.frame().await {
                Some(Ok(f)) => got.extend_from_slice(f.data_ref().map_or(&[][..], |b| b)),
                Some(Err(_)) => break true,
                None => break false,
            }
        };
        assert!(
            cut && got.len() < data.len(),
            "got {} bytes, cut: {cut}",
            got.len()
        );
        assert_eq!(got, data[..got.len()], "no byte that failed a check");
        assert_eq!(std::fs::read(blob_file(&shoal, &digest)).unwrap(), data);
        assert_eq!(
            up.counts.cdn_bytes.load(SeqCst) - sent,
            MIB as u64,
            "only the rotten piece came again"
        );
    })
    .await
    .expect("test timed out");
}
