package main

// HTTP clients: N parallel ranged GETs over N connections (warm serving), time to first
// byte of a small range (TTFB), and a whole-blob GET that checks the digest.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// newClient gives every call its own connection (its own transport, no keep-alive
// reuse across calls) with Go's default User-Agent, like ollama's part requests.
func newClient() (*http.Client, *http.Transport) {
	tr := &http.Transport{
		Proxy:              nil,
		DialContext:        (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		DisableCompression: true,
		DisableKeepAlives:  true,
		ForceAttemptHTTP2:  false,
		ReadBufferSize:     256 << 10,
	}
	return &http.Client{Transport: tr}, tr
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// rangeGet splits [0,size) into n equal parts (the last takes the remainder), fetches
// them at once over n connections, discards the bodies while counting them, and returns
// the wall time. Any wrong status, Content-Range or byte count is an error.
func rangeGet(ctx context.Context, url string, size int64, n int) (time.Duration, error) {
	part := size / int64(n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	gate := make(chan struct{})
	ready := sync.WaitGroup{}
	ready.Add(n)
	var t0 time.Time
	for i := 0; i < n; i++ {
		start := int64(i) * part
		end := start + part - 1
		if i == n-1 {
			end = size - 1
		}
		wg.Add(1)
		go func(i int, start, end int64) {
			defer wg.Done()
			c, tr := newClient()
			defer tr.CloseIdleConnections()
			req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
			if err != nil {
				errs[i] = err
				ready.Done()
				return
			}
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", start, end))
			ready.Done()
			<-gate
			resp, err := c.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			want := end - start + 1
			cr := fmt.Sprintf("bytes %d-%d/%d", start, end, size)
			if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != cr {
				errs[i] = fmt.Errorf("part %d: status %d Content-Range %q, want 206 %q", i, resp.StatusCode, resp.Header.Get("Content-Range"), cr)
				return
			}
			var cw countWriter
			buf := make([]byte, 256<<10)
			_, err = io.CopyBuffer(&cw, struct{ io.Reader }{resp.Body}, buf)
			if err != nil {
				errs[i] = fmt.Errorf("part %d: %v after %d bytes", i, err, cw.n)
				return
			}
			if cw.n != want {
				errs[i] = fmt.Errorf("part %d: got %d bytes, want %d", i, cw.n, want)
			}
		}(i, start, end)
	}
	ready.Wait()
	t0 = time.Now()
	close(gate)
	wg.Wait()
	el := time.Since(t0)
	for _, e := range errs {
		if e != nil {
			return el, e
		}
	}
	return el, nil
}

type ttfbResult struct {
	Headers   float64 `json:"headers_secs"`     // request sent → response headers
	FirstByte float64 `json:"first_byte_secs"`  // request sent → first body byte
	Total     float64 `json:"whole_range_secs"` // request sent → all 1 KiB
	Status    int     `json:"status"`
}

// ttfb asks for length bytes at off over a new connection and checks them against the
// blob file on disk.
func ttfb(ctx context.Context, url, file string, off, length int64) (ttfbResult, error) {
	var r ttfbResult
	want := make([]byte, length)
	f, err := os.Open(file)
	if err != nil {
		return r, err
	}
	_, err = f.ReadAt(want, off)
	f.Close()
	if err != nil {
		return r, err
	}
	c, tr := newClient()
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return r, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+length-1))
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	r.Headers = time.Since(t0).Seconds()
	r.Status = resp.StatusCode
	got := make([]byte, 0, length)
	buf := make([]byte, length)
	for int64(len(got)) < length {
		n, err := resp.Body.Read(buf)
		if n > 0 && len(got) == 0 {
			r.FirstByte = time.Since(t0).Seconds()
		}
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	r.Total = time.Since(t0).Seconds()
	if resp.StatusCode != 206 {
		return r, fmt.Errorf("status %d, want 206", resp.StatusCode)
	}
	if !bytes.Equal(got, want) {
		return r, fmt.Errorf("got %d bytes that differ from the blob's bytes %d-%d", len(got), off, off+length-1)
	}
	return r, nil
}

// fullGet reads a whole blob (plain GET, no Range) and checks its sha256.
func fullGet(ctx context.Context, url string, b blobInfo) (time.Duration, error) {
	c, tr := newClient()
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("status %d, want 200", resp.StatusCode)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, resp.Body, make([]byte, 1<<20))
	el := time.Since(t0)
	if err != nil {
		return el, fmt.Errorf("after %d bytes: %v", n, err)
	}
	if n != b.Size || hex.EncodeToString(h.Sum(nil)) != b.Hex {
		return el, fmt.Errorf("got %d bytes hashing to %s, want %d bytes of %s", n, hex.EncodeToString(h.Sum(nil))[:12], b.Size, b.Hex[:12])
	}
	return el, nil
}

// getJSON is a small helper for /_shoal/v1/stats.
func getBody(url string) ([]byte, int, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

// rangegetMain is `harness rangeget URL SIZE N`, for trying the client by hand.
func rangegetMain(args []string) {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: harness rangeget URL SIZE N")
		os.Exit(2)
	}
	size, err1 := strconv.ParseInt(args[1], 10, 64)
	n, err2 := strconv.Atoi(args[2])
	if err1 != nil || err2 != nil || n < 1 || size < int64(n) {
		fmt.Fprintln(os.Stderr, "rangeget: bad SIZE or N")
		os.Exit(2)
	}
	el, err := rangeGet(context.Background(), args[0], size, n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rangeget:", err)
		os.Exit(1)
	}
	fmt.Printf("{\"secs\":%.4f,\"bytes\":%d,\"parts\":%d,\"MBps\":%.1f}\n", el.Seconds(), size, n,
		float64(size)/el.Seconds()/1e6)
}

func newRangeReq(ctx context.Context, url string, start, end int64) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", start, end))
	return req, nil
}
