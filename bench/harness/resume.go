package main

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"
)

// resumeAt is the share of the blob shoal has fetched upstream when it is stopped.
const resumeAt = 0.5

type resumeSample struct {
	Signal string `json:"signal"`
	// First run: shoal's upstream_bytes at the last poll before the signal, the client's
	// body bytes by then, how long the process took to exit, and what the CDN sent.
	UpstreamAtSignal int64    `json:"upstream_bytes_at_signal"`
	ClientBytes      int64    `json:"first_client_bytes"`
	ExitSecs         float64  `json:"exit_secs"`
	FirstCDN         cdnCount `json:"first_run_cdn"`
	// Second run, on the same data dir: upstream_bytes as restored from the index at
	// start-up (persisted every 5 s and at a clean shutdown), what it fetched itself, the
	// plain GET's time (sha256 checked) and the wait for the commit.
	Restored  int64   `json:"restored_upstream_bytes"`
	Upstream2 int64   `json:"second_run_upstream_bytes"`
	GetSecs   float64 `json:"second_get_secs"`
	// When upstream_bytes last grew, from the start of the second GET (polled every
	// 100 ms): the end of the second run's upstream transfer.
	UpstreamDoneSecs float64  `json:"second_upstream_done_secs"`
	CommitSecs       float64  `json:"second_commit_wait_secs"`
	SecondCDN        cdnCount `json:"second_run_cdn"`
	// Both runs: the CDN's bytes, and shoal's own count (max(at signal, restored) +
	// second run), each against the blob.
	CDNPerBlob   float64 `json:"cdn_bytes_per_blob_byte"`
	ShoalPerBlob float64 `json:"shoal_upstream_bytes_per_blob_byte"`
}

// resume: a fresh shoal fills the layer blob for one plain GET; at half the blob upstream
// it is killed (SIGKILL, then in another sample SIGTERM) and the client abandoned; a new
// shoal on the same data dir serves the whole blob to a new plain GET. What both runs cost
// the CDN, against the blob, is the figure.
func (b *bench) resume(ctx context.Context) error {
	o, d, rep := b.o, b.d, b.rep
	goals := map[string][2]float64{"SIGKILL": {1.1, 1.2}, "SIGTERM": {1.02, 1.05}}
	by := map[string][]float64{}
	shoalBy := map[string][]float64{}
	for i := 0; i < o.resumeReps; i++ {
		for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
			s, err := b.resumeOnce(ctx, i, sig, d.Layer)
			if err != nil {
				return err
			}
			rep.Resume = append(rep.Resume, s)
			by[s.Signal] = append(by[s.Signal], s.CDNPerBlob)
			shoalBy[s.Signal] = append(shoalBy[s.Signal], s.ShoalPerBlob)
			logf("resume %d %s: CDN sent %.4f× the blob (%.3f GB before the signal, %.3f GB after the restart); shoal fetched %.3f GB before (at the last poll; %.3f GB restored at restart) and %.3f GB after; exit %.2f s; second GET %.2f s (its upstream transfer ended at %.2f s), commit %.2f s later",
				i+1, s.Signal, s.CDNPerBlob, float64(s.FirstCDN.Bytes)/1e9, float64(s.SecondCDN.Bytes)/1e9,
				float64(s.UpstreamAtSignal)/1e9, float64(s.Restored)/1e9, float64(s.Upstream2)/1e9, s.ExitSecs, s.GetSecs, s.UpstreamDoneSecs, s.CommitSecs)
		}
	}
	for _, sig := range []string{"SIGKILL", "SIGTERM"} {
		g := goals[sig]
		rep.Figures = append(rep.Figures, mkFigure("resume after "+sig+": CDN bytes / blob", median(by[sig]), "×", g[0], g[1],
			fmt.Sprintf("a plain GET of the %s layer through a fresh shoal, %s at %.0f%% upstream, then a new shoal on the same data dir and a whole GET again; both runs' CDN $bytes_sent: %s; shoal's own upstream_bytes / blob: %s",
				sizeStr(d.Layer.Size), sig, 100*resumeAt, ratioStats(by[sig]), ratioStats(shoalBy[sig]))))
	}
	return nil
}

func sigName(sig syscall.Signal) string {
	if sig == syscall.SIGKILL {
		return "SIGKILL"
	}
	return "SIGTERM"
}

func (b *bench) resumeOnce(ctx context.Context, i int, sig syscall.Signal, blob blobInfo) (resumeSample, error) {
	o, up := b.o, b.up
	s := resumeSample{Signal: sigName(sig)}
	tag := fmt.Sprintf("resume%d-%s", i, s.Signal)
	path := "/v2/library/bench/blobs/" + blob.digest()
	syscall.Sync()
	mark := up.mark()
	sh, err := startShoal(o, up, tag)
	if err != nil {
		return s, err
	}
	defer sh.stop(o)
	if !o.keep {
		defer os.RemoveAll(sh.dataDir)
	}
	if err := b.stopHalfway(ctx, sh, sig, blob, &s); err != nil {
		return s, err
	}
	if s.FirstCDN, err = up.cdnSince(mark); err != nil {
		return s, err
	}
	mark = up.mark()

	sh2, err := startShoalOn(o, up, tag+"-restart", sh.dataDir)
	if err != nil {
		return s, err
	}
	defer sh2.stop(o)
	m, err := sh2.stats()
	if err != nil {
		return s, err
	}
	s.Restored = statInt(m, "upstream_bytes")
	done := watchUpstream(sh2, s.Restored)
	el, err := fullGet(ctx, sh2.url()+path, blob)
	s.UpstreamDoneSecs = done()
	if err != nil {
		return s, fmt.Errorf("%s: whole GET after the restart: %v\nshoal log:\n%s", tag, err, logTail(sh2.p.log, 20))
	}
	s.GetSecs = el.Seconds()
	tw := time.Now()
	if m, err = sh2.waitIdle(1, 60*time.Second); err != nil {
		return s, err
	}
	s.CommitSecs = time.Since(tw).Seconds()
	s.Upstream2 = statInt(m, "upstream_bytes") - s.Restored
	sh2.stop(o)
	if s.SecondCDN, err = up.cdnSince(mark); err != nil {
		return s, err
	}
	first := s.UpstreamAtSignal
	if s.Restored > first {
		first = s.Restored
	}
	s.CDNPerBlob = s.FirstCDN.add(s.SecondCDN).per(blob.Size)
	s.ShoalPerBlob = float64(first+s.Upstream2) / float64(blob.Size)
	return s, nil
}

// watchUpstream polls sh's upstream_bytes every 100 ms from now on; the function it
// returns stops that and says when the counter last grew (seconds from now).
func watchUpstream(sh *shoalProc, from int64) func() float64 {
	t0, stop, res := time.Now(), make(chan struct{}), make(chan float64, 1)
	go func() {
		last, at := from, 0.0
		for {
			select {
			case <-stop:
				res <- at
				return
			case <-time.After(100 * time.Millisecond):
			}
			if m, err := sh.stats(); err == nil {
				if n := statInt(m, "upstream_bytes"); n > last {
					last, at = n, time.Since(t0).Seconds()
				}
			}
		}
	}()
	return func() float64 { close(stop); return <-res }
}

// stopHalfway starts one plain GET of blob through sh in the background, polls
// upstream_bytes every 50 ms until it reaches resumeAt of the blob, then sends sig to
// shoal's process group, waits for it to exit and abandons the client. The data dir stays.
func (b *bench) stopHalfway(ctx context.Context, sh *shoalProc, sig syscall.Signal, blob blobInfo, s *resumeSample) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		n   int64
		err error
	}
	got := make(chan result, 1)
	go func() {
		n, err := discardGet(cctx, sh.url()+"/v2/library/bench/blobs/"+blob.digest())
		got <- result{n, err}
	}()
	t0 := time.Now()
	for s.UpstreamAtSignal < int64(resumeAt*float64(blob.Size)) {
		select {
		case r := <-got:
			return fmt.Errorf("resume: the first GET ended (%d bytes, %v) before shoal had fetched %.0f%% upstream\nshoal log:\n%s",
				r.n, r.err, 100*resumeAt, logTail(sh.p.log, 20))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Since(t0) > b.o.pullTimeout {
			return fmt.Errorf("resume: shoal fetched only %d bytes upstream in %s", s.UpstreamAtSignal, b.o.pullTimeout)
		}
		if m, err := sh.stats(); err == nil {
			s.UpstreamAtSignal = statInt(m, "upstream_bytes")
		}
	}
	ts := time.Now()
	syscall.Kill(-sh.p.pid(), sig)
	select {
	case <-sh.p.done:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("resume: shoal did not exit within 30 s of %s\n%s", sigName(sig), logTail(sh.p.log, 20))
	}
	s.ExitSecs = time.Since(ts).Seconds()
	cancel()
	r := <-got
	s.ClientBytes = r.n
	sh.p.stop(time.Second) // bookkeeping only: it has exited
	sh.stopped = true
	return nil
}
