use super::*;

const MIB: u64 = 1 << 20;

#[test]
fn piece_length_rule() {
    let cases = [
        (0, MIB),
        (1, MIB),
        (2000 * MIB, MIB),
        (2000 * MIB + 1, 2 * MIB),
        (4_700_000_000, 4 * MIB),
        (2000 * 16 * MIB, 16 * MIB),
        (100 * 1024 * MIB * 1024, 16 * MIB),
        (u64::MAX, 16 * MIB),
    ];
    for (size, want) in cases {
        assert_eq!(piece_length(size), want, "size {size}");
    }
}

#[test]
fn piece_hasher_matches_hashing_pieces_directly() {
    let mut rng = fastrand::Rng::with_seed(3);
    for size in [
        0usize,
        1,
        MIB as usize - 1,
        MIB as usize,
        MIB as usize + 1,
        3 * MIB as usize + 77,
    ] {
        let data: Vec<u8> = (0..size).map(|_| rng.u8(..)).collect();
        let digest = Digest::of(&data);
        // Fed in odd-sized chunks.
        let mut h = PieceHasher::new(size as u64);
        let mut rest = &data[..];
        while !rest.is_empty() {
            let n = rng.usize(1..=rest.len().min(300_000));
            h.update(&rest[..n]);
            rest = &rest[n..];
        }
        let t = h.finish(digest, size as u64);
        t.check().unwrap();
        let want: Vec<u8> = data
            .chunks(MIB as usize)
            .flat_map(|c| Sha1::digest(c).to_vec())
            .collect();
        assert_eq!(t.pieces, want, "size {size}");
        // An exact multiple of the piece length has no extra (empty) piece.
        assert_eq!(t.pieces.len() as u64 / 20, (size as u64).div_ceil(MIB));
    }
}

#[test]
fn info_dict_is_canonical_and_stable() {
    let data = b"hello shoal";
    let mut h = PieceHasher::new(data.len() as u64);
    h.update(data);
    let t = h.finish(Digest::of(data), data.len() as u64);
    let info = t.info_bytes().unwrap();
    let expected = format!(
        "d6:lengthi11e4:name71:sha256-{}12:piece lengthi1048576e6:pieces20:",
        Digest::of(data).hex()
    );
    assert!(
        info.starts_with(expected.as_bytes()),
        "{}",
        String::from_utf8_lossy(&info)
    );
    assert_eq!(
        &info[expected.len()..expected.len() + 20],
        Sha1::digest(data).as_slice()
    );
    assert_eq!(info.last(), Some(&b'e'));
    // Same bytes, same infohash: pinned, because changing it splits every swarm.
    assert_eq!(
        hex::encode(t.infohash().unwrap()),
        hex::encode(Sha1::digest(&info))
    );
}

#[test]
fn torrent_file_embeds_the_exact_info_dict() {
    let data = vec![7u8; 3 * MIB as usize];
    let mut h = PieceHasher::new(data.len() as u64);
    h.update(&data);
    let t = h.finish(Digest::of(&data), data.len() as u64);
    let trackers = vec![
        "http://10.0.0.1:9200/announce".to_owned(),
        "http://10.0.0.2:9200/announce".to_owned(),
    ];
    let file = t.torrent_file(&trackers).unwrap();
    // Decoded independently (bendy): keys in order, and the info value is the exact dict.
    let mut dec = bendy::decoding::Decoder::new(&file);
    let Some(bendy::decoding::Object::Dict(mut d)) = dec.next_object().unwrap() else {
        panic!("a .torrent is a dict");
    };
    let mut keys = Vec::new();
    let mut info_raw = Vec::new();
    while let Some((k, v)) = d.next_pair().unwrap() {
        keys.push(String::from_utf8(k.to_vec()).unwrap());
        if k == b"info" {
            let bendy::decoding::Object::Dict(info) = v else {
                panic!("info is a dict")
            };
            info_raw = info.into_raw().unwrap().to_vec();
        }
    }
    assert_eq!(keys, ["announce", "announce-list", "created by", "info"]);
    assert_eq!(info_raw, t.info_bytes().unwrap());
    assert!(file.starts_with(b"d8:announce29:http://10.0.0.1:9200/announce13:announce-listll29:http://10.0.0.1:9200/announce"));
    assert_eq!(file.last(), Some(&b'e'));
}

#[test]
fn check_refuses_wrong_piece_counts() {
    let t = TorrentInfo {
        digest: Digest::of(b""),
        size: 3 * MIB,
        piece_length: MIB,
        pieces: vec![0; 40],
    };
    assert!(t.check().is_err());
    let t = TorrentInfo {
        pieces: vec![0; 60],
        ..t
    };
    assert!(t.check().is_ok());
    let t = TorrentInfo {
        piece_length: 2 * MIB,
        ..t
    };
    assert!(t.check().is_err());
}

#[test]
fn parses_and_checks_offered_torrents() {
    let data = vec![3u8; 2 * MIB as usize + 5];
    let digest = Digest::of(&data);
    let mut h = PieceHasher::new(data.len() as u64);
    h.update(&data);
    let t = h.finish(digest, data.len() as u64);
    let ih = t.infohash().unwrap();
    let file = t.torrent_file(&["http://x/announce".into()]).unwrap();
    assert_eq!(parse_torrent_file(&file, digest, ih).unwrap(), t);

    // Wrong infohash, wrong digest, tampered bytes, garbage: all refused.
    assert!(parse_torrent_file(&file, digest, [0; 20]).is_err());
    assert!(parse_torrent_file(&file, Digest::of(b"other"), ih).is_err());
    let mut tampered = file.clone();
    let at = tampered.len() - 10;
    tampered[at] ^= 1;
    assert!(parse_torrent_file(&tampered, digest, ih).is_err());
    assert!(parse_torrent_file(b"not bencode", digest, ih).is_err());
    assert!(parse_torrent_file(b"d4:infoi1ee", digest, ih).is_err());
    // An extra key in the info dict is not shoal's torrent.
    let extra = {
        let mut info = t.info_bytes().unwrap();
        info.pop();
        info.extend_from_slice(b"7:privatei1ee");
        let mut f = b"d4:info".to_vec();
        f.extend_from_slice(&info);
        f.push(b'e');
        f
    };
    assert!(parse_torrent_file(&extra, digest, ih).is_err());
}
