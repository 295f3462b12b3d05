package main

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// cold16Parts is the number of parallel ranged GETs of the cold16 phase (ollama's 16 parts).
const cold16Parts = 16

type cold16Sample struct {
	Via        string   `json:"via"`
	Secs       float64  `json:"secs"` // HEAD + the 16 parts
	HeadSecs   float64  `json:"head_secs"`
	PartsSecs  float64  `json:"parts_secs"`
	CDN        cdnCount `json:"cdn"`
	CDNPerBlob float64  `json:"cdn_bytes_per_blob_byte"`
	// Through shoal: its upstream_bytes, the wait for the commit after the last byte, and
	// its CPU seconds from the HEAD to the commit (per GiB of the blob).
	Upstream   int64   `json:"shoal_upstream_bytes,omitempty"`
	CommitSecs float64 `json:"shoal_commit_wait_secs,omitempty"`
	ShoalCPU   float64 `json:"shoal_cpu_secs,omitempty"`
	CPUPerGiB  float64 `json:"shoal_cpu_secs_per_gib,omitempty"`
	// CPU seconds of nginx (and shoal) over the timed part, and the machine's busy share.
	CPU         map[string]float64 `json:"cpu_secs"`
	MachineBusy float64            `json:"machine_busy_share"`
}

// cold16: an uncached blob (the 400 MB blob of the TTFB test) in 16 equal ranged parts,
// each on its own connection, straight from the capped CDN vs through a fresh shoal,
// interleaved. Each side first sends a HEAD of the same URL, as ollama does; the time runs
// from the HEAD to the last byte of the last part. The parts are kept in memory and the
// assembled blob's sha256 is checked after the clock has stopped.
func (b *bench) cold16(ctx context.Context) error {
	o, d, rep := b.o, b.d, b.rep
	blob := d.TTFB
	buf := make([]byte, blob.Size)
	var direct, via []float64
	for i := 0; i < o.cold16Reps; i++ {
		order := []string{"direct", "shoal"}
		if i%2 == 1 {
			order = []string{"shoal", "direct"}
		}
		for _, which := range order {
			s, err := b.cold16Once(ctx, fmt.Sprintf("cold16-%d-%s", i, which), which, blob, buf)
			if err != nil {
				return err
			}
			rep.Cold16 = append(rep.Cold16, s)
			if which == "direct" {
				direct = append(direct, s.Secs)
				logf("cold16 %d %-6s %.3f s (HEAD %.3f s); CDN sent %.4f× the blob; nginx CPU %.2f s; machine %.0f%% busy",
					i+1, which, s.Secs, s.HeadSecs, s.CDNPerBlob, s.CPU["nginx"], 100*s.MachineBusy)
			} else {
				via = append(via, s.Secs)
				logf("cold16 %d %-6s %.3f s (HEAD %.3f s); CDN sent %.4f× the blob, shoal fetched %.4f×, committed %.2f s after the last byte; shoal CPU %.2f s to the commit (%.2f s/GiB); machine %.0f%% busy",
					i+1, which, s.Secs, s.HeadSecs, s.CDNPerBlob, float64(s.Upstream)/float64(blob.Size), s.CommitSecs,
					s.ShoalCPU, s.CPUPerGiB, 100*s.MachineBusy)
			}
		}
	}
	var cdnVia, cdnDirect, upVia, cpu []float64
	for _, s := range rep.Cold16 {
		if s.Via == "shoal" {
			cdnVia, upVia = append(cdnVia, s.CDNPerBlob), append(upVia, float64(s.Upstream)/float64(blob.Size))
			cpu = append(cpu, s.CPUPerGiB)
		} else {
			cdnDirect = append(cdnDirect, s.CDNPerBlob)
		}
	}
	rep.Figures = append(rep.Figures,
		mkFigure("cold16 ratio (shoal / direct)", median(via)/median(direct), "×", 1.05, 1.15,
			fmt.Sprintf("HEAD + %d parallel ranged GETs of an uncached %s blob, median of %d: shoal %.3f s [%s] vs direct from the CDN %.3f s [%s]",
				cold16Parts, sizeStr(blob.Size), len(via), median(via), fmtList(via, 3), median(direct), fmtList(direct, 3))),
		cdnFigure("cold16", cdnVia, upVia,
			fmt.Sprintf("each 16-part pull through a fresh shoal (%d B)", blob.Size),
			"direct pulls, counted the same way: "+ratioStats(cdnDirect)),
		mkInfo("cold16 shoal CPU-s per GiB, cold fill", median(cpu), "s/GiB",
			fmt.Sprintf("shoal's utime+stime from the HEAD to the commit, per GiB of the blob: median of %d [%s]", len(cpu), fmtList(cpu, 2))))
	return nil
}

// cold16Once takes one sample: "direct" from the CDN URL, or "shoal" through a fresh
// shoal, which is then stopped and its data dir deleted.
func (b *bench) cold16Once(ctx context.Context, tag, which string, blob blobInfo, buf []byte) (cold16Sample, error) {
	o, up := b.o, b.up
	s := cold16Sample{Via: which}
	for j := range buf {
		buf[j] = 0
	}
	syscall.Sync()
	mark := up.mark()
	url := up.cdnURL(blob)
	groups := map[string]int{"nginx": up.proc.pid()}
	var sh *shoalProc
	if which == "shoal" {
		var err error
		if sh, err = startShoal(o, up, tag); err != nil {
			return s, err
		}
		defer sh.stop(o)
		url = sh.url() + "/v2/library/bench/blobs/" + blob.digest()
		groups["shoal"] = sh.p.pid()
	}
	fail := func(err error) (cold16Sample, error) {
		if sh != nil {
			return s, fmt.Errorf("%s: %v\nshoal log:\n%s", tag, err, logTail(sh.p.log, 20))
		}
		return s, fmt.Errorf("%s: %v", tag, err)
	}
	meter := newCPUMeter(groups)
	var cpu0 float64
	if sh != nil {
		cpu0 = cpuSecs(sh.p.pid())
	}
	head, err := headBlob(ctx, url, blob.Size)
	if err != nil {
		return fail(err)
	}
	parts, err := rangeGetInto(ctx, url, blob.Size, cold16Parts, buf)
	if err != nil {
		return fail(err)
	}
	s.HeadSecs, s.PartsSecs = head.Seconds(), parts.Seconds()
	s.Secs = s.HeadSecs + s.PartsSecs
	s.CPU, s.MachineBusy = meter.read()
	if sh != nil {
		tw := time.Now()
		m, err := sh.waitIdle(1, 60*time.Second)
		s.CommitSecs = time.Since(tw).Seconds()
		if err != nil {
			return fail(err)
		}
		s.ShoalCPU = cpuSecs(sh.p.pid()) - cpu0
		s.CPUPerGiB = s.ShoalCPU / (float64(blob.Size) / (1 << 30))
		s.Upstream = statInt(m, "upstream_bytes")
		sh.stop(o)
	}
	if s.CDN, err = up.cdnSince(mark); err != nil {
		return s, err
	}
	s.CDNPerBlob = s.CDN.per(blob.Size)
	if got := sha256Hex(buf); got != blob.Hex {
		return fail(fmt.Errorf("the 16 parts assembled hash to %s, want %s", got[:12], blob.Hex[:12]))
	}
	return s, nil
}
