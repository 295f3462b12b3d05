package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

type tlsColdSample struct {
	Mode       string   `json:"mode"`
	Upstream   int64    `json:"shoal_upstream_bytes"`
	CDN        cdnCount `json:"cdn"`
	CDNPerBlob float64  `json:"cdn_bytes_per_blob_byte"`
}

// tlsCost: what HTTPS-proxy mode costs against the mirror name. gopull pulls the same model
// through a fresh shoal by its mirror name (plain HTTP/1.1, -insecure) and through another
// fresh shoal as HTTPS_PROXY with its CA trusted (CONNECT, TLS, HTTP/2, the plain name
// `bench:1`), cold then warm, the modes interleaved. Two more modes measure a second
// registry: "hf", the same fake upstream configured as the hf.co registry
// (SHOAL_REGISTRIES) and pulled as `hf.co/library/bench:1` through the proxy, against
// "direct", gopull straight from the fake upstream (cold only).
func (b *bench) tlsCost(ctx context.Context) error {
	o, d, rep := b.o, b.d, b.rep
	times := map[string][]float64{}
	pulled := d.Layer.Size + d.Config.Size
	for i := 0; i < o.tlsReps; i++ {
		order := []string{"mirror", "proxy", "hf", "direct"}
		if i%2 == 1 {
			order = []string{"direct", "hf", "proxy", "mirror"}
		}
		for _, mode := range order {
			if mode == "direct" {
				syscall.Sync()
				name := fmt.Sprintf("127.0.0.1:%d/library/bench:1", b.up.regPort)
				r, err := runPull(ctx, o, d, name, fmt.Sprintf("tls%d-direct", i))
				if err != nil {
					return err
				}
				times["direct-cold"] = append(times["direct-cold"], r.Secs)
				logf("tls %d %-6s cold pull %.2f s (layer %.2f s)", i+1, mode, r.Secs, r.layerSecs(d))
				continue
			}
			tag := fmt.Sprintf("tls%d-%s", i, mode)
			syscall.Sync()
			mark := b.up.mark()
			cs := tlsColdSample{Mode: mode}
			var shoalEnv []string
			if mode == "hf" {
				// The same fake registry by another name: a registry whose URL is the
				// default's would be taken for the default under another name.
				shoalEnv = []string{fmt.Sprintf("SHOAL_REGISTRIES=hf.co=http://localhost:%d", b.up.regPort)}
			}
			sh, err := startShoalEnv(o, b.up, tag, shoalEnv)
			if err != nil {
				return err
			}
			name := fmt.Sprintf("127.0.0.1:%d/library/bench:1", sh.port)
			var env []string
			if mode == "proxy" || mode == "hf" {
				pem, code, err := getBody(sh.url() + "/_shoal/v1/ca.pem")
				if err != nil || code != 200 {
					sh.stop(o)
					return fmt.Errorf("shoal's CA: HTTP %d %v", code, err)
				}
				ca := filepath.Join(o.work, tag+"-ca.pem")
				if err := os.WriteFile(ca, pem, 0o644); err != nil {
					sh.stop(o)
					return err
				}
				name = "bench:1"
				if mode == "hf" {
					name = "hf.co/library/bench:1"
				}
				env = []string{"HTTPS_PROXY=" + sh.url(), "SSL_CERT_FILE=" + ca, "NO_PROXY=", "no_proxy="}
			}
			for _, phase := range []string{"cold", "warm"} {
				r, err := runPullVia(ctx, o, d, name, tag+"-"+phase, env)
				if err != nil {
					sh.stop(o)
					return fmt.Errorf("%v\nshoal log:\n%s", err, logTail(sh.p.log, 20))
				}
				if mode != "mirror" && r.Protos["HTTP/2.0"] == 0 {
					sh.stop(o)
					return fmt.Errorf("%s: ranged parts were not HTTP/2: %v", tag, r.Protos)
				}
				times[mode+"-"+phase] = append(times[mode+"-"+phase], r.Secs)
				logf("tls %d %-6s %s pull %.2f s (layer %.2f s) protos %v", i+1, mode, phase, r.Secs, r.layerSecs(d), r.Protos)
				if phase == "cold" {
					m, err := sh.waitIdle(2, 60*time.Second)
					if err != nil {
						sh.stop(o)
						return err
					}
					cs.Upstream = statInt(m, "upstream_bytes")
					if mode == "hf" && statInt(m, "registries", "hf.co", "upstream_bytes") != cs.Upstream {
						sh.stop(o)
						return fmt.Errorf("%s: the bytes were not fetched from the hf.co registry: %v", tag, m["registries"])
					}
					syscall.Sync()
				}
			}
			sh.stop(o)
			// The warm pull asks the CDN for nothing, so the whole run's CDN lines are the
			// cold fill's.
			if cs.CDN, err = b.up.cdnSince(mark); err != nil {
				return err
			}
			cs.CDNPerBlob = cs.CDN.per(pulled)
			rep.TLSCold = append(rep.TLSCold, cs)
			logf("tls %d %-6s CDN sent %.4f× the blobs in %d requests, shoal fetched %.4f×", i+1, mode,
				cs.CDNPerBlob, cs.CDN.Requests, float64(cs.Upstream)/float64(pulled))
		}
	}
	var cdn, up []float64
	for _, cs := range rep.TLSCold {
		cdn, up = append(cdn, cs.CDNPerBlob), append(up, float64(cs.Upstream)/float64(pulled))
	}
	rep.Figures = append(rep.Figures, cdnFigure("tls cold pulls", cdn, up,
		fmt.Sprintf("each cold gopull through a fresh shoal, both modes (%d B; the shoal's warm pull is in the window too)", pulled), ""))
	for _, phase := range []string{"cold", "warm"} {
		proxy, mirror := times["proxy-"+phase], times["mirror-"+phase]
		ratio := median(proxy) / median(mirror)
		// No limit was set for this figure; 1.15 flags a TLS cost worth looking at.
		rep.Figures = append(rep.Figures, mkFigure(fmt.Sprintf("%s pull, HTTPS-proxy / mirror name", phase), ratio, "×", 1.05, 1.15,
			fmt.Sprintf("gopull of a %s layer + config, median of %d: proxy (TLS, HTTP/2) %.2f s [%s] vs mirror name (HTTP/1.1) %.2f s [%s]",
				sizeStr(d.Layer.Size), len(proxy), median(proxy), fmtList(proxy, 2), median(mirror), fmtList(mirror, 2))))
	}
	hf, direct, proxy := times["hf-cold"], times["direct-cold"], times["proxy-cold"]
	rep.Figures = append(rep.Figures, mkFigure("cold pull, second registry (hf.co, proxy) / direct", median(hf)/median(direct), "×", 1.05, 1.15,
		fmt.Sprintf("gopull of a %s layer + config as hf.co/library/bench:1 through a fresh shoal as HTTPS proxy vs straight from the fake upstream, median of %d: %.2f s [%s] vs %.2f s [%s]; the default registry through the proxy: %.2f s",
			sizeStr(d.Layer.Size), len(hf), median(hf), fmtList(hf, 2), median(direct), fmtList(direct, 2), median(proxy))))
	return nil
}
