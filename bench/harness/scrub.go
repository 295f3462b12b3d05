// The scrub's cost (bench/run -phases scrub): warm serving while the background scrub
// hashes, against the same with the scrub off, measured in one run; and the scrub's CPU
// per GiB hashed.
//
// With the default period (a week) the scrub hashes a 500 GiB cache at about 1.7 MiB/s,
// far too little to measure against serving. So the "on" node runs it flat out instead:
// period 1 s over a cache of two blobs (the warm blob and the TTFB blob), which keeps it
// hashing most of the time as fast as one thread at nice 19 can. The figure is an upper
// bound on what a user's scrub costs.
package main

import (
	"context"
	"fmt"
	"time"
)

type scrubReport struct {
	OffSecs    []float64 `json:"serve_off_secs"`
	OnSecs     []float64 `json:"serve_on_secs"`
	HashedMBps float64   `json:"hashed_MBps_while_serving"`
	CPUSecs    float64   `json:"idle_window_cpu_secs"`
	HashedGiB  float64   `json:"idle_window_hashed_gib"`
}

func (b *bench) scrub(ctx context.Context) error {
	o, d, up, rep := b.o, b.d, b.up, b.rep
	off, err := startShoalEnv(o, up, "scrub-off", []string{"SHOAL_SCRUB__PERIOD=0s"})
	if err != nil {
		return err
	}
	defer off.stop(o)
	on, err := startShoalEnv(o, up, "scrub-on", []string{"SHOAL_SCRUB__PERIOD=1s"})
	if err != nil {
		return err
	}
	defer on.stop(o)
	url := func(s *shoalProc, bl blobInfo) string {
		return s.url() + "/v2/library/bench/blobs/" + bl.digest()
	}
	for _, s := range []*shoalProc{off, on} {
		if _, err := fullGet(ctx, url(s, d.Warm), d.Warm); err != nil {
			return fmt.Errorf("scrub: filling %s: %v", s.name, err)
		}
	}
	if _, err := fullGet(ctx, url(on, d.TTFB), d.TTFB); err != nil {
		return fmt.Errorf("scrub: filling %s: %v", on.name, err)
	}
	if _, err := off.waitIdle(1, 60*time.Second); err != nil {
		return err
	}
	if _, err := on.waitIdle(2, 60*time.Second); err != nil {
		return err
	}
	verified := func(s *shoalProc) (int64, error) {
		m, err := s.stats()
		return statInt(m, "verified_bytes"), err
	}
	sr := &scrubReport{}
	// The scrub alone, no client: its CPU per GiB hashed.
	v0, err := verified(on)
	if err != nil {
		return err
	}
	c0 := cpuSecs(on.p.pid())
	time.Sleep(10 * time.Second)
	v1, err := verified(on)
	if err != nil {
		return err
	}
	sr.CPUSecs, sr.HashedGiB = cpuSecs(on.p.pid())-c0, float64(v1-v0)/(1<<30)
	if v1 <= v0 {
		return fmt.Errorf("scrub: the scrub hashed nothing in 10 s (verified_bytes %d)", v1)
	}
	logf("scrub alone: hashed %.2f GiB in 10 s using %.2f CPU-s", sr.HashedGiB, sr.CPUSecs)

	// Serving, alternating which node goes first; untimed warm-up round each.
	for _, s := range []*shoalProc{off, on} {
		if _, err := rangeGet(ctx, url(s, d.Warm), d.Warm.Size, o.parallel); err != nil {
			return err
		}
	}
	var hashed int64
	var onTime float64
	for i := 0; i < o.warmReps; i++ {
		order := []*shoalProc{off, on}
		if i%2 == 1 {
			order = []*shoalProc{on, off}
		}
		for _, s := range order {
			h0, _ := verified(on)
			el, err := rangeGet(ctx, url(s, d.Warm), d.Warm.Size, o.parallel)
			if err != nil {
				return fmt.Errorf("scrub %s: %v", s.name, err)
			}
			if s == on {
				h1, _ := verified(on)
				hashed += h1 - h0
				onTime += el.Seconds()
				sr.OnSecs = append(sr.OnSecs, el.Seconds())
			} else {
				sr.OffSecs = append(sr.OffSecs, el.Seconds())
			}
			logf("scrub %d %-9s %d×%s ranges: %.3f s", i+1, s.name, o.parallel,
				human(d.Warm.Size/int64(o.parallel)), el.Seconds())
		}
	}
	sr.HashedMBps = float64(hashed) / onTime / 1e6
	rep.Scrub = sr
	ratio := median(sr.OnSecs) / median(sr.OffSecs)
	rep.Figures = append(rep.Figures,
		mkFigure("warm serving, scrub flat out / scrub off", ratio, "×", 1.02, 1.10,
			fmt.Sprintf("%d parallel ranged GETs of a cached %s blob, median of %d: on %.3f s [%s], off %.3f s [%s]; the scrub hashed %.0f MB/s meanwhile (about %.0f× a 500 GiB cache's weekly pace)",
				o.parallel, sizeStr(d.Warm.Size), o.warmReps, median(sr.OnSecs), fmtList(sr.OnSecs, 3),
				median(sr.OffSecs), fmtList(sr.OffSecs, 3), sr.HashedMBps, sr.HashedMBps*1e6/(2*500*(1<<30)/(7*86400.0)))),
		mkInfo("scrub CPU-s per GiB hashed", sr.CPUSecs/sr.HashedGiB, "s/GiB",
			fmt.Sprintf("the scrubbing node's utime+stime over 10 s with no client: %.2f s for %.2f GiB", sr.CPUSecs, sr.HashedGiB)))
	return nil
}
