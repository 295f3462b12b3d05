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

/// ollama ≥ 0.40's layout: `manifests-v2/ollama.com/...` holding a manifest list whose
/// child is kept as a blob, beside an hf.co model in the older layout. Both are served
/// offline afterwards, each to the client that pulled it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn imports_the_v040_layout_and_other_registries() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let m = Model::new(vec![blob_bytes(MIB, 111)]);
        let gguf = Model::with_config(
            vec![blob_bytes(MIB + 3, 112)],
            br#"{"model_family":"llama"}"#[..].into(),
        );
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.ollama.manifest.list.v2+json","manifests":[{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{}","size":{},"runner":"ggml"}}]}}"#,
            m.manifest_digest(),
            m.manifest.len()
        );
        let src = tempfile::tempdir().unwrap();
        let blobs = src.path().join("blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        let all = [&m.layers[0], &m.config, &m.manifest, &gguf.layers[0], &gguf.config];
        for b in all.into_iter().chain([&bytes::Bytes::from(list.clone())]) {
            std::fs::write(blobs.join(format!("sha256-{}", sha256_hex(b))), b).unwrap();
        }
        let v2 = src.path().join("manifests-v2/ollama.com/library/granite-code");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("8b"), &list).unwrap();
        let hf = src.path().join("manifests/hf.co/bartowski/gguf");
        std::fs::create_dir_all(&hf).unwrap();
        std::fs::write(hf.join("Q4_K_M"), &gguf.manifest).unwrap();

        let data = tempfile::tempdir().unwrap();
        let (code, out, err) = import(src.path(), data.path());
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("imported 6 blobs") && out.contains("2 manifests"), "{out}");

        // Upstream unreachable: everything comes from what was imported.
        let shoal = Shoal::start_in(data, "https://registry.ollama.ai", |_| {}).await;
        let base = shoal.url();
        let ua = ("user-agent", "ollama/0.40.1");
        let v040 = (
            "accept",
            "application/vnd.ollama.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json",
        );
        let r = get(&format!("{base}/v2/library/granite-code/manifests/8b"), &[ua, v040]).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.body, list.as_bytes(), "the list, as 0.40 pulled it");
        let child = get(
            &format!("{base}/v2/library/granite-code/blobs/{}", m.manifest_digest()),
            &[("user-agent", "ollama-transfer/1.0")],
        )
        .await;
        assert_eq!((child.status, &child.body[..]), (200, &m.manifest[..]), "the child, as a blob");
        let pull = ollama_pull(&base, "hf.co/bartowski/gguf", "Q4_K_M", PullOptions::default())
            .await
            .expect("the hf.co model, by its host-prefixed name");
        assert_eq!(pull.manifest, gguf.manifest);
        assert_eq!(pull.blobs[0].data, gguf.layers[0]);
        assert_eq!(shoal.stats().await["upstream_bytes"], 0);
    })
    .await
    .expect("test timed out");
}
