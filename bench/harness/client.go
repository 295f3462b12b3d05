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
	"strings"
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
	return rangeGetInto(ctx, url, size, n, nil)
}

// rangeGetInto is rangeGet that keeps the bodies when dst is not nil: each part is read
// straight into dst (len(dst) == size) at its offset, so that the caller can check the
// assembled blob's digest after the clock has stopped.
func rangeGetInto(ctx context.Context, url string, size int64, n int, dst []byte) (time.Duration, error) {
	if dst != nil && int64(len(dst)) != size {
		return 0, fmt.Errorf("rangeGetInto: buffer of %d bytes for %d", len(dst), size)
	}
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
			got, err := readPart(resp.Body, want, dst, start)
			if err != nil {
				errs[i] = fmt.Errorf("part %d: %v after %d bytes", i, err, got)
				return
			}
			if got != want {
				errs[i] = fmt.Errorf("part %d: got %d bytes, want %d", i, got, want)
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

// readPart reads one part's body: counted and discarded, or into dst[start:start+want]
// (and then nothing more may follow). It returns the bytes read.
func readPart(body io.Reader, want int64, dst []byte, start int64) (int64, error) {
	if dst == nil {
		var cw countWriter
		_, err := io.CopyBuffer(&cw, struct{ io.Reader }{body}, make([]byte, 256<<10))
		return cw.n, err
	}
	n, err := io.ReadFull(body, dst[start:start+want])
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return int64(n), nil // short: the caller's count check says so
	}
	if err != nil {
		return int64(n), err
	}
	var one [1]byte
	if m, _ := body.Read(one[:]); m > 0 {
		return int64(n + m), nil
	}
	return int64(n), nil
}

// headBlob sends a HEAD over a new connection, as ollama does before a blob's parts, and
// checks the status (200, after redirects) and Content-Length.
func headBlob(ctx context.Context, url string, size int64) (time.Duration, error) {
	c, tr := newClient()
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "HEAD", url, nil)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	resp, err := c.Do(req)
	el := time.Since(t0)
	if err != nil {
		return el, err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != size {
		return el, fmt.Errorf("HEAD %s: status %d, Content-Length %d, want 200, %d", url, resp.StatusCode, resp.ContentLength, size)
	}
	return el, nil
}

// discardGet is a plain GET over a new connection whose body is counted and dropped,
// until it ends or ctx is cancelled. It returns the body bytes read.
func discardGet(ctx context.Context, url string) (int64, error) {
	c, tr := newClient()
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("status %d, want 200", resp.StatusCode)
	}
	var cw countWriter
	_, err = io.CopyBuffer(&cw, struct{ io.Reader }{resp.Body}, make([]byte, 1<<20))
	return cw.n, err
}

// sha256Hex is the hex sha256 of b.
func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
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

// rangegetMain is `harness rangeget URL SIZE N [SHA256]`, for trying the client by hand.
// With SHA256 the parts are kept in memory and the assembled blob's digest is checked.
func rangegetMain(args []string) {
	if len(args) != 3 && len(args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: harness rangeget URL SIZE N [SHA256]")
		os.Exit(2)
	}
	size, err1 := strconv.ParseInt(args[1], 10, 64)
	n, err2 := strconv.Atoi(args[2])
	if err1 != nil || err2 != nil || n < 1 || size < int64(n) {
		fmt.Fprintln(os.Stderr, "rangeget: bad SIZE or N")
		os.Exit(2)
	}
	var dst []byte
	if len(args) == 4 {
		dst = make([]byte, size)
	}
	el, err := rangeGetInto(context.Background(), args[0], size, n, dst)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rangeget:", err)
		os.Exit(1)
	}
	if dst != nil {
		if got := sha256Hex(dst); got != strings.ToLower(args[3]) {
			fmt.Fprintf(os.Stderr, "rangeget: the assembled %d bytes hash to %s, want %s\n", size, got, args[3])
			os.Exit(1)
		}
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
