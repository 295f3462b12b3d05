//! A crowd of connections that never finish a request cannot take the server down: it
//! keeps answering, and closes them after its header timeout, so its file descriptors
//! come back. Runs the real binary (its own process, its own descriptor limit).

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CROWD: usize = 2000;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_sent_requests_are_timed_out_and_the_server_keeps_answering() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        // This test process needs a descriptor per connection too.
        let mut l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let need = (CROWD as u64 + 512).min(l.maximum.unwrap_or(u64::MAX));
        if l.current.is_some_and(|c| c < need) {
            l.current = Some(need);
            let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, l);
        }

        let up = FakeUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let p = spawn_shoal(dir.path(), &up.url(), free_port()).await;
        let pid = p.child.id();
        let before = open_fds(pid);
        let addr = p.url.trim_start_matches("http://").to_owned();

        // Half a request line: too short for the server even to know it is HTTP/1.1.
        // Every tenth sends a whole request line and a header, but no end of headers.
        let mut crowd = Vec::with_capacity(CROWD);
        for i in 0..CROWD {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let bytes: &[u8] = if i % 10 == 0 {
                b"GET /v2/ HTTP/1.1\r\nHost: x\r\n"
            } else {
                b"GET /v2/ HT"
            };
            s.write_all(bytes).await.unwrap();
            crowd.push(s);
        }
        let opened = Instant::now();

        // Still answering, at once.
        let r = get(&format!("{}/_shoal/v1/health", p.url), &[]).await;
        assert_eq!(r.status, 200);
        assert!(
            open_fds(pid) >= before + CROWD / 2,
            "the crowd is connected"
        );

        // Every one of them is closed by the server within its header timeout (20 s).
        for mut s in crowd {
            let mut buf = [0u8; 256];
            let left = Duration::from_secs(40).saturating_sub(opened.elapsed());
            let read = tokio::time::timeout(left, s.read(&mut buf)).await;
            assert!(
                matches!(read, Ok(Ok(_)) | Ok(Err(_))),
                "a half-sent request was still open after {:?}",
                opened.elapsed()
            );
        }
        let back = eventually(Duration::from_secs(5), async || open_fds(pid) <= before + 8).await;
        assert!(
            back,
            "descriptors: {} before, {} now",
            before,
            open_fds(pid)
        );
        let r = get(&format!("{}/_shoal/v1/health", p.url), &[]).await;
        assert_eq!(r.status, 200);
    })
    .await
    .expect("test timed out");
}
