package main

// What the CDN sent. nginx logs `$bytes_sent` (response headers included) of every request
// in its access log, when the request ends, an aborted one included. The CDN server's
// lines written during a shoal run are what that run cost the site in egress, whatever
// shoal itself counted: bytes in flight on a connection that shoal drops count here, not
// in its `upstream_bytes`.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cdnMark is a place in the access log: count the lines after it.
type cdnMark int64

type cdnCount struct {
	Bytes    int64          `json:"bytes_sent"`
	Requests int            `json:"requests"`
	Statuses map[string]int `json:"statuses"`
}

func (c cdnCount) per(size int64) float64 { return float64(c.Bytes) / float64(size) }

func (c cdnCount) add(o cdnCount) cdnCount {
	s := map[string]int{}
	for _, m := range []map[string]int{c.Statuses, o.Statuses} {
		for k, v := range m {
			s[k] += v
		}
	}
	return cdnCount{Bytes: c.Bytes + o.Bytes, Requests: c.Requests + o.Requests, Statuses: s}
}

func (u *upstream) accessLog() string { return filepath.Join(u.dir, "access.log") }

func (u *upstream) mark() cdnMark {
	if n := fileSize(u.accessLog()); n > 0 {
		return cdnMark(n)
	}
	return 0
}

// activeConns is nginx's count of open client connections (stub_status), this request's
// own included.
func (u *upstream) activeConns() (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/_nginx_status", u.diskPort))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("nginx status: HTTP %d", resp.StatusCode)
	}
	const p = "Active connections:"
	s := string(b)
	if i := strings.Index(s, p); i >= 0 {
		f := strings.Fields(s[i+len(p):])
		if len(f) > 0 {
			return strconv.Atoi(f[0])
		}
	}
	return 0, fmt.Errorf("nginx status: no %q in %q", p, s)
}

// quiet waits until nginx has no connection open but the status request: every request
// has ended, so every request is in the access log. Without stub_status it waits until
// the log has not grown for a second.
func (u *upstream) quiet(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last, since := int64(-1), time.Now()
	for {
		n, err := u.activeConns()
		if err == nil && n <= 1 {
			return nil
		}
		if err != nil {
			if sz := fileSize(u.accessLog()); sz != last {
				last, since = sz, time.Now()
			} else if time.Since(since) >= time.Second {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nginx still has %d connections open after %s (%v)", n, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cdnSince sums the CDN server's access-log lines after m, once nginx is quiet. Call it
// after the shoal it measures has stopped (or finished every upstream request).
func (u *upstream) cdnSince(m cdnMark) (cdnCount, error) {
	if err := u.quiet(20 * time.Second); err != nil {
		logf("warning: %v; counting the access log as it is", err)
	}
	return cdnLines(u.accessLog(), m, -1, fmt.Sprintf("%s:%d", cdnHost, u.cdnPort))
}

// cdnLines sums the lines of access log path between offsets m and end (-1: to its end)
// whose server is addr (log_format bench: $msec $server_addr:$server_port $status
// $request_time $bytes_sent …).
func cdnLines(path string, m, end cdnMark, addr string) (cdnCount, error) {
	c := cdnCount{Statuses: map[string]int{}}
	f, err := os.Open(path)
	if err != nil {
		return c, err
	}
	defer f.Close()
	if _, err := f.Seek(int64(m), io.SeekStart); err != nil {
		return c, err
	}
	var r io.Reader = f
	if end >= 0 {
		r = io.LimitReader(f, int64(end-m))
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return c, err
	}
	b = b[:bytes.LastIndexByte(b, '\n')+1] // whole lines only
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, " ", 6)
		if len(f) < 5 || f[1] != addr {
			continue
		}
		n, err := strconv.ParseInt(f[4], 10, 64)
		if err != nil {
			return c, fmt.Errorf("access log: bad $bytes_sent in %q", line)
		}
		c.Bytes += n
		c.Requests++
		c.Statuses[f[2]]++
	}
	return c, nil
}

// ratioStats gives the median and the max of per-sample ratios, for a detail line.
func ratioStats(xs []float64) string {
	if len(xs) == 0 {
		return "no samples"
	}
	return fmt.Sprintf("median %.4f, max %.4f [%s]", median(xs), maxOf(xs), fmtList(xs, 4))
}
