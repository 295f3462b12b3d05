//! `shoal import`: an existing ollama models directory becomes cache contents, verified,
//! hard-linked rather than copied, and pullable with no upstream at all.

mod support;

use std::os::unix::fs::MetadataExt;

use support::*;

const MIB: usize = 1 << 20;

/// `~/.ollama/models` as ollama leaves it, plus things import must refuse.
fn ollama_dir(m: &Model) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let blobs = d.path().join("models/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    for b in m.layers.iter().chain([&m.config]) {
        std::fs::write(blobs.join(format!("sha256-{}", sha256_hex(b))), b).unwrap();
    }
    // A file whose bytes do not match its name, and a partial download.
    std::fs::write(
        blobs.join(format!("sha256-{}", "ab".repeat(32))),
        b"not these bytes",
    )
    .unwrap();
    std::fs::write(
        blobs.join(format!("sha256-{}-partial", "cd".repeat(32))),
        b"part",
    )
    .unwrap();
    let man = d
        .path()
        .join("models/manifests/registry.ollama.ai/library/granite-code");
    std::fs::create_dir_all(&man).unwrap();
    std::fs::write(man.join("8b"), &m.manifest).unwrap();
    std::fs::write(man.join("junk"), b"{not json").unwrap();
    d
}

fn import(src: &std::path::Path, data: &std::path::Path) -> (i32, String, String) {
    let out = shoal_command()
        .arg("import")
        .arg(src)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn imports_an_ollama_models_dir() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let m = Model::new(vec![blob_bytes(3 * MIB, 101), blob_bytes(200_000, 102)]);
        let src = ollama_dir(&m);
        let data = tempfile::tempdir().unwrap();

        // ~/.ollama works as well as ~/.ollama/models.
        let (code, out, err) = import(src.path(), data.path());
        assert_eq!(
            code, 1,
            "refused files make the exit status non-zero: {out}{err}"
        );
        assert!(
            out.contains("imported 3 blobs (3 hard-linked, 0 copied"),
            "{out}"
        );
        assert!(out.contains("1 manifests"), "{out}");
        assert!(err.contains("hash to"), "the bad blob is named: {err}");
        assert!(err.contains("junk"), "the bad manifest is named: {err}");
        assert!(
            !err.contains("-partial"),
            "partial downloads are not blobs: {err}"
        );

        // Hard-linked: the cache's file is the ollama file.
        let d0 = sha256_hex(&m.layers[0]);
        let ours = data.path().join(format!("blobs/sha256/{}/{d0}", &d0[..2]));
        let theirs = src.path().join(format!("models/blobs/sha256-{d0}"));
        assert_eq!(
            std::fs::metadata(&ours).unwrap().ino(),
            std::fs::metadata(&theirs).unwrap().ino()
        );

        // Again: nothing new.
        let (code, out, _) = import(&src.path().join("models"), data.path());
        assert_eq!(code, 1);
        assert!(
            out.contains("imported 0 blobs") && out.contains("3 blobs were already cached"),
            "{out}"
        );

        // A shoal on that data dir, with the real upstream unreachable, serves the model,
        // and seeds it.
        let shoal = Shoal::start_in(data, "https://registry.ollama.ai", |_| {}).await;
        let pull = ollama_pull(
            &shoal.url(),
            "library/granite-code",
            "8b",
            PullOptions::default(),
        )
        .await
        .expect("pull from imported data alone");
        assert_eq!(pull.manifest, m.manifest);
        assert_eq!(pull.blobs[0].data, m.layers[0]);
        let s = shoal.stats().await;
        assert_eq!(
            (s["blobs"].as_u64(), s["upstream_bytes"].as_u64()),
            (Some(3), Some(0))
        );
        let t = get(
            &format!("{}/_shoal/v1/blobs/sha256:{d0}/torrent", shoal.url()),
            &[],
        )
        .await;
        assert_eq!(t.status, 200);

        // Import while shoal runs on the same data dir: refused, clearly.
        let (code, _, err) = import(src.path(), shoal.dir.path());
        assert_ne!(code, 0);
        assert!(err.contains("stop `shoal serve` first"), "{err}");
    })
    .await
    .expect("test timed out");
}

#[test]
fn refuses_a_directory_that_is_not_ollamas() {
    let empty = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (code, _, err) = import(empty.path(), data.path());
    assert_ne!(code, 0);
    assert!(err.contains("not an ollama models directory"), "{err}");
}
