//! Which bytes each upstream worker of a fill fetches next. Pure bookkeeping, no I/O, so
//! the policy is tested on its own:
//!
//! 1. **Demand first.** Readers waiting at an offset register a demand. A demand that no
//!    worker will reach within `lookahead` bytes gets a worker of its own, starting at the
//!    demanded byte: an unassigned region is taken from there, or a far-away span is split
//!    there. When every worker is busy, one doing background work is preempted. So the 16
//!    parts of an ollama pull, spread over the whole blob, each fill at source speed.
//! 2. **Then the gaps**, lowest offset first, which helps the prefix hasher and readers
//!    that go front to back.
//! 3. **Then steal**: an idle worker takes the back half of the span with the most left,
//!    so the tail of a slow span is never fetched by one connection alone.
//!
//! A span is `[pos, end)`: the bytes its worker has yet to land. A worker asks its source
//! for its span in bounded requests (`ask`); bytes up to `asked` are on their way, so
//! splits, steals and preemption only ever cut at or after `asked`. Nothing is asked twice
//! (the source sends each byte once) and every byte is written once, by one worker, so the
//! bytes the hasher reads are the bytes that stay in the file.
//!
//! Ranges can also be *held*: bytes a previous run left in the partial, waiting to be
//! re-verified. No worker is given them; if they fail verification they are let go and
//! become ordinary gaps.

use std::collections::BTreeMap;

use super::ranges::RangeSet;

/// Split points are aligned to this, which keeps writes page-aligned.
const ALIGN: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Bytes before this have landed.
    pub pos: u64,
    /// Bytes before this are claimed for a write in progress.
    pub claim: u64,
    /// Bytes before this have been asked of the source (`pos <= claim <= asked <= end`).
    pub asked: u64,
    pub end: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Fetch `[start, end)`; `end` may later shrink (see `Sched::landed`).
    Fetch { start: u64, end: u64 },
    /// Nothing to do now; wait for a scheduling change.
    Wait,
    /// Every byte has landed.
    Done,
}

#[derive(Debug)]
pub struct Sched {
    size: u64,
    min_span: u64,
    /// Steals cut here when they can (a torrent piece), so that each worker completes
    /// whole pieces, which the journal and peers can use at once.
    piece: u64,
    lookahead: u64,
    /// The location ignores `Range`: one worker streams the whole blob.
    single_stream: bool,
    landed: RangeSet,
    /// Waiting for re-verification: not to be fetched, not yet landed.
    held: RangeSet,
    /// `landed` ∪ `held`: what no worker is to fetch.
    taken: RangeSet,
    spans: Vec<Option<Span>>,
    demands: BTreeMap<u64, usize>,
    /// Shutting down: finish what was asked for, start nothing new.
    draining: bool,
}

impl Sched {
    pub fn new(
        size: u64,
        workers: usize,
        min_span: u64,
        lookahead: u64,
        single_stream: bool,
    ) -> Sched {
        Sched {
            size,
            min_span: min_span.max(ALIGN),
            piece: ALIGN,
            // A demand inside a claimed write is always "served soon", so never split there.
            lookahead: lookahead.max(crate::mirror::fill::FLUSH as u64),
            single_stream,
            landed: RangeSet::new(),
            held: RangeSet::new(),
            taken: RangeSet::new(),
            spans: vec![None; workers.max(1)],
            demands: BTreeMap::new(),
            draining: false,
        }
    }

    pub fn landed(&self) -> &RangeSet {
        &self.landed
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Steals cut at multiples of `piece` where they can.
    pub fn with_pieces(mut self, piece: u64) -> Sched {
        self.piece = piece.max(ALIGN);
        self
    }

    /// How many workers it schedules for.
    pub fn workers(&self) -> usize {
        self.spans.len()
    }

    /// The source turned out to ignore `Range`: from now on one worker streams the blob.
    pub fn set_single_stream(&mut self, single: bool) {
        self.single_stream = single;
    }

    pub fn complete(&self) -> bool {
        self.landed.covers(self.size)
    }

    /// Nothing is left for a worker: every byte has landed or is held.
    fn all_taken(&self) -> bool {
        self.taken.covers(self.size)
    }

    #[cfg(test)]
    pub fn span(&self, w: usize) -> Option<Span> {
        self.spans.get(w).copied().flatten()
    }

    /// The next job for worker `w`, whose previous span (if any) is given up.
    pub fn next_job(&mut self, w: usize) -> Job {
        self.spans[w] = None;
        if self.complete() || self.draining {
            return Job::Done;
        }
        if self.all_taken() {
            return Job::Wait;
        }
        let job = if self.single_stream {
            // One stream from byte 0, written from the first byte still missing.
            (w == 0).then(|| (self.next_missing(0).unwrap_or(0), self.size))
        } else {
            self.demand_job()
                .or_else(|| self.gap_job())
                .or_else(|| self.steal_job())
        };
        match job {
            Some((start, end)) => {
                self.spans[w] = Some(Span {
                    pos: start,
                    claim: start,
                    asked: start,
                    end,
                });
                Job::Fetch { start, end }
            }
            None if self.single_stream && w != 0 => Job::Done,
            None => Job::Wait,
        }
    }

    /// Worker `w` is about to ask its source for more of its span: the next at most `max`
    /// bytes after what it asked for so far, or `None` when its span is all asked for.
    /// From here on no split cuts before the end of what is returned.
    pub fn ask(&mut self, w: usize, max: u64) -> Option<(u64, u64)> {
        let span = self.spans.get_mut(w)?.as_mut()?;
        if span.asked >= span.end {
            return None;
        }
        let start = span.asked;
        let end = if self.single_stream {
            span.end
        } else {
            span.end.min(start.saturating_add(max.max(1)))
        };
        span.asked = end;
        Some((start, end))
    }

    /// Worker `w` is about to write `len` bytes at `at` (the next bytes of its span).
    /// Returns how many of them it may write: none beyond what it asked for.
    pub fn claim(&mut self, w: usize, at: u64, len: u64) -> u64 {
        match &mut self.spans[w] {
            Some(span) if span.claim == at && at < span.asked => {
                let n = len.min(span.asked - at);
                span.claim = at + n;
                n
            }
            _ => 0,
        }
    }

    /// Records that worker `w` wrote the bytes it claimed up to `end`. Returns whether it
    /// should keep reading its response (false once its span is used up or taken away).
    pub fn land(&mut self, w: usize, end: u64) -> bool {
        match &mut self.spans[w] {
            Some(span) => {
                let end = end.min(span.claim);
                self.landed.insert(span.pos, end);
                self.taken.insert(span.pos, end);
                span.pos = span.pos.max(end);
                span.pos < span.end
            }
            None => false,
        }
    }

    /// Records bytes that arrived from outside the workers (peers, or re-verified bytes of
    /// a previous run).
    pub fn land_external(&mut self, start: u64, end: u64) {
        let end = end.min(self.size);
        self.landed.insert(start, end);
        self.taken.insert(start, end);
    }

    /// Shutdown: every worker finishes the bytes it asked for (they are on their way and
    /// the source has sent them), asks for nothing more, and then has no next job.
    pub fn drain(&mut self) {
        self.draining = true;
        for span in self.spans.iter_mut().flatten() {
            span.end = span.asked;
        }
    }

    /// Keeps `[start, end)` from every worker until it is landed or let go.
    pub fn hold(&mut self, start: u64, end: u64) {
        let end = end.min(self.size);
        self.held.insert(start, end);
        self.taken.insert(start, end);
    }

    /// Gives held bytes back: what has not landed there becomes an ordinary gap again.
    pub fn let_go(&mut self, start: u64, end: u64) {
        self.held.remove(start, end);
        self.taken.remove(start, end);
        for (s, e) in self.landed.runs_within(start, end) {
            self.taken.insert(s, e);
        }
    }

    /// Offsets where readers wait for bytes that have not landed, lowest first.
    pub fn waiting_demands(&self) -> Vec<u64> {
        self.demands
            .keys()
            .copied()
            .filter(|&d| d < self.size && !self.landed.contains(d))
            .collect()
    }

    /// The first byte at or after `from` that has not landed, wrapping around to 0.
    pub fn next_missing(&self, from: u64) -> Option<u64> {
        let gap_from = |p: u64| {
            let p = self.landed.run_end(p).unwrap_or(p);
            (p < self.size).then_some(p)
        };
        gap_from(from.min(self.size)).or_else(|| gap_from(0))
    }

    /// Worker `w` gives up its span (error or stall); the rest is unassigned again.
    pub fn release(&mut self, w: usize) {
        self.spans[w] = None;
    }

    /// A reader waits at `pos`. Returns true when workers should look at the schedule again
    /// (an idle one can serve it, or a background one was preempted for it).
    pub fn add_demand(&mut self, pos: u64) -> bool {
        *self.demands.entry(pos).or_default() += 1;
        if self.single_stream || self.draining || pos >= self.size || self.served_soon(pos) {
            return false;
        }
        if self.spans.iter().any(Option::is_none) {
            return true;
        }
        // Everyone is busy: stop a worker that no reader is waiting on, preferably the one
        // whose span holds `pos` (it would have got there last).
        let holder = self.holder(pos).filter(|&i| !self.serves_demand(i));
        let victim = holder.or_else(|| {
            (0..self.spans.len())
                .filter(|&i| !self.serves_demand(i))
                .filter_map(|i| self.spans[i].map(|s| (s.end - s.asked, i)))
                .filter(|(left, _)| *left > 0)
                .max()
                .map(|(_, i)| i)
        });
        match victim.and_then(|i| self.spans[i].as_mut()) {
            // It finishes what it asked for, then comes back for a new job.
            Some(span) if span.end > span.asked => {
                span.end = span.asked;
                true
            }
            _ => false,
        }
    }

    pub fn remove_demand(&mut self, pos: u64) {
        if let Some(n) = self.demands.get_mut(&pos) {
            *n -= 1;
            if *n == 0 {
                self.demands.remove(&pos);
            }
        }
    }

    /// Index of the worker whose span holds `pos`.
    fn holder(&self, pos: u64) -> Option<usize> {
        self.spans
            .iter()
            .position(|s| s.is_some_and(|s| s.pos <= pos && pos < s.end))
    }

    /// Some worker will write `pos` soon: it asked for it already, or it is within
    /// `lookahead` bytes of where the worker is. (Held bytes are on their way too.)
    fn served_soon(&self, pos: u64) -> bool {
        self.taken.contains(pos)
            || self
                .holder(pos)
                .and_then(|i| self.spans[i])
                .is_some_and(|s| pos < s.asked || pos - s.pos <= self.lookahead)
    }

    /// A reader waits in what worker `i` asked for, or just ahead of it.
    fn serves_demand(&self, i: usize) -> bool {
        let Some(s) = self.spans[i] else { return false };
        let reach = s.asked.max(s.pos.saturating_add(self.lookahead) + 1);
        let near = s.pos..s.end.min(reach);
        self.demands.range(near).next().is_some()
    }

    /// The end of the unassigned region that starts at the unassigned offset `pos`.
    fn gap_end(&self, pos: u64) -> u64 {
        let next_span = self
            .spans
            .iter()
            .flatten()
            .filter(|s| s.pos > pos && s.end > s.pos)
            .map(|s| s.pos)
            .min();
        [self.taken.next_start(pos), next_span, Some(self.size)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.size)
    }

    fn demand_job(&mut self) -> Option<(u64, u64)> {
        let pending: Vec<u64> = self
            .demands
            .keys()
            .copied()
            .filter(|&d| d < self.size && !self.served_soon(d))
            .collect();
        let &d = pending.first()?;
        match self.holder(d) {
            Some(i) => {
                let span = self.spans[i].as_mut()?;
                if d < span.asked {
                    return None;
                }
                let end = span.end;
                span.end = d;
                Some((d, end))
            }
            None => Some((d, self.gap_end(d))),
        }
    }

    fn gap_job(&self) -> Option<(u64, u64)> {
        let mut p = 0;
        while p < self.size {
            if let Some(e) = self.taken.run_end(p) {
                p = e;
            } else if let Some(i) = self.holder(p) {
                p = self.spans[i].map_or(p + 1, |s| s.end);
            } else {
                return Some((p, self.gap_end(p)));
            }
        }
        None
    }

    fn steal_job(&mut self) -> Option<(u64, u64)> {
        let (left, i) = self
            .spans
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (s.end - s.asked, i)))
            .max()?;
        if left < 2 * self.min_span {
            return None;
        }
        let span = self.spans[i].as_mut()?;
        let half = span.asked + left / 2;
        let mid = Some(half / self.piece * self.piece)
            .filter(|&m| m > span.asked)
            .unwrap_or(half / ALIGN * ALIGN);
        if mid <= span.asked {
            return None;
        }
        let end = span.end;
        span.end = mid;
        Some((mid, end))
    }
}

#[cfg(test)]
mod tests;
