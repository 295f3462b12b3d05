package main

// The LAN-swarm benchmark's plumbing (bench/swarm): shoal nodes and nginx inside the
// network namespaces bench/swarm created, tc tbf caps on their links, the fake upstream
// in the root namespace, and the in-namespace HTTP client (`harness swarmget`).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// lan names what bench/swarm built: namespaces <ns>n<i> on a bridge in <ns>sw, node i at
// <subnet>.<i+1> behind veth <veth>n<i> (node side) / <veth>b<i> (switch side); the root
// namespace (the fake upstream, .254 and .253) behind veth <veth>r / <veth>rb (switch side):
// the WAN link.
type lan struct {
	subnet, nsPrefix, vethPrefix string
	nodes                        int
}

func (l *lan) ns(i int) string       { return fmt.Sprintf("%sn%d", l.nsPrefix, i) }
func (l *lan) switchNS() string      { return l.nsPrefix + "sw" }
func (l *lan) nodeVeth(i int) string { return fmt.Sprintf("%sn%d", l.vethPrefix, i) }
func (l *lan) swVeth(i int) string   { return fmt.Sprintf("%sb%d", l.vethPrefix, i) }
func (l *lan) ip(i int) string       { return fmt.Sprintf("%s.%d", l.subnet, i+1) }
func (l *lan) regIP() string         { return l.subnet + ".254" }
func (l *lan) cdnIP() string         { return l.subnet + ".253" }

func runCmd(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// tbfBurst is the bucket for a rate: 10 ms worth of bytes, at least 64 KiB (one GSO
// segment from a veth). tc-tbf(8) asks for at least rate/HZ (100 KB at 200 Mbit/s with
// this kernel's HZ = 250). A smaller bucket still holds the rate, but tbf then runs out of
// tokens on most bursts and re-arms its watchdog timer for each: iperf3 over one
// 200 Mbit/s veth pair used 2.1-4.6 CPU-seconds per 229 MB with a 64 KiB bucket and
// 0.35-0.5 with 128-512 KiB, the same rate either way (docs/BENCHMARKS.md). That cost is
// the emulation's, not shoal's; with eight nodes on two cores it would be most of what is
// measured.
func tbfBurst(mbit int) int {
	b := mbit * 1_000_000 / 8 / 100
	if b < 64<<10 {
		b = 64 << 10
	}
	return b
}

func tbfSpec(mbit int) string {
	return fmt.Sprintf("rate %dmbit burst %d latency 50ms", mbit, tbfBurst(mbit))
}

// tcDev is one capped device: its namespace ("" = the root namespace) and name.
type tcDev struct{ ns, dev string }

func (d tcDev) tc(args ...string) *exec.Cmd {
	if d.ns == "" {
		return exec.Command("tc", args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", d.ns, "tc"}, args...)...)
}

// nodeDevs: egress of the node side (its uploads), egress of the switch side (its downloads).
func (l *lan) nodeDevs(i int) []tcDev {
	return []tcDev{{l.ns(i), l.nodeVeth(i)}, {l.switchNS(), l.swVeth(i)}}
}

// wanDev is the upstream → LAN direction of the WAN link (egress of the root namespace's
// veth): what the CDN sends. wanUpDev is LAN → upstream (requests, ACKs).
func (l *lan) wanDev() tcDev   { return tcDev{"", l.vethPrefix + "r"} }
func (l *lan) wanUpDev() tcDev { return tcDev{l.switchNS(), l.vethPrefix + "rb"} }

func (l *lan) allDevs() []tcDev {
	var ds []tcDev
	for i := 0; i < l.nodes; i++ {
		ds = append(ds, l.nodeDevs(i)...)
	}
	return append(ds, l.wanDev(), l.wanUpDev())
}

// setTBF puts a tbf of mbit on the device's egress; mbit 0 removes it.
func setTBF(d tcDev, mbit int) error {
	if mbit == 0 {
		// Fails when there is no qdisc to delete: fine.
		d.tc("qdisc", "del", "dev", d.dev, "root").Run()
		return nil
	}
	c := d.tc(append([]string{"qdisc", "replace", "dev", d.dev, "root", "tbf"}, strings.Fields(tbfSpec(mbit))...)...)
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(c.Args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// capAll puts a tbf of mbit on both directions of every node's link, and one of wanMbit on
// both directions of the WAN link (the root namespace's veth). 0 removes the caps.
func (l *lan) capAll(mbit, wanMbit int) error {
	for i := 0; i < l.nodes; i++ {
		for _, d := range l.nodeDevs(i) {
			if err := setTBF(d, mbit); err != nil {
				return err
			}
		}
	}
	for _, d := range []tcDev{l.wanDev(), l.wanUpDev()} {
		if err := setTBF(d, wanMbit); err != nil {
			return err
		}
	}
	return nil
}

// tcStats is `tc -s qdisc show` of every capped device (sent bytes, drops, overlimits).
func (l *lan) tcStats() map[string]string {
	out := map[string]string{}
	for _, d := range l.allDevs() {
		b, err := d.tc("-s", "qdisc", "show", "dev", d.dev).CombinedOutput()
		if err == nil {
			out[d.dev] = strings.Join(strings.Fields(string(b)), " ")
		}
	}
	return out
}

// tcSent is the bytes the device's root qdisc has sent (its "Sent N bytes"), -1 if unknown.
func tcSent(d tcDev) int64 {
	b, err := d.tc("-s", "qdisc", "show", "dev", d.dev).CombinedOutput()
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	for i := 0; i+2 < len(f); i++ {
		if f[i] == "Sent" && f[i+2] == "bytes" {
			if n, err := strconv.ParseInt(f[i+1], 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

// ---------------------------------------------------------------------------------------
// shoal nodes

type node struct {
	name    string
	id      string // its node id (/_shoal/v1/peers), a fresh one per fresh data dir
	ns      string // "" for the root namespace
	ip      string
	port    int
	dataDir string
	p       *proc
	started time.Time
}

func (n *node) url() string { return fmt.Sprintf("http://%s:%d", n.ip, n.port) }

func (n *node) getJSON(path string, v interface{}) error {
	b, code, err := getBody(n.url() + path)
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("%s%s: status %d", n.url(), path, code)
	}
	return json.Unmarshal(b, v)
}

func (n *node) stats() (map[string]interface{}, error) {
	var m map[string]interface{}
	return m, n.getJSON("/_shoal/v1/stats", &m)
}

type peerRow struct {
	URL      string `json:"url"`
	NodeID   string `json:"node_id"`
	Source   string `json:"source"`
	Failures int64  `json:"failures"`
	Blobs    int64  `json:"blobs"`
}

func (n *node) peers() ([]peerRow, error) {
	var v struct {
		Peers []peerRow `json:"peers"`
	}
	return v.Peers, n.getJSON("/_shoal/v1/peers", &v)
}

// knows reports whether n lists o as a live peer: o's URL with o's current node id (its
// catalog fetched since o started) and no failure since.
func knows(rows []peerRow, o *node) bool {
	for _, r := range rows {
		if r.URL == o.url() && r.NodeID == o.id && r.Failures == 0 {
			return true
		}
	}
	return false
}

// waitMesh waits until every node lists every other one as a live peer (LAN discovery
// alone: the nodes have no --peer), and returns how long that took.
func waitMesh(nodes []*node, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	deadline := t0.Add(timeout)
	for {
		var missing []string
		for _, n := range nodes {
			rows, err := n.peers()
			for _, o := range nodes {
				if o != n && (err != nil || !knows(rows, o)) {
					missing = append(missing, n.name+"→"+o.name)
				}
			}
		}
		if len(missing) == 0 {
			return time.Since(t0), nil
		}
		if time.Now().After(deadline) {
			if len(missing) > 12 {
				missing = append(missing[:12], fmt.Sprintf("… (%d in all)", len(missing)))
			}
			return time.Since(t0), fmt.Errorf("after %s, nodes still do not list each other as live peers: %s", timeout, strings.Join(missing, ", "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// catalogLen counts the blobs /_shoal/v1/catalog lists.
func (n *node) catalogLen() (int, error) {
	var v struct {
		Blobs []json.RawMessage `json:"blobs"`
	}
	err := n.getJSON("/_shoal/v1/catalog", &v)
	return len(v.Blobs), err
}

func (n *node) healthy() bool {
	_, code, err := getBody(n.url() + "/_shoal/v1/health")
	return err == nil && code == 200
}

// waitIdle waits until no fill runs and at least `blobs` blobs are complete.
func (n *node) waitIdle(blobs int64, timeout time.Duration) (map[string]interface{}, error) {
	deadline := time.Now().Add(timeout)
	for {
		m, err := n.stats()
		if err == nil && statInt(m, "fills_running") == 0 && statInt(m, "blobs") >= blobs {
			return m, nil
		}
		if time.Now().After(deadline) {
			return m, fmt.Errorf("%s: %d blobs not committed after %s (stats %v, err %v)", n.name, blobs, timeout, m, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitHolder waits until the node's peer list shows `holder` with at least one blob.
func (n *node) waitHolder(holder *node, timeout time.Duration) (peerRow, error) {
	deadline := time.Now().Add(timeout)
	var last []peerRow
	for time.Now().Before(deadline) {
		ps, err := n.peers()
		if err == nil {
			last = ps
			for _, p := range ps {
				if p.URL == holder.url() && p.Blobs >= 1 {
					return p, nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return peerRow{}, fmt.Errorf("%s never listed %s as holding a blob within %s (peers: %+v)", n.name, holder.url(), timeout, last)
}

type nodeSpec struct {
	name      string
	ns        string // "" = root namespace (then loopback, no discovery)
	ip        string
	discovery bool
	peers     []string
	fresh     bool // empty the data dir first
}

// startNode runs `shoal serve` (inside spec.ns when set) and waits for its health.
func (s *swarmBench) startNode(spec nodeSpec) (*node, error) {
	o := s.o
	dataDir := filepath.Join(o.work, "data-"+spec.name)
	if spec.fresh {
		os.RemoveAll(dataDir)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	n := &node{name: spec.name, ns: spec.ns, ip: spec.ip, dataDir: dataDir}
	var err error
	bt := spec.ip + ":6881"
	n.port = 9200
	if spec.ns == "" {
		if n.port, err = freePort(spec.ip); err != nil {
			return nil, err
		}
		bt = "127.0.0.1:0"
	}
	args := []string{"serve", "--listen", fmt.Sprintf("%s:%d", spec.ip, n.port), "--bt-listen", bt,
		"--data-dir", dataDir, "--upstream", s.up.registryURL()}
	if !spec.discovery {
		args = append(args, "--no-discovery")
	}
	for _, p := range spec.peers {
		args = append(args, "--peer", p)
	}
	bin := o.shoal
	if spec.ns != "" {
		args = append([]string{"netns", "exec", spec.ns, o.shoal}, args...)
		bin = "ip"
	}
	// shoal's defaults: no SHOAL_* of the harness's own (the caller's reach it through the
	// environment, and the report lists them).
	env := []string{"RUST_LOG=" + o.shoalLog}
	logPath := filepath.Join(o.work, "logs", "shoal-"+spec.name+".log")
	n.started = time.Now()
	if n.p, err = start("shoal-"+spec.name, logPath, env, bin, args...); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && !n.p.exited() {
		if n.healthy() {
			var v struct {
				NodeID string `json:"node_id"`
			}
			if err := n.getJSON("/_shoal/v1/peers", &v); err != nil || v.NodeID == "" {
				n.p.stop(3 * time.Second)
				return nil, fmt.Errorf("shoal %s: no node id from /_shoal/v1/peers (%v)", spec.name, err)
			}
			n.id = v.NodeID
			return n, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.p.stop(3 * time.Second)
	return nil, fmt.Errorf("shoal %s did not become healthy at %s:\n%s", spec.name, n.url(), logTail(logPath, 15))
}

// stop ends the node (SIGTERM, then SIGKILL after 10 s) and reports how long it took.
func (n *node) stop() time.Duration {
	t := time.Now()
	n.p.stop(10 * time.Second)
	return time.Since(t)
}

// ---------------------------------------------------------------------------------------
// nginx: the fake upstream (root namespace) and the plain-HTTP baseline (node 0)

func swarmUpstreamConf(dir, blobs, regIP, cdnIP string, reg, cdn, status int) string {
	q := strconv.Quote
	return fmt.Sprintf(`# generated by bench/harness (swarm): registry (307 to the CDN host) + CDN
worker_processes auto;
pid %[1]s;
error_log %[2]s warn;
events { worker_connections 1024; }
http {
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    log_format bench '$msec $server_addr:$server_port $status $request_time $bytes_sent "$request" "$http_range" "$http_user_agent"';
    access_log %[3]s bench;
    client_body_temp_path %[4]s;
    proxy_temp_path %[4]s;
    fastcgi_temp_path %[4]s;
    uwsgi_temp_path %[4]s;
    scgi_temp_path %[4]s;
    server {
        listen %[5]s:%[6]d;
        location ~ "^/v2/([^/]+)/([^/]+)/blobs/sha256:([0-9a-f]{64})$" {
            return 307 http://%[7]s:%[8]d/blobs/$3;
        }
        location / { return 404; }
    }
    server {
        listen %[7]s:%[8]d;
        location /blobs/ { alias %[9]s; }
        location / { return 404; }
    }
    # nginx's open connections, for the harness (loopback: never over the capped WAN link)
    server {
        listen 127.0.0.1:%[10]d;
        location = /_nginx_status { stub_status; access_log off; }
        location / { return 404; }
    }
}
`, q(filepath.Join(dir, "nginx.pid")), q(filepath.Join(dir, "error.log")), q(filepath.Join(dir, "access.log")),
		q(filepath.Join(dir, "tmp")), regIP, reg, cdnIP, cdn, q(blobs+"/"), status)
}

func swarmBaselineConf(dir, blobs, ip string, port int) string {
	q := strconv.Quote
	return fmt.Sprintf(`# generated by bench/harness (swarm): plain HTTP baseline, as Debian's default nginx.conf
worker_processes auto;
pid %[1]s;
error_log %[2]s warn;
events { worker_connections 1024; }
http {
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    access_log %[3]s;
    client_body_temp_path %[4]s;
    proxy_temp_path %[4]s;
    fastcgi_temp_path %[4]s;
    uwsgi_temp_path %[4]s;
    scgi_temp_path %[4]s;
    server {
        listen %[5]s:%[6]d;
        location /blobs/ { alias %[7]s; }
        location / { return 404; }
    }
}
`, q(filepath.Join(dir, "nginx.pid")), q(filepath.Join(dir, "error.log")), q(filepath.Join(dir, "access.log")),
		q(filepath.Join(dir, "tmp")), ip, port, q(blobs+"/"))
}

type swarmUpstream struct {
	regIP, cdnIP     string
	regPort, cdnPort int
	statusPort       int
	dir              string
	proc             *proc
}

func (u *swarmUpstream) registryURL() string { return fmt.Sprintf("http://%s:%d", u.regIP, u.regPort) }
func (u *swarmUpstream) accessLog() string   { return filepath.Join(u.dir, "access.log") }

// requests counts the lines of the access log (every request the upstream answered).
func (u *swarmUpstream) requests() int {
	b, err := os.ReadFile(u.accessLog())
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}

func (u *swarmUpstream) mark() cdnMark { return cdnMark(fileSize(u.accessLog())) }

// inFlight is the number of requests nginx is reading or answering, the status request
// itself not counted. Idle keep-alive connections (a node that fetched something earlier
// keeps one) do not count: their requests are all in the access log.
func (u *swarmUpstream) inFlight() (int, error) {
	b, code, err := getBody(fmt.Sprintf("http://127.0.0.1:%d/_nginx_status", u.statusPort))
	if err != nil {
		return 0, err
	}
	if code != 200 {
		return 0, fmt.Errorf("nginx status: HTTP %d", code)
	}
	// "Reading: 0 Writing: 1 Waiting: 2"
	f := strings.Fields(string(b))
	n, seen := 0, 0
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "Reading:" || f[i] == "Writing:" {
			v, err := strconv.Atoi(f[i+1])
			if err != nil {
				return 0, fmt.Errorf("nginx status: %q", b)
			}
			n += v
			seen++
		}
	}
	if seen != 2 {
		return 0, fmt.Errorf("nginx status: %q", b)
	}
	return n - 1, nil
}

// cdnSince sums the CDN's access-log lines written after m, once nginx has no request in
// flight (so every request that ran is in the log). Call it after the nodes it measures
// have stopped or finished every upstream request.
func (u *swarmUpstream) cdnSince(m cdnMark) (cdnCount, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := u.inFlight()
		if err == nil && n <= 0 {
			break
		}
		if time.Now().After(deadline) {
			logf("warning: the upstream nginx still has %d requests in flight after 30 s (%v); counting its access log as it is", n, err)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return u.cdnBetween(m, -1)
}

// cdnBetween sums the CDN's access-log lines between two marks (end -1: to the end).
func (u *swarmUpstream) cdnBetween(m, end cdnMark) (cdnCount, error) {
	return cdnLines(u.accessLog(), m, end, fmt.Sprintf("%s:%d", u.cdnIP, u.cdnPort))
}

func startNginx(nginx, ns, name, dir, conf string, addrs []string) (*proc, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	cf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	args := []string{"-p", dir + "/", "-c", cf, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;"}
	bin := nginx
	if ns != "" {
		args = append([]string{"netns", "exec", ns, nginx}, args...)
		bin = "ip"
	}
	p, err := start(name, filepath.Join(dir, "stderr.log"), nil, bin, args...)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs { // dialled from the root namespace, over the bridge for ns
		if err := waitPort(a, p, 10*time.Second); err != nil {
			p.stop(3 * time.Second)
			return nil, fmt.Errorf("%v\n%s\n%s", err, logTail(filepath.Join(dir, "error.log"), 10), logTail(filepath.Join(dir, "stderr.log"), 10))
		}
	}
	return p, nil
}

// ---------------------------------------------------------------------------------------
// The in-namespace client: `harness swarmget -url U -size N -sha HEX [-at UNIXNANO]`.
// One plain GET over a new connection; the body is hashed while it is counted and thrown
// away. Prints one JSON line.

type getResult struct {
	Start     int64   `json:"start_unix_ns"`
	Secs      float64 `json:"secs"`
	FirstByte float64 `json:"first_byte_secs"`
	Bytes     int64   `json:"bytes"`
	Status    int     `json:"status"`
	SHA256OK  bool    `json:"sha256_ok"`
	Err       string  `json:"error,omitempty"`
}

type firstByteWriter struct {
	w     io.Writer
	t0    time.Time
	first float64
	n     int64
}

func (f *firstByteWriter) Write(p []byte) (int, error) {
	if f.n == 0 && len(p) > 0 {
		f.first = time.Since(f.t0).Seconds()
	}
	f.n += int64(len(p))
	return f.w.Write(p)
}

func swarmgetMain(args []string) {
	fs := flag.NewFlagSet("swarmget", flag.ExitOnError)
	url := fs.String("url", "", "URL to GET")
	size := fs.Int64("size", -1, "expected size")
	sha := fs.String("sha", "", "expected sha256 (hex)")
	at := fs.Int64("at", 0, "start at this time (Unix nanoseconds)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after")
	fs.Parse(args)
	var r getResult
	err := func() error {
		if *at > 0 {
			time.Sleep(time.Until(time.Unix(0, *at)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		c, tr := newClient()
		defer tr.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, "GET", *url, nil)
		if err != nil {
			return err
		}
		t0 := time.Now()
		r.Start = t0.UnixNano()
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		r.Status = resp.StatusCode
		h := sha256.New()
		fw := &firstByteWriter{w: h, t0: t0}
		_, err = io.CopyBuffer(fw, struct{ io.Reader }{resp.Body}, make([]byte, 1<<20))
		r.Secs = time.Since(t0).Seconds()
		r.FirstByte, r.Bytes = fw.first, fw.n
		if err != nil {
			return fmt.Errorf("after %d bytes: %v", fw.n, err)
		}
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		r.SHA256OK = hex.EncodeToString(h.Sum(nil)) == *sha
		if *size >= 0 && r.Bytes != *size {
			return fmt.Errorf("got %d bytes, want %d", r.Bytes, *size)
		}
		if *sha != "" && !r.SHA256OK {
			return errors.New("sha256 mismatch")
		}
		return nil
	}()
	if err != nil {
		r.Err = err.Error()
	}
	b, _ := json.Marshal(&r)
	fmt.Println(string(b))
	if err != nil {
		os.Exit(1)
	}
}

// getIn runs `harness swarmget` inside namespace ns and returns its result.
func (s *swarmBench) getIn(ns, tag, url string, b blobInfo, at time.Time) (getResult, error) {
	logPath := filepath.Join(s.o.work, "logs", "get-"+tag+".log")
	os.Remove(logPath)
	args := []string{"netns", "exec", ns, s.o.self, "swarmget", "-url", url, "-size", strconv.FormatInt(b.Size, 10),
		"-sha", b.Hex, "-timeout", s.o.transferTimeout.String()}
	if !at.IsZero() {
		args = append(args, "-at", strconv.FormatInt(at.UnixNano(), 10))
	}
	p, err := start("get-"+tag, logPath, nil, "ip", args...)
	if err != nil {
		return getResult{}, err
	}
	select {
	case <-p.done:
	case <-time.After(s.o.transferTimeout + 30*time.Second):
	}
	p.stop(2 * time.Second)
	out, _ := os.ReadFile(logPath)
	var r getResult
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if err := json.Unmarshal([]byte(last), &r); err != nil {
		return r, fmt.Errorf("GET %s from %s: no result: %s", url, ns, strings.TrimSpace(string(out)))
	}
	if r.Err != "" {
		return r, fmt.Errorf("GET %s from %s: %s", url, ns, r.Err)
	}
	return r, nil
}
