use super::*;

const MIB: u64 = 1 << 20;

/// Asks for (as far as needed), claims and lands `[at, at + len)` for worker `w`, as a
/// worker does.
fn write(s: &mut Sched, w: usize, at: u64, len: u64) -> bool {
    if let Some(asked) = s.span(w).map(|sp| sp.asked) {
        if asked < at + len {
            s.ask(w, at + len - asked);
        }
    }
    let n = s.claim(w, at, len);
    s.land(w, at + n)
}

fn fetch(job: Job) -> (u64, u64) {
    match job {
        Job::Fetch { start, end } => (start, end),
        other => panic!("expected a fetch, got {other:?}"),
    }
}

#[test]
fn ollama_parts_each_get_a_worker() {
    // A 1 GB blob pulled as ollama does: 10 parts of 100 MB, all asked at once.
    let size = 1_000_000_000;
    let part = 100_000_000;
    let mut s = Sched::new(size, 16, 4 * MIB, MIB, false);
    for k in 0..10 {
        s.add_demand(k * part);
    }
    let mut starts: Vec<u64> = (0..10).map(|w| fetch(s.next_job(w)).0).collect();
    starts.sort();
    assert_eq!(starts, (0..10).map(|k| k * part).collect::<Vec<_>>());
    // Each part's worker ends at the next part.
    for w in 0..10 {
        let span = s.span(w).unwrap();
        assert_eq!(span.end - span.pos, part, "worker {w}: {span:?}");
    }
    // The rest steal back halves.
    for w in 10..16 {
        let (a, b) = fetch(s.next_job(w));
        assert!(
            b - a >= part / 2 && b - a < part / 2 + 65536,
            "w{w}: {a}..{b}"
        );
    }
}

#[test]
fn single_demand_spreads_by_stealing() {
    let size = 64 * MIB;
    let mut s = Sched::new(size, 4, 4 * MIB, MIB, false);
    s.add_demand(0);
    assert_eq!(fetch(s.next_job(0)), (0, size));
    assert_eq!(fetch(s.next_job(1)), (32 * MIB, size));
    assert_eq!(s.span(0).unwrap().end, 32 * MIB);
    let (a, _) = fetch(s.next_job(2));
    assert!(a == 16 * MIB || a == 48 * MIB);
    fetch(s.next_job(3));
}

#[test]
fn no_steal_below_min_span() {
    let mut s = Sched::new(6 * MIB, 4, 4 * MIB, MIB, false);
    assert_eq!(fetch(s.next_job(0)), (0, 6 * MIB));
    assert_eq!(s.next_job(1), Job::Wait);
}

#[test]
fn far_demand_splits_a_span() {
    let size = 100 * MIB;
    let mut s = Sched::new(size, 2, 4 * MIB, MIB, false);
    assert_eq!(fetch(s.next_job(0)), (0, size));
    // Worker 1 is idle, so the demand only needs a wake-up.
    assert!(s.add_demand(70 * MIB));
    assert_eq!(fetch(s.next_job(1)), (70 * MIB, size));
    assert_eq!(s.span(0).unwrap().end, 70 * MIB);
    // A demand just ahead of a worker is left to it.
    assert!(!s.add_demand(70 * MIB + 1000));
}

#[test]
fn busy_workers_are_preempted_for_a_demand() {
    let size = 100 * MIB;
    let mut s = Sched::new(size, 2, 4 * MIB, MIB, false);
    fetch(s.next_job(0)); // [0, 100)
    fetch(s.next_job(1)); // [50, 100)
                          // A reader waits at 10 MiB: worker 0 holds it but is 10 MiB away, and no reader waits
                          // on it, so it is stopped and will come back for the demand.
    assert!(s.add_demand(10 * MIB));
    let span0 = s.span(0).unwrap();
    assert_eq!(span0.pos, span0.end, "worker 0 preempted");
    assert!(
        !write(&mut s, 0, 0, 64 * 1024),
        "it stops at its next write"
    );
    assert_eq!(fetch(s.next_job(0)), (10 * MIB, 50 * MIB));
}

#[test]
fn workers_serving_readers_are_not_preempted() {
    let size = 100 * MIB;
    let mut s = Sched::new(size, 1, 4 * MIB, MIB, false);
    s.add_demand(0);
    fetch(s.next_job(0));
    assert!(!s.add_demand(90 * MIB), "the only worker serves a reader");
    assert_eq!(s.span(0).unwrap().end, size);
}

#[test]
fn release_returns_bytes_to_the_pool() {
    let size = 8 * MIB;
    let mut s = Sched::new(size, 1, 4 * MIB, MIB, false);
    assert_eq!(fetch(s.next_job(0)), (0, size));
    assert!(write(&mut s, 0, 0, MIB));
    s.release(0);
    assert_eq!(fetch(s.next_job(0)), (MIB, size));
}

#[test]
fn single_stream_uses_one_worker() {
    let mut s = Sched::new(10, 3, 4 * MIB, MIB, true);
    assert_eq!(s.next_job(1), Job::Done);
    assert_eq!(fetch(s.next_job(0)), (0, 10));
    assert!(!s.add_demand(5));
    assert!(!write(&mut s, 0, 0, 10));
    assert!(s.complete());
    assert_eq!(s.next_job(0), Job::Done);
}

#[test]
fn empty_blob_is_done_at_once() {
    let mut s = Sched::new(0, 2, 4 * MIB, MIB, false);
    assert!(s.complete());
    assert_eq!(s.next_job(0), Job::Done);
}

/// Random workers, random demands, random failures: every byte lands exactly where it
/// should, spans never overlap, and the fill always finishes.
#[test]
fn simulation_always_completes() {
    for seed in 0..300 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let size = rng.u64(1..40 * MIB);
        let workers = rng.usize(1..8);
        let mut s = Sched::new(
            size,
            workers,
            64 * 1024 * rng.u64(1..8),
            rng.u64(0..MIB),
            false,
        );
        let mut jobs: Vec<Option<(u64, u64)>> = vec![None; workers];
        let mut steps = 0;
        while !s.complete() {
            steps += 1;
            assert!(steps < 100_000, "seed {seed}: no progress");
            if rng.u8(0..10) == 0 {
                let d = rng.u64(0..size);
                s.add_demand(d);
                if rng.bool() {
                    s.remove_demand(d);
                }
            }
            let w = rng.usize(0..workers);
            match jobs[w] {
                None => match s.next_job(w) {
                    Job::Fetch { start, end } => {
                        assert!(start < end && end <= size, "seed {seed}: {start}..{end}");
                        jobs[w] = Some((start, end));
                    }
                    Job::Wait | Job::Done => {}
                },
                Some((pos, end)) => {
                    if rng.u8(0..20) == 0 {
                        s.release(w);
                        jobs[w] = None;
                        continue;
                    }
                    let asked = s.span(w).map_or(pos, |sp| sp.asked);
                    if asked <= pos && s.ask(w, rng.u64(1..=4 * MIB)).is_none() {
                        // Its span was cut to what it had asked for: on to a new job.
                        jobs[w] = None;
                        continue;
                    }
                    let n = s.claim(w, pos, rng.u64(1..=MIB).min(end - pos));
                    // Another worker may act between the claim and the landing.
                    if rng.bool() {
                        let other = rng.usize(0..workers);
                        if jobs[other].is_none() {
                            if let Job::Fetch { start, end } = s.next_job(other) {
                                jobs[other] = Some((start, end));
                            }
                        }
                    }
                    let more = s.land(w, pos + n);
                    jobs[w] = (more && n > 0).then_some((pos + n, end));
                }
            }
            // Invariant: live spans never overlap, and none holds landed bytes.
            let mut live: Vec<Span> = (0..workers)
                .filter_map(|i| s.span(i))
                .filter(|sp| sp.pos < sp.end)
                .collect();
            live.sort_by_key(|sp| sp.pos);
            for pair in live.windows(2) {
                assert!(pair[0].end <= pair[1].pos, "seed {seed}: overlap {pair:?}");
            }
            for sp in &live {
                assert!(
                    sp.pos <= sp.claim && sp.claim <= sp.asked && sp.asked <= sp.end,
                    "seed {seed}: {sp:?}"
                );
                assert!(
                    s.landed().next_start(sp.pos).is_none_or(|n| n >= sp.end),
                    "seed {seed}: span {sp:?} holds landed bytes"
                );
            }
        }
        assert_eq!(s.landed().total(), size);
    }
}

#[test]
fn demands_and_missing_bytes_for_steering() {
    let mut s = Sched::new(10 * MIB, 1, 4 * MIB, MIB, false);
    s.land_external(0, 2 * MIB);
    s.land_external(5 * MIB, 10 * MIB);
    s.add_demand(MIB); // landed: not waiting
    s.add_demand(3 * MIB);
    assert_eq!(s.waiting_demands(), vec![3 * MIB]);
    assert_eq!(s.next_missing(0), Some(2 * MIB));
    assert_eq!(s.next_missing(4 * MIB), Some(4 * MIB));
    assert_eq!(s.next_missing(6 * MIB), Some(2 * MIB), "wraps around");
    s.land_external(2 * MIB, 5 * MIB);
    assert_eq!(s.next_missing(0), None);
}

#[test]
fn nothing_cuts_into_what_was_asked() {
    let size = 100 * MIB;
    let mut s = Sched::new(size, 2, 4 * MIB, MIB, false);
    assert_eq!(fetch(s.next_job(0)), (0, size));
    assert_eq!(s.ask(0, 8 * MIB), Some((0, 8 * MIB)));
    // A demand inside the request on its way is served by it: no split there.
    s.add_demand(6 * MIB);
    assert_eq!(s.span(0).unwrap().end, size);
    // A steal takes the back half of what is not asked for.
    let (a, b) = fetch(s.next_job(1));
    assert_eq!(b, size);
    assert!(a >= 8 * MIB, "stole from {a}, inside the asked bytes");
    assert_eq!(s.span(0).unwrap().end, a);
    // Asking stops at the span's (new) end.
    assert_eq!(s.ask(0, size), Some((8 * MIB, a)));
    assert_eq!(s.ask(0, size), None);
    // Claims never go past what was asked.
    assert_eq!(s.claim(0, 0, 200 * MIB), a);
}

#[test]
fn preemption_lets_the_asked_bytes_finish() {
    let size = 100 * MIB;
    let mut s = Sched::new(size, 1, 4 * MIB, MIB, false);
    fetch(s.next_job(0));
    s.ask(0, 16 * MIB);
    assert!(s.add_demand(50 * MIB), "the busy worker is preempted");
    let span = s.span(0).unwrap();
    assert_eq!(span.end, 16 * MIB, "it keeps what it asked for");
    assert!(write(&mut s, 0, 0, 8 * MIB));
    assert!(!write(&mut s, 0, 8 * MIB, 8 * MIB), "then its span ends");
    assert_eq!(fetch(s.next_job(0)), (50 * MIB, size));
}

#[test]
fn held_bytes_go_to_no_worker_until_let_go() {
    let size = 10 * MIB;
    let mut s = Sched::new(size, 2, 4 * MIB, MIB, false);
    s.hold(0, 4 * MIB);
    s.hold(6 * MIB, size);
    assert_eq!(fetch(s.next_job(0)), (4 * MIB, 6 * MIB));
    assert!(!s.add_demand(MIB), "a held byte is on its way");
    assert_eq!(s.next_job(1), Job::Wait, "everything else is held");
    assert!(!s.complete());
    // The first held range checks out; the second does not.
    s.land_external(0, 4 * MIB);
    s.let_go(6 * MIB, size);
    assert_eq!(fetch(s.next_job(1)), (6 * MIB, size));
    assert!(write(&mut s, 0, 4 * MIB, 2 * MIB) || s.span(0).unwrap().pos == 6 * MIB);
    write(&mut s, 1, 6 * MIB, 4 * MIB);
    assert!(s.complete());
}

#[test]
fn draining_finishes_what_was_asked_and_nothing_more() {
    let size = 100 * MIB;
    let mut s = Sched::new(size, 2, 4 * MIB, MIB, false);
    fetch(s.next_job(0));
    s.ask(0, 8 * MIB);
    let (b, _) = fetch(s.next_job(1));
    s.ask(1, 4 * MIB);
    s.drain();
    assert_eq!(s.ask(0, MIB), None, "nothing more is asked");
    assert!(write(&mut s, 0, 0, 4 * MIB));
    assert!(
        !write(&mut s, 0, 4 * MIB, 4 * MIB),
        "the asked bytes end it"
    );
    assert!(!write(&mut s, 1, b, 4 * MIB));
    assert_eq!(s.next_job(0), Job::Done);
    assert!(!s.add_demand(50 * MIB), "no worker comes for a demand now");
    assert_eq!(s.landed().total(), 12 * MIB, "what both had asked for");
}
