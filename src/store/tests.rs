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
    store
        .commit(d, len, Arc::new(file), None, false)
        .await
        .unwrap();
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

    let evicted = store.evict_to(250, 0, &HashSet::new()).await.unwrap();
    assert_eq!(evicted, vec![(b, 100)]);
    let evicted = store.evict_to(0, 0, &HashSet::new()).await.unwrap();
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
        .commit(d, 6, Arc::new(file), Some(t.clone()), false)
        .await
        .unwrap();
    assert_eq!(store.torrent(d).await.unwrap(), Some(t.clone()));
    assert_eq!(store.torrents().await.unwrap(), vec![t]);
    store.evict_to(0, 0, &HashSet::new()).await.unwrap();
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

/// Commits `data` with its torrent (1 MiB pieces), as a fill does.
async fn put_with_torrent(store: &Store, data: &[u8]) -> Digest {
    let d = Digest::of(data);
    let pieces = data
        .chunks(1 << 20)
        .flat_map(<sha1::Sha1 as sha1::Digest>::digest)
        .collect();
    let row = Some(TorrentRow {
        digest: d,
        infohash: [7; 20],
        piece_length: 1 << 20,
        pieces,
    });
    let s = store.clone();
    let owned = data.to_vec();
    let file = tokio::task::spawn_blocking(move || {
        let f = s.create_partial(&d, owned.len() as u64).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &owned, 0).unwrap();
        f
    })
    .await
    .unwrap();
    store
        .commit(d, data.len() as u64, Arc::new(file), row, false)
        .await
        .unwrap();
    d
}

#[tokio::test]
async fn a_damaged_blob_leaves_its_sound_pieces_for_the_fill_that_mends_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let d = put_with_torrent(&store, &data).await;
    flip_byte(&store.blob_path(&d), (5 << 20) / 2);

    let lease = store.acquire(&d).unwrap();
    let damage = read_checked(&lease, 0).unwrap_err();
    assert!(lease.drop_damaged(&damage));
    assert!(!lease.is_held());
    assert!(!store.blob_path(&d).exists());
    // The file is the fill's partial now, and the journal claims each piece with the
    // torrent's hash; the fill re-checks them (two match, the third does not).
    let partial = store.open_partial(&d, data.len() as u64).unwrap();
    let claims: Vec<(u64, u64)> = partial.resumed.iter().map(|r| (r.start, r.end)).collect();
    assert_eq!(
        claims,
        [(0, 1 << 20), (1 << 20, 2 << 20), (2 << 20, 3 << 20)]
    );
    let mut kept = Vec::new();
    for r in &partial.resumed {
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        std::os::unix::fs::FileExt::read_exact_at(&partial.file, &mut buf, r.start).unwrap();
        let h: [u8; 20] = <sha1::Sha1 as sha1::Digest>::digest(&buf).into();
        kept.push(h == r.sha1);
    }
    assert_eq!(kept, [true, true, false]);
}

#[tokio::test]
async fn a_damaged_blob_linked_from_elsewhere_is_never_written_into() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let data: Vec<u8> = (0..2u32 << 20).map(|i| (i % 13) as u8).collect();
    let d = put_with_torrent(&store, &data).await;
    // As `shoal import` leaves it: the blob file is a hard link to a file of the user's.
    let outside = dir.path().join("users-model-blob");
    fs::hard_link(store.blob_path(&d), &outside).unwrap();
    flip_byte(&outside, 7);
    let theirs = fs::read(&outside).unwrap();

    let lease = store.acquire(&d).unwrap();
    let damage = read_checked(&lease, 0).unwrap_err();
    assert!(lease.drop_damaged(&damage));
    assert!(!store.partial_path(&d).exists(), "not taken as a partial");
    assert_eq!(
        fs::read(&outside).unwrap(),
        theirs,
        "their file is left alone"
    );
}
