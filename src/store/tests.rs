use super::*;

async fn put_blob(store: &Store, data: &[u8]) -> Digest {
    let d = Digest::of(data);
    let s = store.clone();
    let data = data.to_vec();
    let file = tokio::task::spawn_blocking(move || {
        let f = s.create_partial(&d, data.len() as u64).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &data, 0).unwrap();
        f
    })
    .await
    .unwrap();
    let len = std::fs::metadata(store.partial_path(&d)).unwrap().len();
    store.commit(d, len, Arc::new(file), None).await.unwrap();
    d
}

#[tokio::test]
async fn commit_then_reopen_keeps_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let d = put_blob(&store, b"hello").await;
    assert_eq!(store.blob_size(&d), Some(5));
    assert_eq!(store.totals(), (1, 5));
    assert!(!store.partial_path(&d).exists());
    drop(store);

    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(store.blob_size(&d), Some(5));
    let lease = store.acquire(&d).unwrap();
    let mut s = String::new();
    lease.open().unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "hello");
}

#[tokio::test]
async fn second_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(dir.path()).await.unwrap();
    let err = Store::open(dir.path()).await.err().unwrap();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
}

#[tokio::test]
async fn reconciles_after_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let kept = put_blob(&store, b"kept").await;
    let truncated = put_blob(&store, b"will be truncated").await;
    // A partial left by a crash.
    let partial = store.partial_path(&Digest::of(b"partial"));
    std::fs::write(&partial, b"part").unwrap();
    drop(store);

    // Crash between rename and insert: a correct file without a row, and a corrupt one.
    let orphan = Digest::of(b"orphan");
    let opath = blob_path(dir.path(), &orphan);
    std::fs::create_dir_all(opath.parent().unwrap()).unwrap();
    std::fs::write(&opath, b"orphan").unwrap();
    let bad = Digest::of(b"bad");
    let bpath = blob_path(dir.path(), &bad);
    std::fs::create_dir_all(bpath.parent().unwrap()).unwrap();
    std::fs::write(&bpath, b"not bad").unwrap();
    std::fs::write(blob_path(dir.path(), &truncated), b"will").unwrap();

    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(store.blob_size(&kept), Some(4));
    assert_eq!(store.blob_size(&orphan), Some(6));
    assert_eq!(store.blob_size(&bad), None);
    assert_eq!(store.blob_size(&truncated), None);
    assert!(!bpath.exists());
    assert!(!partial.exists());
    assert_eq!(store.totals(), (2, 10));
}

#[tokio::test]
async fn eviction_is_lru_and_skips_readers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let a = put_blob(&store, &[1u8; 100]).await;
    let b = put_blob(&store, &[2u8; 100]).await;
    let c = put_blob(&store, &[3u8; 100]).await;
    // Access order: b (oldest) < c < a; a is being read.
    for d in [b, c] {
        drop(store.acquire(&d).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _reading = store.acquire(&a).unwrap();

    let evicted = store.evict_to(250, 0).await.unwrap();
    assert_eq!(evicted, vec![(b, 100)]);
    let evicted = store.evict_to(0, 0).await.unwrap();
    assert_eq!(evicted, vec![(c, 100)], "a is leased and stays");
    assert_eq!(store.blob_size(&a), Some(100));
    assert_eq!(store.totals(), (1, 100));
    assert!(!blob_path(dir.path(), &b).exists());

    store.flush_access().await.unwrap();
    drop(_reading);
    drop(store);
    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(store.totals(), (1, 100));
}

#[tokio::test]
async fn torrents_go_with_their_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let data = b"seeded";
    let d = Digest::of(data);
    let s = store.clone();
    let file = tokio::task::spawn_blocking(move || {
        let f = s.create_partial(&d, 6).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, data, 0).unwrap();
        f
    })
    .await
    .unwrap();
    let t = TorrentRow {
        digest: d,
        infohash: [9; 20],
        piece_length: 1 << 20,
        pieces: vec![1; 20],
    };
    store
        .commit(d, 6, Arc::new(file), Some(t.clone()))
        .await
        .unwrap();
    assert_eq!(store.torrent(d).await.unwrap(), Some(t.clone()));
    assert_eq!(store.torrents().await.unwrap(), vec![t]);
    store.evict_to(0, 0).await.unwrap();
    assert_eq!(
        store.torrent(d).await.unwrap(),
        None,
        "evicted with its blob"
    );
}
