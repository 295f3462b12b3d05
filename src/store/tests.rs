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

fn read_checked(lease: &BlobLease, pos: u64) -> Result<String, Damage> {
    let mut s = String::new();
    lease.open_checked(pos)?.read_to_string(&mut s).unwrap();
    Ok(s)
}

/// Flips a byte in place: the file keeps its size and inode, but its ctime moves on.
fn flip_byte(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], at).unwrap();
}

#[tokio::test]
async fn damaged_files_are_found_when_opened_and_dropped_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let sound = put_blob(&store, b"sound and whole").await;
    let gone = put_blob(&store, b"deleted under shoal").await;
    let short = put_blob(&store, b"truncated under shoal").await;
    let flipped = put_blob(&store, b"one byte flipped under shoal").await;
    let touched = put_blob(&store, b"rewritten with the same bytes").await;

    fs::remove_file(store.blob_path(&gone)).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(store.blob_path(&short))
        .unwrap()
        .set_len(5)
        .unwrap();
    flip_byte(&store.blob_path(&flipped), 10);
    // Same bytes written again: the stamp changes, the hash still matches.
    fs::write(store.blob_path(&touched), b"rewritten with the same bytes").unwrap();

    let lease = store.acquire(&sound).unwrap();
    assert_eq!(read_checked(&lease, 6).unwrap(), "and whole");
    drop(lease);
    let lease = store.acquire(&touched).unwrap();
    assert_eq!(
        read_checked(&lease, 0).unwrap(),
        "rewritten with the same bytes"
    );
    drop(lease);

    for (d, want) in [
        (gone, "missing"),
        (short, "5 bytes"),
        (flipped, "no longer hashes"),
    ] {
        let lease = store.acquire(&d).unwrap();
        let damage = read_checked(&lease, 0).unwrap_err();
        assert!(damage.to_string().contains(want), "{d}: {damage}");
        assert!(lease.drop_damaged(&damage), "the first report drops it");
        assert!(
            !lease.drop_damaged(&damage),
            "a second report of the same copy does not"
        );
        assert_eq!(store.blob_size(&d), None, "{d} is a miss now");
        assert!(!store.blob_path(&d).exists());
    }
    assert_eq!(store.totals().0, 2);
    drop(store);

    // The index agrees after a restart; the rewritten file's new stamp was recorded.
    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(store.totals().0, 2);
    let lease = store.acquire(&touched).unwrap();
    let on_disk = fs::metadata(store.blob_path(&touched)).unwrap();
    assert_eq!(lease.stamp(), Some(Stamp::of(&on_disk)));
}

#[tokio::test]
async fn a_file_changed_while_shoal_was_down_is_hashed_before_it_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let d = put_blob(&store, b"changed while shoal was down").await;
    drop(store);
    flip_byte(&blob_path(dir.path(), &d), 3);

    // Same size, so start-up keeps it, but not as known good.
    let store = Store::open(dir.path()).await.unwrap();
    let lease = store.acquire(&d).unwrap();
    assert_eq!(lease.stamp(), None);
    assert!(matches!(read_checked(&lease, 0), Err(Damage::Corrupt)));
}

#[tokio::test]
async fn a_dropped_copy_never_drops_the_one_that_replaced_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let d = put_blob(&store, b"first copy").await;
    let old = store.acquire(&d).unwrap();
    assert!(old.drop_damaged(&Damage::Missing));
    put_blob(&store, b"first copy").await;
    assert!(!old.drop_damaged(&Damage::Missing));
    assert_eq!(store.blob_size(&d), Some(10));
    assert_eq!(
        read_checked(&store.acquire(&d).unwrap(), 0).unwrap(),
        "first copy"
    );
}

#[tokio::test]
async fn remembers_a_repository_for_each_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let d = put_blob(&store, b"fetched for a repository").await;
    assert_eq!(store.repo_of(d).await.unwrap(), None);
    store.set_repo(d, "library/x".into()).await.unwrap();
    assert_eq!(
        store.repo_of(d).await.unwrap().as_deref(),
        Some("library/x")
    );
}
