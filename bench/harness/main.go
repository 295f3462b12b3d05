// Command harness is shoal's benchmark (run it through bench/run, which builds it).
//
// In one run, against baselines measured in the same run, it measures:
//  1. cold pull ratio: gopull (ollama's wire behaviour) of an uncached model through shoal
//     divided by the same pull straight from the fake upstream (nginx registry + CDN capped
//     per connection);
//  2. TTFB: first byte of a 1 KiB range of an uncached blob through shoal, at offset 0 and
//     mid-blob;
//  3. warm serving ratio: N parallel ranged GETs of a cached blob, shoal vs nginx (sendfile);
//  4. peak RSS (VmHWM) of the shoal process after it served at least -min-served bytes;
//  5. cold16: 16 parallel ranged GETs of an uncached blob through shoal divided by the
//     same straight from the CDN (cold16.go);
//  6. resume: what a fill killed (SIGKILL, SIGTERM) half way and restarted on the same
//     data dir costs the CDN (resume.go);
//  7. the bytes the CDN sent for every cold fill, against the blob sizes (cdn.go), and
//     shoal's CPU seconds per GiB filled and served.
//
// Everything is loopback. Every child runs in its own process group and is killed on exit.
// Usage: harness [flags]   or   harness rangeget URL SIZE N [SHA256]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"
)

// allPhases in the order they run.
var allPhases = []string{"cold", "cold16", "ttfb", "warm", "resume", "tls", "scrub"}

type options struct {
	shoal, gopull, nginx  string
	work, data, out, repo string
	rate                  string
	layerSize, ttfbSize   int64
	warmSize, minServed   int64
	coldReps, ttfbReps    int
	warmReps, parallel    int
	tlsReps               int
	cold16Reps            int
	resumeReps            int
	shoalLog              string
	keep                  bool
	phases                string
	timeout, pullTimeout  time.Duration
}

func logf(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "[bench %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "rangeget" {
		rangegetMain(os.Args[2:])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "swarm" { // bench/swarm (swarm.go)
		swarmMain(os.Args[2:])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "swarmget" { // its in-namespace client
		swarmgetMain(os.Args[2:])
		return
	}
	var o options
	flag.StringVar(&o.shoal, "shoal", "", "shoal binary")
	flag.StringVar(&o.gopull, "gopull", "", "gopull binary (ollama-pull stand-in)")
	flag.StringVar(&o.nginx, "nginx", "nginx", "nginx binary")
	flag.StringVar(&o.work, "work", "", "scratch directory (shoal data dirs, nginx prefix, logs)")
	flag.StringVar(&o.data, "data", "", "test data directory, generated once and reused")
	flag.StringVar(&o.out, "out", "", "directory for the JSON results")
	flag.StringVar(&o.repo, "repo", ".", "shoal repository (for the commit id)")
	flag.StringVar(&o.rate, "rate", "20m", "nginx limit_rate of each CDN connection")
	flag.Int64Var(&o.layerSize, "layer-size", 1_600_000_000, "model layer size for the cold pull (ollama parts: clamp(size/16, 100 MB, 1 GB))")
	flag.Int64Var(&o.ttfbSize, "ttfb-size", 400_000_000, "blob size for the TTFB test")
	flag.Int64Var(&o.warmSize, "warm-size", 1<<30, "blob size for the warm serving test")
	flag.Int64Var(&o.minServed, "min-served", 4_000_000_000, "bytes the warm shoal must have served before its peak RSS is read")
	flag.IntVar(&o.coldReps, "cold-reps", 5, "cold pulls each way")
	flag.IntVar(&o.ttfbReps, "ttfb-reps", 3, "TTFB samples per offset")
	flag.IntVar(&o.warmReps, "warm-reps", 5, "timed warm reads each way")
	flag.IntVar(&o.tlsReps, "tls-reps", 3, "cold+warm pulls each way in the TLS-cost phase")
	flag.IntVar(&o.cold16Reps, "cold16-reps", 5, "cold 16-part ranged pulls each way (direct, through shoal)")
	flag.IntVar(&o.resumeReps, "resume-reps", 1, "killed-and-resumed fills per signal (SIGKILL, SIGTERM)")
	flag.IntVar(&o.parallel, "parallel", 16, "parallel ranged GETs in the warm test")
	flag.StringVar(&o.shoalLog, "shoal-log", "warn", "RUST_LOG for shoal")
	flag.BoolVar(&o.keep, "keep", false, "keep shoal data dirs")
	flag.StringVar(&o.phases, "phases", strings.Join(allPhases, ","), "which measurements to run (warm includes peak RSS; tls: HTTPS-proxy mode vs mirror name)")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	flag.DurationVar(&o.pullTimeout, "pull-timeout", 3*time.Minute, "give up on one pull after this long")
	flag.Parse()
	if o.shoal == "" || o.gopull == "" || o.work == "" || o.data == "" || o.out == "" {
		fmt.Fprintln(os.Stderr, "harness: -shoal, -gopull, -work, -data and -out are required (use bench/run)")
		os.Exit(2)
	}
	// Own process group: bench/run kills the group (and the groups listed in pgids).
	syscall.Setpgid(0, 0)
	pgidFile = filepath.Join(o.work, "pgids")

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		logf("got %v: stopping everything", s)
		stopAll()
		os.Exit(130)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	code, err := run(ctx, &o)
	cancel()
	stopAll()
	if err != nil {
		logf("ERROR: %v", err)
		logf("logs are in %s (bench/run keeps it on failure)", o.work)
		os.Exit(2)
	}
	os.Exit(code)
}

// ---------------------------------------------------------------------------------------
// Results

type figure struct {
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit"`
	Goal    float64 `json:"goal,omitempty"`
	Limit   float64 `json:"limit"`
	Pass    bool    `json:"pass"`
	MetGoal bool    `json:"met_goal"`
	Detail  string  `json:"detail"`
	// Info: a figure without a goal or a limit, recorded for comparison only.
	Info bool `json:"info,omitempty"`
}

type coldSample struct {
	Via       string         `json:"via"`
	Secs      float64        `json:"secs"`
	LayerSecs float64        `json:"layer_secs"`
	Statuses  map[string]int `json:"statuses"`
	Retries   int            `json:"retries"`
	Stalls    int            `json:"stalls"`
	Upstream  int64          `json:"shoal_upstream_bytes,omitempty"`
	// What the CDN sent during the pull ($bytes_sent of its access-log lines), and that
	// against the blob bytes pulled (layer + config).
	CDN        cdnCount `json:"cdn"`
	CDNPerBlob float64  `json:"cdn_bytes_per_blob_byte"`
	VmHWM      int64    `json:"shoal_vmhwm_bytes,omitempty"`
	CommitSecs float64  `json:"shoal_commit_wait_secs,omitempty"`
	// CPU seconds used during the pull (gopull, nginx, shoal) and the machine's busy
	// share of all cores over the same interval (other users' load included).
	CPU         map[string]float64 `json:"cpu_secs"`
	MachineBusy float64            `json:"machine_busy_share"`
}

// warmCPU is the CPU the two servers used during the timed warm rounds.
type warmCPU struct {
	GiB          float64 `json:"gib_served_each"`
	ShoalSecs    float64 `json:"shoal_cpu_secs"`
	NginxSecs    float64 `json:"nginx_cpu_secs"`
	ShoalSecsGiB float64 `json:"shoal_cpu_secs_per_gib"`
	NginxSecsGiB float64 `json:"nginx_cpu_secs_per_gib"`
}

type rssStep struct {
	After       string `json:"after"`
	VmHWM       int64  `json:"vmhwm_bytes"`
	ServedBytes int64  `json:"served_bytes"`
}

type ttfbSample struct {
	Offset int64 `json:"offset"`
	ttfbResult
}

type report struct {
	Date        string                 `json:"date"`
	Host        map[string]string      `json:"host"`
	Params      map[string]interface{} `json:"params"`
	CDNRateMBps float64                `json:"cdn_single_connection_MBps"`
	Cold        []coldSample           `json:"cold_samples"`
	TTFB        []ttfbSample           `json:"ttfb_samples"`
	WarmShoal   []float64              `json:"warm_shoal_secs"`
	WarmNginx   []float64              `json:"warm_nginx_secs"`
	WarmFill    float64                `json:"warm_cold_fill_full_get_secs"`
	ShoalStats  map[string]interface{} `json:"warm_shoal_stats"`
	ColdMaxRSS  int64                  `json:"cold_shoal_max_vmhwm_bytes"`
	WarmCPU     *warmCPU               `json:"warm_cpu,omitempty"`
	Cold16      []cold16Sample         `json:"cold16_samples,omitempty"`
	Resume      []resumeSample         `json:"resume_samples,omitempty"`
	TLSCold     []tlsColdSample        `json:"tls_cold_samples,omitempty"`
	Scrub       *scrubReport           `json:"scrub,omitempty"`
	// VmHWM of the warm-test shoal after each step: how the peak builds up.
	RSSSteps []rssStep `json:"warm_shoal_vmhwm_steps"`
	Figures  []figure  `json:"figures"`
	Pass     bool      `json:"pass"`
	Elapsed  float64   `json:"elapsed_secs"`
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func maxOf(xs []float64) float64 {
	m := math.Inf(-1)
	for _, x := range xs {
		m = math.Max(m, x)
	}
	return m
}

func fmtList(xs []float64, prec int) string {
	var p []string
	for _, x := range xs {
		p = append(p, fmt.Sprintf("%.*f", prec, x))
	}
	return strings.Join(p, " ")
}

// ---------------------------------------------------------------------------------------
// shoal instances

type shoalProc struct {
	p       *proc
	port    int
	dataDir string
	name    string
	stopped bool
}

func (s *shoalProc) url() string { return fmt.Sprintf("http://127.0.0.1:%d", s.port) }

// startShoal starts a shoal with default settings on a fresh, empty data dir.
func startShoal(o *options, up *upstream, name string) (*shoalProc, error) {
	dataDir := filepath.Join(o.work, "shoal-"+name)
	os.RemoveAll(dataDir)
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	return startShoalOn(o, up, name, dataDir)
}

// startShoalEnv starts a shoal with default settings but for `env` (SHOAL_* variables) on
// a fresh, empty data dir.
func startShoalEnv(o *options, up *upstream, name string, env []string) (*shoalProc, error) {
	dataDir := filepath.Join(o.work, "shoal-"+name)
	os.RemoveAll(dataDir)
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	return startShoalWith(o, up, name, dataDir, env)
}

// startShoalOn starts a shoal on dataDir as it is (a restart keeps what is there).
func startShoalOn(o *options, up *upstream, name, dataDir string) (*shoalProc, error) {
	return startShoalWith(o, up, name, dataDir, nil)
}

func startShoalWith(o *options, up *upstream, name, dataDir string, env []string) (*shoalProc, error) {
	logPath := filepath.Join(o.work, "logs", "shoal-"+name+".log")
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort("127.0.0.1")
		if err != nil {
			return nil, err
		}
		p, err := start("shoal-"+name, logPath, append([]string{"RUST_LOG=" + o.shoalLog}, env...), o.shoal,
			"serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", dataDir,
			"--upstream", up.registryURL(),
			// Loopback BitTorrent, and no multicast: from the root network namespace it
			// would leave the machine.
			"--bt-listen", "127.0.0.1:0", "--no-discovery")
		if err != nil {
			return nil, err
		}
		s := &shoalProc{p: p, port: port, dataDir: dataDir, name: name}
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) && !p.exited() {
			if _, code, err := getBody(s.url() + "/_shoal/v1/health"); err == nil && code == 200 {
				return s, nil
			}
			time.Sleep(25 * time.Millisecond)
		}
		p.stop(3 * time.Second)
		last = fmt.Errorf("shoal %s did not become healthy on port %d:\n%s", name, port, logTail(logPath, 15))
	}
	return nil, last
}

func (s *shoalProc) stats() (map[string]interface{}, error) {
	b, code, err := getBody(s.url() + "/_shoal/v1/stats")
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("stats: status %d", code)
	}
	var m map[string]interface{}
	return m, json.Unmarshal(b, &m)
}

// statInt reads a number from a stats answer, down nested objects: statInt(m, "a", "b").
func statInt(m map[string]interface{}, keys ...string) int64 {
	var v interface{} = m
	for _, k := range keys {
		obj, ok := v.(map[string]interface{})
		if !ok {
			return -1
		}
		v = obj[k]
	}
	if f, ok := v.(float64); ok {
		return int64(f)
	}
	return -1
}

// waitIdle waits until no fill runs and at least `blobs` blobs are complete.
func (s *shoalProc) waitIdle(blobs int64, timeout time.Duration) (map[string]interface{}, error) {
	deadline := time.Now().Add(timeout)
	for {
		m, err := s.stats()
		if err == nil && statInt(m, "fills_running") == 0 && statInt(m, "blobs") >= blobs {
			return m, nil
		}
		if time.Now().After(deadline) {
			return m, fmt.Errorf("shoal %s: fills not committed after %s (stats %v, err %v)", s.name, timeout, m, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop stops the shoal (once; later calls do nothing) and deletes its data dir.
func (s *shoalProc) stop(o *options) {
	if s.stopped {
		return
	}
	s.stopped = true
	s.p.stop(5 * time.Second)
	if !o.keep {
		os.RemoveAll(s.dataDir)
	}
}

// ---------------------------------------------------------------------------------------
// gopull

type pullOut struct {
	OK             bool           `json:"ok"`
	Error          *string        `json:"error"`
	Secs           float64        `json:"secs"`
	Bytes          int64          `json:"bytes"`
	ManifestSHA256 string         `json:"manifest_sha256"`
	Statuses       map[string]int `json:"statuses"`
	Retries        int            `json:"retries"`
	Stalls         int            `json:"stalls"`
	Protos         map[string]int `json:"protos"`
	cpu            float64
	Blobs          []struct {
		Digest string  `json:"digest"`
		Cached bool    `json:"cached"`
		Bytes  int64   `json:"bytes"`
		Parts  int     `json:"parts"`
		Secs   float64 `json:"secs"`
	} `json:"blobs"`
}

func runPull(ctx context.Context, o *options, d *dataSet, name, tag string) (*pullOut, error) {
	return runPullVia(ctx, o, d, name, tag, nil)
}

// runPullVia runs gopull with `proxyEnv` added (HTTPS_PROXY, SSL_CERT_FILE); a nil one is
// a mirror-name pull over plain HTTP (-insecure).
func runPullVia(ctx context.Context, o *options, d *dataSet, name, tag string, proxyEnv []string) (*pullOut, error) {
	models := filepath.Join(o.work, "models-"+tag)
	os.RemoveAll(models)
	defer os.RemoveAll(models)
	logPath := filepath.Join(o.work, "logs", "gopull-"+tag+".log")
	outPath := filepath.Join(o.work, "logs", "gopull-"+tag+".json")
	// stdout to a file of its own: the last line is the JSON result.
	flags := []string{"-insecure"}
	if proxyEnv != nil {
		flags = nil
	}
	args := append([]string{"-c", `bin=$0 models=$1 name=$2 log=$3; shift 3; exec "$bin" "$@" -models "$models" "$name" 2>>"$log"`,
		o.gopull, models, name, logPath}, flags...)
	p, err := start("gopull-"+tag, outPath, proxyEnv, "/bin/sh", args...)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
	case <-time.After(o.pullTimeout):
		p.stop(time.Second)
		return nil, fmt.Errorf("gopull %s: no result after %s\n%s", tag, o.pullTimeout, logTail(logPath, 15))
	case <-ctx.Done():
		p.stop(time.Second)
		return nil, ctx.Err()
	}
	p.stop(time.Second)
	var cpu float64
	if ps := p.cmd.ProcessState; ps != nil {
		cpu = (ps.UserTime() + ps.SystemTime()).Seconds()
	}
	b, _ := os.ReadFile(outPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var r pullOut
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		return nil, fmt.Errorf("gopull %s: no JSON result (%v)\n%s", tag, err, logTail(logPath, 15))
	}
	r.cpu = cpu
	if !r.OK {
		msg := "?"
		if r.Error != nil {
			msg = *r.Error
		}
		return &r, fmt.Errorf("gopull %s failed: %s\n%s", tag, msg, logTail(logPath, 15))
	}
	if r.ManifestSHA256 != d.Manifest {
		return &r, fmt.Errorf("gopull %s: manifest sha256 %s, want %s", tag, r.ManifestSHA256, d.Manifest)
	}
	return &r, nil
}

func (r *pullOut) layerSecs(d *dataSet) float64 {
	for _, b := range r.Blobs {
		if strings.HasSuffix(b.Digest, d.Layer.Hex) {
			return b.Secs
		}
	}
	return math.NaN()
}

// ---------------------------------------------------------------------------------------

func hostInfo(o *options) map[string]string {
	h := map[string]string{"cores": fmt.Sprint(runtime.NumCPU()), "go": runtime.Version()}
	h["hostname"], _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				h["cpu"] = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		h["mem"] = strings.Join(strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:], " ")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h["kernel"] = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("git", "-C", o.repo, "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		h["shoal_commit"] = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "-C", o.repo, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock").Output(); err == nil && len(st) > 0 {
			h["shoal_commit"] += "-dirty"
		}
	}
	if out, err := exec.Command(o.nginx, "-v").CombinedOutput(); err == nil {
		h["nginx"] = strings.TrimSpace(strings.TrimPrefix(string(out), "nginx version: "))
	}
	return h
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// readFile pulls a file into the page cache.
func readFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20))
	return err
}

type bench struct {
	o   *options
	d   *dataSet
	up  *upstream
	rep *report
}

func run(ctx context.Context, o *options) (int, error) {
	t0 := time.Now()
	for _, d := range []string{o.work, o.out, o.data, filepath.Join(o.work, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
	}
	phases := map[string]bool{}
	for _, p := range strings.Split(o.phases, ",") {
		p = strings.TrimSpace(p)
		known := false
		for _, a := range allPhases {
			known = known || a == p
		}
		if !known {
			return 0, fmt.Errorf("-phases: unknown phase %q (%s)", p, strings.Join(allPhases, ", "))
		}
		phases[p] = true
	}
	// nginx workers drop to an unprivileged user when started as root: let it in.
	os.Chmod(o.work, 0o755)
	rep := &report{Date: time.Now().UTC().Format(time.RFC3339), Host: hostInfo(o)}
	rep.Host["loadavg_start"] = loadavg()
	rep.Params = map[string]interface{}{
		"cdn_limit_rate": o.rate, "layer_size": o.layerSize, "ttfb_size": o.ttfbSize,
		"warm_size": o.warmSize, "cold_reps": o.coldReps, "ttfb_reps": o.ttfbReps,
		"warm_reps": o.warmReps, "parallel": o.parallel, "min_served": o.minServed,
		"tls_reps": o.tlsReps, "cold16_reps": o.cold16Reps, "cold16_parts": cold16Parts,
		"resume_reps": o.resumeReps, "resume_at": resumeAt,
		"shoal_env": shoalEnv(), "phases": o.phases,
	}

	d, err := prepareData(o.data, o.layerSize, o.ttfbSize, o.warmSize)
	if err != nil {
		return 0, fmt.Errorf("test data: %w", err)
	}
	up, err := startUpstream(o.nginx, o.work, d, o.rate)
	if err != nil {
		return 0, err
	}
	logf("upstream: registry %s, CDN http://%s:%d (limit_rate %s per connection), disk baseline :%d",
		up.registryURL(), cdnHost, up.cdnPort, o.rate, up.diskPort)
	b := &bench{o: o, d: d, up: up, rep: rep}
	if err := b.calibrate(ctx); err != nil {
		return 0, err
	}
	runs := map[string]func(context.Context) error{
		"cold": b.cold, "cold16": b.cold16, "ttfb": b.ttfb, "warm": b.warm,
		"resume": b.resume, "tls": b.tlsCost, "scrub": b.scrub,
	}
	for _, p := range allPhases {
		if phases[p] {
			if err := runs[p](ctx); err != nil {
				return 0, err
			}
		}
	}
	rep.Pass = true
	for _, f := range rep.Figures {
		rep.Pass = rep.Pass && f.Pass
	}
	rep.Host["loadavg_end"] = loadavg()
	rep.Elapsed = time.Since(t0).Seconds()

	printSummary(rep)
	return writeReport(o.out, "bench-", "latest.json", rep, rep.Pass)
}

// writeReport saves the JSON report as <out>/<prefix><UTC time>.json and <out>/<latest>,
// and turns the verdict into the exit status: 0 pass, 1 some figure missed.
func writeReport(out, prefix, latest string, rep interface{}, pass bool) (int, error) {
	js, _ := json.MarshalIndent(rep, "", "  ")
	stamp := time.Now().UTC().Format("20060102-150405")
	path := filepath.Join(out, prefix+stamp+".json")
	if err := os.WriteFile(path, append(js, '\n'), 0o644); err != nil {
		return 0, err
	}
	os.WriteFile(filepath.Join(out, latest), append(js, '\n'), 0o644)
	fmt.Printf("\nJSON: %s (also %s)\n", path, filepath.Join(out, latest))
	if !pass {
		return 1, nil
	}
	return 0, nil
}

// calibrate measures what one CDN connection delivers (~2 s).
func (b *bench) calibrate(ctx context.Context) error {
	c, tr := newClient()
	defer tr.CloseIdleConnections()
	const n = 40 << 20
	req, _ := newRangeReq(ctx, b.up.cdnURL(b.d.TTFB), 0, n-1)
	ts := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("CDN calibration: %w", err)
	}
	got, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got != n {
		return fmt.Errorf("CDN calibration: %d bytes, want %d", got, n)
	}
	b.rep.CDNRateMBps = float64(n) / time.Since(ts).Seconds() / 1e6
	logf("CDN: one connection delivers %.1f MB/s", b.rep.CDNRateMBps)
	return nil
}

// cold: gopull direct from the fake upstream vs through a fresh shoal, interleaved.
func (b *bench) cold(ctx context.Context) error {
	o, d, up, rep := b.o, b.d, b.up, b.rep
	name := func(port int) string { return fmt.Sprintf("127.0.0.1:%d/library/bench:1", port) }
	var direct, via, directLayer, viaLayer []float64
	pulled := d.Layer.Size + d.Config.Size
	for i := 0; i < o.coldReps; i++ {
		order := []string{"direct", "shoal"}
		if i%2 == 1 {
			order = []string{"shoal", "direct"}
		}
		for _, which := range order {
			tag := fmt.Sprintf("cold%d-%s", i, which)
			s := coldSample{Via: which}
			// Every pull writes its blob to disk (a pull through shoal twice: the cache and
			// gopull's file). Start each from a settled page cache, so that no pull pays
			// for the writeback of the one before it.
			syscall.Sync()
			mark := up.mark()
			if which == "direct" {
				meter := newCPUMeter(map[string]int{"nginx": up.proc.pid()})
				r, err := runPull(ctx, o, d, name(up.regPort), tag)
				if err != nil {
					return err
				}
				s.CPU, s.MachineBusy = meter.read()
				s.CPU["gopull"] = r.cpu
				s.Secs, s.LayerSecs, s.Statuses, s.Retries, s.Stalls = r.Secs, r.layerSecs(d), r.Statuses, r.Retries, r.Stalls
				direct, directLayer = append(direct, s.Secs), append(directLayer, s.LayerSecs)
			} else {
				sh, err := startShoal(o, up, tag)
				if err != nil {
					return err
				}
				meter := newCPUMeter(map[string]int{"nginx": up.proc.pid(), "shoal": sh.p.pid()})
				r, err := runPull(ctx, o, d, name(sh.port), tag)
				if err != nil {
					sh.stop(o)
					return fmt.Errorf("%v\nshoal log:\n%s", err, logTail(sh.p.log, 20))
				}
				s.CPU, s.MachineBusy = meter.read()
				s.CPU["gopull"] = r.cpu
				s.Secs, s.LayerSecs, s.Statuses, s.Retries, s.Stalls = r.Secs, r.layerSecs(d), r.Statuses, r.Retries, r.Stalls
				tw := time.Now()
				m, err := sh.waitIdle(2, 60*time.Second)
				s.CommitSecs = time.Since(tw).Seconds()
				s.Upstream = statInt(m, "upstream_bytes")
				s.VmHWM, _ = vmHWM(sh.p.pid())
				if s.VmHWM > rep.ColdMaxRSS {
					rep.ColdMaxRSS = s.VmHWM
				}
				sh.stop(o)
				if err != nil {
					return err
				}
				via, viaLayer = append(via, s.Secs), append(viaLayer, s.LayerSecs)
			}
			var err error
			if s.CDN, err = up.cdnSince(mark); err != nil {
				return err
			}
			s.CDNPerBlob = s.CDN.per(pulled)
			rep.Cold = append(rep.Cold, s)
			extra := fmt.Sprintf(", CDN sent %.4f× the blobs in %d requests", s.CDNPerBlob, s.CDN.Requests)
			if which == "shoal" {
				extra += fmt.Sprintf(", shoal fetched %.3f GB upstream (%.4f×), committed %.2f s after the pull, peak RSS %.1f MB",
					float64(s.Upstream)/1e9, float64(s.Upstream)/float64(pulled), s.CommitSecs, float64(s.VmHWM)/1e6)
			}
			extra += fmt.Sprintf("; CPU s: gopull %.1f nginx %.1f", s.CPU["gopull"], s.CPU["nginx"])
			if which == "shoal" {
				extra += fmt.Sprintf(" shoal %.1f", s.CPU["shoal"])
			}
			extra += fmt.Sprintf("; machine %.0f%% busy", 100*s.MachineBusy)
			if s.Retries > 0 || s.Stalls > 0 {
				extra += fmt.Sprintf(", %d retries %d stalls", s.Retries, s.Stalls)
			}
			logf("cold pull %d %-6s %.2f s (layer download %.2f s)%s", i+1, which, s.Secs, s.LayerSecs, extra)
		}
	}
	coldRatio := median(via) / median(direct)
	layerRatio := median(viaLayer) / median(directLayer)
	rep.Figures = append(rep.Figures, mkFigure("cold pull ratio (shoal / direct)", coldRatio, "×", 1.05, 1.15,
		fmt.Sprintf("gopull of a %s layer + config, median of %d: shoal %.2f s [%s] vs direct %.2f s [%s]; layer download phase alone (before gopull's sha256 pass): %.3f (shoal %.2f s vs %.2f s)",
			sizeStr(d.Layer.Size), o.coldReps, median(via), fmtList(via, 2), median(direct), fmtList(direct, 2),
			layerRatio, median(viaLayer), median(directLayer))))
	var cdnVia, cdnDirect, upVia []float64
	for _, s := range rep.Cold {
		if s.Via == "shoal" {
			cdnVia, upVia = append(cdnVia, s.CDNPerBlob), append(upVia, float64(s.Upstream)/float64(pulled))
		} else {
			cdnDirect = append(cdnDirect, s.CDNPerBlob)
		}
	}
	rep.Figures = append(rep.Figures, cdnFigure("cold", cdnVia, upVia,
		fmt.Sprintf("each gopull through a fresh shoal (layer + config, %d B)", pulled),
		"direct gopull pulls, counted the same way: "+ratioStats(cdnDirect)))
	return nil
}

// cdnFigure is "CDN bytes sent ÷ blob bytes" over a phase's cold fills: the median, with
// the max and shoal's own upstream_bytes in the detail (then `also`, if any).
func cdnFigure(phase string, cdn, shoalUp []float64, what, also string) figure {
	d := fmt.Sprintf("%s: the CDN's $bytes_sent (headers included) / blob %s; shoal's own upstream_bytes / blob %s",
		what, ratioStats(cdn), ratioStats(shoalUp))
	if also != "" {
		d += "; " + also
	}
	return mkFigure("CDN bytes sent / blob, "+phase, median(cdn), "×", 1.01, 1.05, d)
}

// ttfb: first byte of 1 KiB ranges of an uncached blob, a fresh shoal for every sample.
func (b *bench) ttfb(ctx context.Context) error {
	o, d, up, rep := b.o, b.d, b.up, b.rep
	mid := d.TTFB.Size / 2
	by := map[int64][]float64{}
	for i := 0; i < o.ttfbReps; i++ {
		for _, off := range []int64{0, mid} {
			tag := fmt.Sprintf("ttfb%d-%d", i, off)
			sh, err := startShoal(o, up, tag)
			if err != nil {
				return err
			}
			r, err := ttfb(ctx, sh.url()+"/v2/library/bench/blobs/"+d.TTFB.digest(), d.blobPath(d.TTFB), off, 1024)
			sh.stop(o)
			if err != nil {
				return fmt.Errorf("TTFB at %d: %v\nshoal log:\n%s", off, err, logTail(sh.p.log, 20))
			}
			rep.TTFB = append(rep.TTFB, ttfbSample{Offset: off, ttfbResult: r})
			by[off] = append(by[off], r.FirstByte)
			logf("ttfb %d offset %-10d first byte %.3f s (headers %.3f s, 1 KiB %.3f s)", i+1, off, r.FirstByte, r.Headers, r.Total)
		}
	}
	for _, off := range []int64{0, mid} {
		rep.Figures = append(rep.Figures, mkFigure(fmt.Sprintf("TTFB, 1 KiB at offset %d", off), median(by[off]), "s", 0, 0.5,
			fmt.Sprintf("uncached %s blob, median of %d [%s], worst %.3f s", sizeStr(d.TTFB.Size), len(by[off]), fmtList(by[off], 3), maxOf(by[off]))))
	}
	return nil
}

// warm: parallel ranged GETs of a cached blob, shoal vs nginx; then shoal's peak RSS.
func (b *bench) warm(ctx context.Context) error {
	o, d, up, rep := b.o, b.d, b.up, b.rep
	sh, err := startShoal(o, up, "warm")
	if err != nil {
		return err
	}
	defer sh.stop(o)
	step := func(what string) {
		h, _ := vmHWM(sh.p.pid())
		var served int64 = -1
		if m, err := sh.stats(); err == nil {
			served = statInt(m, "served_bytes")
		}
		rep.RSSSteps = append(rep.RSSSteps, rssStep{After: what, VmHWM: h, ServedBytes: served})
	}
	step("start")
	blobURL := sh.url() + "/v2/library/bench/blobs/" + d.Warm.digest()
	el, err := fullGet(ctx, blobURL, d.Warm)
	if err != nil {
		return fmt.Errorf("warm: cold full GET through shoal: %v\nshoal log:\n%s", err, logTail(sh.p.log, 20))
	}
	rep.WarmFill = el.Seconds()
	logf("warm: filled %s through shoal with one plain GET in %.2f s (client hashing included)", human(d.Warm.Size), el.Seconds())
	if _, err := sh.waitIdle(1, 60*time.Second); err != nil {
		return err
	}
	step("cold fill by a plain GET")
	if el, err = fullGet(ctx, blobURL, d.Warm); err != nil {
		return fmt.Errorf("warm: cached full GET through shoal: %v", err)
	}
	step("cached plain GET")
	logf("warm: cached full GET %.2f s, digest ok", el.Seconds())
	if err := readFile(d.blobPath(d.Warm)); err != nil {
		return err
	}
	nginxURL := up.diskURL(d.Warm)
	for _, u := range []string{nginxURL, blobURL} { // untimed warm-up round
		if _, err := rangeGet(ctx, u, d.Warm.Size, o.parallel); err != nil {
			return fmt.Errorf("warm-up %s: %v", u, err)
		}
	}
	wc := &warmCPU{}
	for i := 0; i < o.warmReps; i++ {
		order := []string{"nginx", "shoal"}
		if i%2 == 1 {
			order = []string{"shoal", "nginx"}
		}
		for _, which := range order {
			u, cpu := nginxURL, func() float64 { return groupCPUSecs(up.proc.pid()) }
			if which == "shoal" {
				u, cpu = blobURL, func() float64 { return cpuSecs(sh.p.pid()) }
			}
			c0 := cpu()
			el, err := rangeGet(ctx, u, d.Warm.Size, o.parallel)
			if err != nil {
				return fmt.Errorf("warm %s: %v", which, err)
			}
			used := cpu() - c0
			if which == "shoal" {
				rep.WarmShoal = append(rep.WarmShoal, el.Seconds())
				wc.ShoalSecs += used
			} else {
				rep.WarmNginx = append(rep.WarmNginx, el.Seconds())
				wc.NginxSecs += used
			}
			logf("warm %d %-5s %d×%s ranges: %.3f s (%.0f MB/s), %s CPU %.2f s", i+1, which, o.parallel,
				human(d.Warm.Size/int64(o.parallel)), el.Seconds(), float64(d.Warm.Size)/el.Seconds()/1e6, which, used)
		}
	}
	wc.GiB = float64(o.warmReps) * float64(d.Warm.Size) / (1 << 30)
	wc.ShoalSecsGiB, wc.NginxSecsGiB = wc.ShoalSecs/wc.GiB, wc.NginxSecs/wc.GiB
	rep.WarmCPU = wc
	step("warm ranged reads")
	m, err := sh.stats()
	if err != nil {
		return err
	}
	for statInt(m, "served_bytes") < o.minServed {
		if _, err := rangeGet(ctx, blobURL, d.Warm.Size, o.parallel); err != nil {
			return err
		}
		if m, err = sh.stats(); err != nil {
			return err
		}
	}
	rep.ShoalStats = m
	hwm, err := vmHWM(sh.p.pid())
	if err != nil {
		return err
	}
	step("end")
	var steps []string
	for _, st := range rep.RSSSteps {
		steps = append(steps, fmt.Sprintf("%s %.1f MB", st.After, float64(st.VmHWM)/1e6))
	}
	logf("warm shoal served %s in total; VmHWM %.1f MB (%s)", human(statInt(m, "served_bytes")), float64(hwm)/1e6, strings.Join(steps, ", "))
	warmRatio := median(rep.WarmShoal) / median(rep.WarmNginx)
	rep.Figures = append(rep.Figures, mkFigure("warm serving ratio (shoal / nginx)", warmRatio, "×", 1.0, 1.25,
		fmt.Sprintf("%d parallel ranged GETs of a cached %s blob, median of %d: shoal %.3f s [%s] vs nginx %.3f s [%s]",
			o.parallel, sizeStr(d.Warm.Size), o.warmReps, median(rep.WarmShoal), fmtList(rep.WarmShoal, 3), median(rep.WarmNginx), fmtList(rep.WarmNginx, 3))))
	cpuWhat := fmt.Sprintf("utime+stime over the %d timed rounds each (%.2f GiB each)", o.warmReps, wc.GiB)
	rep.Figures = append(rep.Figures,
		mkInfo("warm CPU-s per GiB served: shoal", wc.ShoalSecsGiB, "s/GiB",
			fmt.Sprintf("shoal %.2f s, %s; %.2f× nginx's", wc.ShoalSecs, cpuWhat, wc.ShoalSecsGiB/wc.NginxSecsGiB)),
		mkInfo("warm CPU-s per GiB served: nginx", wc.NginxSecsGiB, "s/GiB",
			fmt.Sprintf("nginx (master + workers, sendfile) %.2f s, %s", wc.NginxSecs, cpuWhat)))
	cold := "no cold-pull phase in this run"
	if rep.ColdMaxRSS > 0 {
		cold = fmt.Sprintf("cold-pull shoals peaked at %.1f MB", float64(rep.ColdMaxRSS)/1e6)
	}
	rep.Figures = append(rep.Figures, mkFigure("peak RSS (VmHWM)", float64(hwm)/1e6, "MB", 0, 128,
		fmt.Sprintf("the warm-test shoal after serving %.2f GB (its own cold fill + all warm reads): %.1f MiB; VmHWM after each step: %s; %s",
			float64(statInt(m, "served_bytes"))/1e9, float64(hwm)/(1<<20), strings.Join(steps, ", "), cold)))
	return nil
}

func shoalEnv() []string {
	var e []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SHOAL_") {
			e = append(e, kv)
		}
	}
	return e
}

// mkInfo is a figure recorded for comparison, with neither goal nor limit.
func mkInfo(name string, v float64, unit string, detail string) figure {
	return figure{Name: name, Value: v, Unit: unit, Detail: detail, Info: true, Pass: true, MetGoal: true}
}

func mkFigure(name string, v float64, unit string, goal, limit float64, detail string) figure {
	f := figure{Name: name, Value: v, Unit: unit, Goal: goal, Limit: limit, Detail: detail}
	f.Pass = !math.IsNaN(v) && v <= limit
	f.MetGoal = f.Pass && (goal == 0 || v <= goal)
	return f
}

func printSummary(rep *report) {
	fmt.Println()
	fmt.Printf("shoal benchmark  %s  %s cores (%s)  shoal %s\n", rep.Date, rep.Host["cores"], rep.Host["cpu"], rep.Host["shoal_commit"])
	fmt.Printf("load average %s at start, %s at end; %.0f s\n", rep.Host["loadavg_start"], rep.Host["loadavg_end"], rep.Elapsed)
	fmt.Printf("upstream CDN: limit_rate %v per connection, measured %.1f MB/s on one connection\n\n",
		rep.Params["cdn_limit_rate"], rep.CDNRateMBps)
	fmt.Printf("%-44s %12s %8s %8s  %s\n", "figure", "value", "goal", "limit", "result")
	for _, f := range rep.Figures {
		goal, limit := "-", fmtVal(f.Limit, f.Unit)
		if f.Goal != 0 {
			goal = fmtVal(f.Goal, f.Unit)
		}
		res := "PASS"
		if f.Info {
			limit, res = "-", "info"
		} else if !f.Pass {
			res = "FAIL"
		} else if !f.MetGoal {
			res = "pass (misses goal)"
		}
		fmt.Printf("%-44s %12s %8s %8s  %s\n", f.Name, fmtVal(f.Value, f.Unit), goal, limit, res)
	}
	fmt.Println()
	for _, f := range rep.Figures {
		fmt.Printf("- %s: %s\n", f.Name, f.Detail)
	}
	fmt.Println()
	if rep.Pass {
		fmt.Println("RESULT: PASS (every figure within its limit)")
	} else {
		fmt.Println("RESULT: FAIL (at least one figure over its limit)")
	}
}

func fmtVal(v float64, unit string) string {
	switch unit {
	case "MB":
		return fmt.Sprintf("%.1f MB", v)
	case "s":
		return fmt.Sprintf("%.3f s", v)
	case "s/GiB":
		return fmt.Sprintf("%.2f s/GiB", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func sizeStr(n int64) string {
	return fmt.Sprintf("%.2f GB (%s)", float64(n)/1e9, human(n))
}
