//! A set of byte offsets kept as sorted, disjoint, non-adjacent half-open intervals: the
//! bytes of a fill that have landed on disk.

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RangeSet {
    runs: Vec<(u64, u64)>,
}

impl RangeSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `[start, end)`, merging with neighbours it touches or overlaps.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // First run that could touch: the first whose end >= start.
        let i = self.runs.partition_point(|&(_, e)| e < start);
        let mut j = i;
        let (mut s, mut e) = (start, end);
        while j < self.runs.len() && self.runs[j].0 <= e {
            s = s.min(self.runs[j].0);
            e = e.max(self.runs[j].1);
            j += 1;
        }
        self.runs.splice(i..j, [(s, e)]);
    }

    /// Removes `[start, end)`, splitting a run that straddles either edge.
    pub fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let i = self.runs.partition_point(|&(_, e)| e <= start);
        let mut keep = Vec::new();
        let mut j = i;
        while j < self.runs.len() && self.runs[j].0 < end {
            let (s, e) = self.runs[j];
            if s < start {
                keep.push((s, start));
            }
            if e > end {
                keep.push((end, e));
            }
            j += 1;
        }
        self.runs.splice(i..j, keep);
    }

    /// The present runs, clipped to `[start, end)`.
    pub fn runs_within(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let i = self.runs.partition_point(|&(_, e)| e <= start);
        self.runs[i..]
            .iter()
            .take_while(|&&(s, _)| s < end)
            .map(|&(s, e)| (s.max(start), e.min(end)))
            .collect()
    }

    /// Every run, in order.
    pub fn runs(&self) -> &[(u64, u64)] {
        &self.runs
    }

    pub fn contains(&self, pos: u64) -> bool {
        self.run_end(pos).is_some()
    }

    /// The end of the run holding `pos`: bytes `[pos, end)` are all present.
    pub fn run_end(&self, pos: u64) -> Option<u64> {
        let i = self.runs.partition_point(|&(_, e)| e <= pos);
        self.runs
            .get(i)
            .filter(|&&(s, _)| s <= pos)
            .map(|&(_, e)| e)
    }

    /// The first present offset at or after `pos`.
    pub fn next_start(&self, pos: u64) -> Option<u64> {
        let i = self.runs.partition_point(|&(_, e)| e <= pos);
        self.runs.get(i).map(|&(s, _)| s.max(pos))
    }

    /// True when `[0, size)` is entirely present.
    pub fn covers(&self, size: u64) -> bool {
        size == 0 || self.runs.first().is_some_and(|&(s, e)| s == 0 && e >= size)
    }

    pub fn total(&self) -> u64 {
        self.runs.iter().map(|(s, e)| e - s).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_merge() {
        let mut r = RangeSet::new();
        r.insert(10, 20);
        r.insert(30, 40);
        assert_eq!(r.runs, vec![(10, 20), (30, 40)]);
        r.insert(20, 30); // touches both
        assert_eq!(r.runs, vec![(10, 40)]);
        r.insert(0, 5);
        r.insert(50, 60);
        r.insert(4, 55); // overlaps three
        assert_eq!(r.runs, vec![(0, 60)]);
        r.insert(5, 5); // empty
        assert_eq!(r.total(), 60);
    }

    #[test]
    fn queries() {
        let mut r = RangeSet::new();
        r.insert(10, 20);
        r.insert(30, 40);
        assert_eq!(r.run_end(9), None);
        assert_eq!(r.run_end(10), Some(20));
        assert_eq!(r.run_end(19), Some(20));
        assert_eq!(r.run_end(20), None);
        assert_eq!(r.next_start(0), Some(10));
        assert_eq!(r.next_start(15), Some(15));
        assert_eq!(r.next_start(20), Some(30));
        assert_eq!(r.next_start(40), None);
        assert!(!r.covers(40));
        r.insert(0, 10);
        r.insert(20, 30);
        assert!(r.covers(40));
        assert!(!r.covers(41));
        assert!(RangeSet::new().covers(0));
    }

    #[test]
    fn removes_split_runs() {
        let mut r = RangeSet::new();
        r.insert(0, 100);
        r.remove(10, 20);
        assert_eq!(r.runs, vec![(0, 10), (20, 100)]);
        r.remove(5, 25);
        assert_eq!(r.runs, vec![(0, 5), (25, 100)]);
        r.remove(0, 200);
        assert!(r.runs.is_empty());
        r.insert(0, 10);
        r.insert(20, 30);
        assert_eq!(r.runs_within(5, 25), vec![(5, 10), (20, 25)]);
        assert_eq!(r.runs_within(10, 20), vec![]);
    }

    #[test]
    fn matches_a_bitmap_under_random_inserts() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..200 {
            let mut r = RangeSet::new();
            let mut bits = [false; 200];
            for _ in 0..20 {
                let s = rng.u64(0..200);
                let e = rng.u64(s..=200);
                let add = rng.u8(0..4) != 0;
                if add {
                    r.insert(s, e);
                } else {
                    r.remove(s, e);
                }
                for b in &mut bits[s as usize..e as usize] {
                    *b = add;
                }
                for pos in 0..200u64 {
                    assert_eq!(r.contains(pos), bits[pos as usize]);
                }
                assert_eq!(r.total(), bits.iter().filter(|b| **b).count() as u64);
                for w in r.runs.windows(2) {
                    assert!(w[0].1 < w[1].0, "runs must be disjoint and not adjacent");
                }
            }
        }
    }
}
