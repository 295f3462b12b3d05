package main

// `harness swarm`: the LAN-swarm benchmark (run it through bench/swarm, which builds the
// network namespaces and tears them down). In one run, against baselines of the same run:
//
//  1. pair: node B pulls a blob that node A holds, over BitTorrent, vs a plain HTTP copy
//     of the same file (nginx in A's namespace, the same client in B's), same tbf caps;
//  2. fan-out: 4 pullers at once from one holder (discovery on), wall time ÷ one transfer;
//  3. upstream bytes and requests during 1 and 2 (must be 0: the LAN holds the blob);
//  4. restart: `shoal serve` on a data dir of N small blobs until health answers and until
//     its catalog lists them all, and its RSS after the restart.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

type swarmOpts struct {
	shoal, nginx, self             string
	work, data, out, repo          string
	subnet, nsPrefix, vethPrefix   string
	nodes                          int
	mbit                           int
	blobSize                       int64
	pairReps, fanoutReps, restarts int
	smallBlobs                     int
	smallMin, smallMax             int64
	fillParallel                   int
	shoalLog, catalogInterval      string
	phases                         string
	timeout, transferTimeout       time.Duration
	pairGoal, fanoutGoal           float64
}

type swarmFigure struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Goal   string  `json:"goal"` // "" for figures without one
	Met    bool    `json:"met_goal"`
	Detail string  `json:"detail"`
}

type transfer struct {
	Via         string             `json:"via"` // http or bt
	Secs        float64            `json:"secs"`
	FirstByte   float64            `json:"first_byte_secs"`
	MBps        float64            `json:"MBps"`
	CPU         map[string]float64 `json:"cpu_secs"`
	MachineBusy float64            `json:"machine_busy_share"`
	// BitTorrent transfers only.
	PeerWait      float64                `json:"peer_wait_secs,omitempty"`
	PullerStats   map[string]interface{} `json:"puller_stats,omitempty"`
	HolderUpload  int64                  `json:"holder_uploaded_bytes,omitempty"`
	UpstreamBytes int64                  `json:"puller_upstream_bytes"`
	UpstreamReqs  int                    `json:"upstream_requests"`
}

type pullerResult struct {
	Node          string                 `json:"node"`
	StartOffset   float64                `json:"start_offset_secs"`
	Secs          float64                `json:"secs"`
	FirstByte     float64                `json:"first_byte_secs"`
	UpstreamBytes int64                  `json:"upstream_bytes"`
	PeerBytes     int64                  `json:"peer_bytes"`
	SeededBytes   int64                  `json:"seeded_bytes"`
	MaxPeers      float64                `json:"max_bt_peers_seen"`
	Stats         map[string]interface{} `json:"stats"`
}

type torrentSample struct {
	T        float64                  `json:"t"`
	Node     string                   `json:"node"`
	Torrents []map[string]interface{} `json:"torrents"`
}

type fanoutRun struct {
	Wall          float64            `json:"wall_secs"`
	DiscoverySecs float64            `json:"discovery_secs"`
	AllKnownSecs  float64            `json:"all_peers_known_secs"`
	Pullers       []pullerResult     `json:"pullers"`
	HolderUpload  int64              `json:"holder_uploaded_bytes"`
	UpstreamReqs  int                `json:"upstream_requests"`
	CPU           map[string]float64 `json:"cpu_secs"`
	MachineBusy   float64            `json:"machine_busy_share"`
	Samples       []torrentSample    `json:"torrent_samples"`
}

type restartRun struct {
	HealthSecs  float64 `json:"health_secs"`
	CatalogSecs float64 `json:"catalog_secs"`
	StatsBlobs  int64   `json:"stats_blobs"`
	VmRSS       int64   `json:"vmrss_bytes"`
	VmHWM       int64   `json:"vmhwm_bytes"`
	StopSecs    float64 `json:"stop_secs"`
}

type swarmReport struct {
	Date     string                 `json:"date"`
	Host     map[string]string      `json:"host"`
	Params   map[string]interface{} `json:"params"`
	Topology string                 `json:"topology"`
	// The holder's own fill from upstream (uncapped) and its seed's activation.
	HolderFillSecs     float64           `json:"holder_fill_secs"`
	SeedActivationSecs float64           `json:"seed_activation_secs"`
	Pair               []transfer        `json:"pair"`
	Fanout             []fanoutRun       `json:"fanout"`
	FanoutSingleSecs   float64           `json:"fanout_single_secs"`
	RestartFillSecs    float64           `json:"restart_fill_secs"`
	RestartFirstStop   float64           `json:"restart_first_stop_secs"`
	Restarts           []restartRun      `json:"restarts"`
	TC                 map[string]string `json:"tc_stats_end"`
	UpstreamTotalReqs  int               `json:"upstream_requests_total"`
	Figures            []swarmFigure     `json:"figures"`
	Pass               bool              `json:"all_goals_met"`
	Elapsed            float64           `json:"elapsed_secs"`
}

type swarmData struct {
	Big   blobInfo   `json:"big"`
	Small []blobInfo `json:"small"`
	Min   int64      `json:"small_min"`
	Max   int64      `json:"small_max"`
	dir   string
}

func (d *swarmData) blobPath(b blobInfo) string { return filepath.Join(d.dir, "blobs", b.Hex) }

type swarmBench struct {
	o        *swarmOpts
	l        *lan
	d        *swarmData
	up       *swarmUpstream
	rep      *swarmReport
	holder   *node
	base     *proc // nginx in the holder's namespace
	basePort int
}

func swarmMain(args []string) {
	var o swarmOpts
	fs := flag.NewFlagSet("swarm", flag.ExitOnError)
	fs.StringVar(&o.shoal, "shoal", "", "shoal binary")
	fs.StringVar(&o.nginx, "nginx", "nginx", "nginx binary")
	fs.StringVar(&o.self, "self", "", "this harness binary (run inside namespaces as the client)")
	fs.StringVar(&o.work, "work", "", "scratch directory")
	fs.StringVar(&o.data, "data", "", "test data directory, generated once and reused")
	fs.StringVar(&o.out, "out", "", "directory for the JSON results")
	fs.StringVar(&o.repo, "repo", ".", "shoal repository (for the commit id)")
	fs.StringVar(&o.subnet, "subnet", "", "the LAN's /24, e.g. 10.78.5 (from bench/swarm)")
	fs.StringVar(&o.nsPrefix, "ns-prefix", "", "namespace name prefix (from bench/swarm)")
	fs.StringVar(&o.vethPrefix, "veth-prefix", "", "veth name prefix (from bench/swarm)")
	fs.IntVar(&o.nodes, "nodes", 5, "node namespaces (holder + pullers)")
	fs.IntVar(&o.mbit, "rate", 200, "tbf cap of every node link, each direction, in Mbit/s")
	fs.Int64Var(&o.blobSize, "blob-size", 1<<30, "size of the shared blob")
	fs.IntVar(&o.pairReps, "pair-reps", 3, "transfers each way (HTTP, BitTorrent) in the pair test")
	fs.IntVar(&o.fanoutReps, "fanout-reps", 3, "fan-out rounds")
	fs.IntVar(&o.restarts, "restarts", 5, "timed restarts")
	fs.IntVar(&o.smallBlobs, "small-blobs", 2000, "blobs in the restart data dir")
	fs.Int64Var(&o.smallMin, "small-min", 64<<10, "smallest of those blobs")
	fs.Int64Var(&o.smallMax, "small-max", 1<<20, "largest of those blobs")
	fs.IntVar(&o.fillParallel, "fill-parallel", 8, "parallel GETs filling the restart data dir")
	fs.StringVar(&o.shoalLog, "shoal-log", "warn", "RUST_LOG for shoal (e.g. shoal=debug)")
	fs.StringVar(&o.catalogInterval, "catalog-interval", "1s", "SHOAL_P2P__CATALOG_INTERVAL for every node")
	fs.StringVar(&o.phases, "phases", "pair,fanout,restart", "which measurements to run")
	fs.DurationVar(&o.timeout, "timeout", 25*time.Minute, "give up after this long")
	fs.DurationVar(&o.transferTimeout, "transfer-timeout", 8*time.Minute, "give up on one transfer after this long")
	fs.Float64Var(&o.pairGoal, "pair-goal", 0.9, "goal: HTTP time ÷ BitTorrent time at least this")
	fs.Float64Var(&o.fanoutGoal, "fanout-goal", 1.5, "goal: fan-out wall time ÷ one transfer at most this")
	fs.Parse(args)
	if o.shoal == "" || o.self == "" || o.work == "" || o.data == "" || o.out == "" || o.subnet == "" || o.nsPrefix == "" || o.vethPrefix == "" {
		fmt.Fprintln(os.Stderr, "harness swarm: -shoal, -self, -work, -data, -out, -subnet, -ns-prefix and -veth-prefix are required (use bench/swarm)")
		os.Exit(2)
	}
	if o.nodes < 2 {
		fmt.Fprintln(os.Stderr, "harness swarm: -nodes must be at least 2")
		os.Exit(2)
	}
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
	go func() {
		<-ctx.Done()
		if ctx.Err() == context.DeadlineExceeded {
			logf("ERROR: gave up after -timeout %s", o.timeout)
			stopAll()
			os.Exit(2)
		}
	}()
	code, err := runSwarm(&o)
	cancel()
	stopAll()
	if err != nil {
		logf("ERROR: %v", err)
		logf("logs are in %s (bench/swarm keeps it on failure)", filepath.Join(o.work, "logs"))
		os.Exit(2)
	}
	os.Exit(code)
}

func runSwarm(o *swarmOpts) (int, error) {
	t0 := time.Now()
	for _, d := range []string{o.work, o.out, o.data, filepath.Join(o.work, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
	}
	phases := map[string]bool{}
	for _, p := range strings.Split(o.phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case "pair", "fanout", "restart":
			phases[p] = true
		default:
			return 0, fmt.Errorf("-phases: unknown phase %q (pair, fanout, restart)", p)
		}
	}
	if phases["fanout"] && o.nodes < 5 {
		return 0, fmt.Errorf("fan-out needs 5 nodes (a holder and 4 pullers), have %d", o.nodes)
	}
	l := &lan{subnet: o.subnet, nsPrefix: o.nsPrefix, vethPrefix: o.vethPrefix, nodes: o.nodes}
	rep := &swarmReport{Date: time.Now().UTC().Format(time.RFC3339), Host: hostInfo(&options{repo: o.repo, nginx: o.nginx})}
	rep.Host["loadavg_start"] = loadavg()
	rep.Host["shoal_binary"] = o.shoal
	if st, err := os.Stat(o.shoal); err == nil {
		rep.Host["shoal_binary_mtime"] = st.ModTime().UTC().Format(time.RFC3339)
	}
	rep.Params = map[string]interface{}{
		"rate_mbit": o.mbit, "tbf": fmt.Sprintf("rate %dmbit burst %d latency 50ms", o.mbit, tbfBurst(o.mbit)),
		"blob_size": o.blobSize, "pair_reps": o.pairReps, "fanout_reps": o.fanoutReps,
		"restarts": o.restarts, "small_blobs": o.smallBlobs, "small_min": o.smallMin, "small_max": o.smallMax,
		"catalog_interval": o.catalogInterval, "shoal_env": shoalEnv(), "phases": o.phases,
		"subnet": o.subnet + ".0/24",
	}
	rep.Topology = fmt.Sprintf("%d namespaces (node i at %s.<i+1>) each on a veth into a bridge in a switch namespace; "+
		"the root namespace (fake upstream %s/.253, harness) on one more veth, uncapped. Every node link has a tbf of "+
		"%d Mbit/s on both directions (node-side veth egress = uploads, switch-side veth egress = downloads). "+
		"Holder A = node 0; pair puller B = node 1; fan-out pullers = nodes 1-4.",
		o.nodes, o.subnet, o.subnet+".254", o.mbit)

	d, err := prepareSwarmData(o)
	if err != nil {
		return 0, fmt.Errorf("test data: %w", err)
	}
	s := &swarmBench{o: o, l: l, d: d, rep: rep}
	if err := s.startUpstream(); err != nil {
		return 0, err
	}
	if phases["pair"] || phases["fanout"] {
		if err := s.setupHolder(); err != nil {
			return 0, err
		}
		logf("capping every node link at %d Mbit/s each way (tbf burst %d B)", o.mbit, tbfBurst(o.mbit))
		if err := l.capAll(o.mbit); err != nil {
			return 0, err
		}
	}
	if phases["pair"] {
		if err := s.pair(); err != nil {
			return 0, err
		}
	}
	if phases["fanout"] {
		if err := s.fanout(); err != nil {
			return 0, err
		}
	}
	if phases["pair"] || phases["fanout"] {
		rep.TC = l.tcStats()
		s.upstreamFigure()
		l.capAll(0)
	}
	if phases["restart"] {
		if err := s.restart(); err != nil {
			return 0, err
		}
	}
	rep.UpstreamTotalReqs = s.up.requests()
	rep.Pass = true
	for _, f := range rep.Figures {
		if f.Goal != "" {
			rep.Pass = rep.Pass && f.Met
		}
	}
	rep.Host["loadavg_end"] = loadavg()
	rep.Elapsed = time.Since(t0).Seconds()
	printSwarmSummary(rep)
	return writeReport(o.out, "swarm-", "swarm-latest.json", rep, rep.Pass)
}

// prepareSwarmData reuses <dir>/meta.json when its blobs exist with the wanted sizes.
func prepareSwarmData(o *swarmOpts) (*swarmData, error) {
	dir := o.data
	blobs := filepath.Join(dir, "blobs")
	metaPath := filepath.Join(dir, "meta.json")
	var d swarmData
	if b, err := os.ReadFile(metaPath); err == nil && json.Unmarshal(b, &d) == nil {
		d.dir = dir
		ok := d.Big.Size == o.blobSize && fileSize(d.blobPath(d.Big)) == d.Big.Size &&
			len(d.Small) == o.smallBlobs && d.Min == o.smallMin && d.Max == o.smallMax
		for _, b := range d.Small {
			ok = ok && fileSize(d.blobPath(b)) == b.Size
		}
		if ok {
			logf("test data: reusing %s", dir)
			return &d, nil
		}
	}
	logf("test data: generating a %s blob and %d blobs of %s-%s in %s (once; reused by later runs)",
		human(o.blobSize), o.smallBlobs, human(o.smallMin), human(o.smallMax), dir)
	os.RemoveAll(blobs)
	os.Remove(metaPath)
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, err
	}
	t0 := time.Now()
	seed := uint64(time.Now().UnixNano())
	d = swarmData{dir: dir, Min: o.smallMin, Max: o.smallMax}
	var err error
	if d.Big, err = writeRandomBlob(blobs, o.blobSize, seed); err != nil {
		return nil, err
	}
	sizes := prng{s: seed*7 + 3}
	var buf [8]byte
	for i := 0; i < o.smallBlobs; i++ {
		sizes.fill(buf[:])
		v := int64(uint64(buf[0]) | uint64(buf[1])<<8 | uint64(buf[2])<<16 | uint64(buf[3])<<24)
		size := o.smallMin + v%(o.smallMax-o.smallMin+1)
		b, err := writeRandomBlob(blobs, size, seed+uint64(i)*0x9E3779B97F4A7C15+1)
		if err != nil {
			return nil, err
		}
		d.Small = append(d.Small, b)
	}
	js, _ := json.MarshalIndent(&d, "", " ")
	if err := os.WriteFile(metaPath, js, 0o644); err != nil {
		return nil, err
	}
	logf("test data: generated in %.1f s", time.Since(t0).Seconds())
	return &d, nil
}

func (s *swarmBench) startUpstream() error {
	dir := filepath.Join(s.o.work, "upstream")
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		u := &swarmUpstream{regIP: s.l.regIP(), cdnIP: s.l.cdnIP(), dir: dir}
		var err error
		if u.regPort, err = freePort(u.regIP); err != nil {
			return err
		}
		if u.cdnPort, err = freePort(u.cdnIP); err != nil {
			return err
		}
		conf := swarmUpstreamConf(dir, filepath.Join(s.d.dir, "blobs"), u.regIP, u.cdnIP, u.regPort, u.cdnPort)
		u.proc, err = startNginx(s.o.nginx, "", "nginx-upstream", dir, conf,
			[]string{fmt.Sprintf("%s:%d", u.regIP, u.regPort), fmt.Sprintf("%s:%d", u.cdnIP, u.cdnPort)})
		if err == nil {
			s.up = u
			logf("fake upstream: registry %s (307 to the CDN http://%s:%d), uncapped", u.registryURL(), u.cdnIP, u.cdnPort)
			return nil
		}
		last = err
	}
	return fmt.Errorf("nginx (upstream): %v", last)
}

func blobURL(n *node, b blobInfo) string {
	return n.url() + "/v2/library/bench/blobs/" + b.digest()
}

// setupHolder starts node A, fills the big blob through it from upstream (links not yet
// capped), activates its seed, and starts the plain-HTTP baseline next to it.
func (s *swarmBench) setupHolder() error {
	o, l, d := s.o, s.l, s.d
	a, err := s.startNode(nodeSpec{name: "A", ns: l.ns(0), ip: l.ip(0), discovery: true, fresh: true})
	if err != nil {
		return err
	}
	s.holder = a
	ctx, cancel := context.WithTimeout(context.Background(), o.transferTimeout)
	defer cancel()
	el, err := fullGet(ctx, blobURL(a, d.Big), d.Big)
	if err != nil {
		return fmt.Errorf("holder A: fill from upstream: %v\n%s", err, logTail(a.p.log, 20))
	}
	if _, err := a.waitIdle(1, time.Minute); err != nil {
		return err
	}
	s.rep.HolderFillSecs = el.Seconds()
	logf("holder A (%s) cached %s from upstream in %.2f s (sha256 checked)", a.url(), human(d.Big.Size), el.Seconds())
	// The seed joins the BitTorrent session on first demand (one SHA-1 pass over the blob).
	// Do it here, untimed, as a node that has been seeding for a while would have.
	t := time.Now()
	b, code, err := getBody(a.url() + "/_shoal/v1/blobs/" + d.Big.digest() + "/torrent")
	if err != nil || code != 200 || len(b) == 0 {
		return fmt.Errorf("holder A: .torrent: status %d, err %v", code, err)
	}
	s.rep.SeedActivationSecs = time.Since(t).Seconds()
	logf("holder A: seed activated in %.2f s", s.rep.SeedActivationSecs)
	// Both copies of the file in the page cache: nginx's source and A's blob file.
	for _, p := range []string{d.blobPath(d.Big), filepath.Join(a.dataDir, "blobs", "sha256", d.Big.Hex[:2], d.Big.Hex)} {
		if err := readFile(p); err != nil {
			return err
		}
	}
	port := 8080
	s.base, err = startNginx(o.nginx, l.ns(0), "nginx-baseline", filepath.Join(o.work, "baseline"),
		swarmBaselineConf(filepath.Join(o.work, "baseline"), filepath.Join(d.dir, "blobs"), l.ip(0), port),
		[]string{fmt.Sprintf("%s:%d", l.ip(0), port)})
	if err != nil {
		return fmt.Errorf("nginx (baseline in %s): %v", l.ns(0), err)
	}
	s.basePort = port
	return nil
}

func (s *swarmBench) holderUploaded() int64 {
	var v struct {
		Torrents []map[string]interface{} `json:"torrents"`
	}
	if err := s.holder.getJSON("/_shoal/v1/torrents", &v); err != nil {
		return -1
	}
	var n int64
	for _, t := range v.Torrents {
		if t["role"] == "seeding" {
			n += statInt(t, "uploaded_bytes")
		}
	}
	return n
}

// pair: B pulls the blob A holds, HTTP (nginx in A's namespace) vs BitTorrent (through
// shoal on B), interleaved.
func (s *swarmBench) pair() error {
	o, l, d, rep := s.o, s.l, s.d, s.rep
	a := s.holder
	httpURL := fmt.Sprintf("http://%s:%d/blobs/%s", l.ip(0), s.basePort, d.Big.Hex)
	var httpS, btS []float64
	for i := 0; i < o.pairReps; i++ {
		order := []string{"http", "bt"}
		if i%2 == 1 {
			order = []string{"bt", "http"}
		}
		for _, via := range order {
			syscall.Sync()
			tag := fmt.Sprintf("pair%d-%s", i, via)
			tr := transfer{Via: via}
			if via == "http" {
				meter := newCPUMeter(map[string]int{"nginx": s.base.pid(), "A": a.p.pid()})
				r, err := s.getIn(l.ns(1), tag, httpURL, d.Big, time.Time{})
				if err != nil {
					return err
				}
				tr.CPU, tr.MachineBusy = meter.read()
				tr.Secs, tr.FirstByte = r.Secs, r.FirstByte
				httpS = append(httpS, r.Secs)
			} else {
				b, err := s.startNode(nodeSpec{name: tag, ns: l.ns(1), ip: l.ip(1), peers: []string{a.url()}, fresh: true})
				if err != nil {
					return err
				}
				tw := time.Now()
				if _, err := b.waitHolder(a, 30*time.Second); err != nil {
					b.stop()
					return err
				}
				tr.PeerWait = time.Since(tw).Seconds()
				reqs0, up0 := s.up.requests(), s.holderUploaded()
				meter := newCPUMeter(map[string]int{"A": a.p.pid(), "B": b.p.pid()})
				r, err := s.getIn(l.ns(1), tag, blobURL(b, d.Big), d.Big, time.Time{})
				if err != nil {
					b.stop()
					return fmt.Errorf("%v\nB's log:\n%s", err, logTail(b.p.log, 20))
				}
				tr.CPU, tr.MachineBusy = meter.read()
				m, err := b.waitIdle(1, time.Minute)
				if err != nil {
					b.stop()
					return err
				}
				tr.Secs, tr.FirstByte = r.Secs, r.FirstByte
				tr.PullerStats = m
				tr.UpstreamBytes = statInt(m, "upstream_bytes")
				tr.UpstreamReqs = s.up.requests() - reqs0
				tr.HolderUpload = s.holderUploaded() - up0
				b.stop()
				os.RemoveAll(b.dataDir)
				btS = append(btS, r.Secs)
			}
			tr.MBps = float64(d.Big.Size) / tr.Secs / 1e6
			rep.Pair = append(rep.Pair, tr)
			extra := ""
			if via == "bt" {
				extra = fmt.Sprintf("; B: upstream %d B, from peers %s; A uploaded %s; upstream requests %d; B found A in %.1f s",
					tr.UpstreamBytes, human(statInt(tr.PullerStats, "peer_bytes")), human(tr.HolderUpload), tr.UpstreamReqs, tr.PeerWait)
			}
			logf("pair %d %-4s %.2f s (%.1f MB/s, first byte %.3f s); CPU s %s; machine %.0f%% busy%s",
				i+1, via, tr.Secs, tr.MBps, tr.FirstByte, fmtCPU(tr.CPU), 100*tr.MachineBusy, extra)
		}
	}
	ratio := median(httpS) / median(btS)
	rep.FanoutSingleSecs = median(btS)
	var cpuA, cpuB, cpuN []float64
	for _, t := range rep.Pair {
		if t.Via == "bt" {
			cpuA, cpuB = append(cpuA, t.CPU["A"]), append(cpuB, t.CPU["B"])
		} else {
			cpuN = append(cpuN, t.CPU["nginx"])
		}
	}
	rep.Figures = append(rep.Figures, swarmFigure{
		Name: "pair: HTTP time / BitTorrent time", Value: ratio, Unit: "×",
		Goal: fmt.Sprintf("≥ %.2f", o.pairGoal), Met: ratio >= o.pairGoal,
		Detail: fmt.Sprintf("node B pulls a %s blob that A holds, links capped at %d Mbit/s; median of %d: HTTP (nginx in A's namespace) %.2f s [%s] = %.1f MB/s, BitTorrent (GET through shoal on B) %.2f s [%s] = %.1f MB/s",
			sizeStr(d.Big.Size), o.mbit, o.pairReps, median(httpS), fmtList(httpS, 2), float64(d.Big.Size)/median(httpS)/1e6,
			median(btS), fmtList(btS, 2), float64(d.Big.Size)/median(btS)/1e6) +
			fmt.Sprintf("; CPU seconds per transfer (median): nginx %.1f; shoal A %.1f + shoal B %.1f", median(cpuN), median(cpuA), median(cpuB)),
	})
	return nil
}

func fmtCPU(m map[string]float64) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var p []string
	for _, k := range ks {
		p = append(p, fmt.Sprintf("%s %.1f", k, m[k]))
	}
	return strings.Join(p, ", ")
}

// sampleTorrents polls every node's /_shoal/v1/torrents once a second until stop.
func sampleTorrents(nodes []*node, t0 time.Time, stop chan struct{}) []torrentSample {
	var out []torrentSample
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return out
		case <-tick.C:
		}
		for _, n := range nodes {
			var v struct {
				Torrents []map[string]interface{} `json:"torrents"`
			}
			if n.getJSON("/_shoal/v1/torrents", &v) == nil {
				for _, t := range v.Torrents {
					delete(t, "infohash")
					delete(t, "digest")
				}
				out = append(out, torrentSample{T: time.Since(t0).Seconds(), Node: n.name, Torrents: v.Torrents})
			}
		}
	}
}

// fanout: 4 fresh pullers find the holder by LAN discovery, then all GET the blob at once.
func (s *swarmBench) fanout() error {
	o, l, d, rep := s.o, s.l, s.d, s.rep
	a := s.holder
	single := rep.FanoutSingleSecs
	if single == 0 {
		// No pair phase: time one puller alone first.
		b, err := s.startNode(nodeSpec{name: "single", ns: l.ns(1), ip: l.ip(1), discovery: true, fresh: true})
		if err != nil {
			return err
		}
		if _, err := b.waitHolder(a, 30*time.Second); err != nil {
			b.stop()
			return err
		}
		r, err := s.getIn(l.ns(1), "single", blobURL(b, d.Big), d.Big, time.Time{})
		b.stop()
		os.RemoveAll(b.dataDir)
		if err != nil {
			return err
		}
		single = r.Secs
		rep.FanoutSingleSecs = single
		logf("fan-out: one puller alone: %.2f s", single)
	}
	var walls []float64
	for round := 0; round < o.fanoutReps; round++ {
		syscall.Sync()
		var run fanoutRun
		var pullers []*node
		stopPullers := func() {
			for _, p := range pullers {
				p.stop()
				os.RemoveAll(p.dataDir)
			}
		}
		t0 := time.Now()
		for i := 1; i <= 4; i++ {
			p, err := s.startNode(nodeSpec{name: fmt.Sprintf("fan%d-p%d", round, i), ns: l.ns(i), ip: l.ip(i), discovery: true, fresh: true})
			if err != nil {
				stopPullers()
				return err
			}
			pullers = append(pullers, p)
		}
		// Every puller finds the holder by multicast discovery alone (no --peer).
		for _, p := range pullers {
			if _, err := p.waitHolder(a, 45*time.Second); err != nil {
				stopPullers()
				return fmt.Errorf("fan-out: %v", err)
			}
		}
		run.DiscoverySecs = time.Since(t0).Seconds()
		// And, for a fair chance to help each other, every other node too (not fatal).
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			all := true
			for _, p := range pullers {
				ps, err := p.peers()
				known := 0
				for _, r := range ps {
					if r.Source != "" {
						known++
					}
				}
				all = all && err == nil && known >= 4
			}
			if all {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		run.AllKnownSecs = time.Since(t0).Seconds()
		reqs0, up0 := s.up.requests(), s.holderUploaded()
		groups := map[string]int{"A": a.p.pid()}
		for _, p := range pullers {
			groups[p.name] = p.p.pid()
		}
		meter := newCPUMeter(groups)
		stopSampling := make(chan struct{})
		samplesC := make(chan []torrentSample, 1)
		at := time.Now().Add(500 * time.Millisecond)
		go func() { samplesC <- sampleTorrents(append([]*node{a}, pullers...), at, stopSampling) }()
		results := make([]getResult, len(pullers))
		errs := make([]error, len(pullers))
		var wg sync.WaitGroup
		for i, p := range pullers {
			wg.Add(1)
			go func(i int, p *node) {
				defer wg.Done()
				results[i], errs[i] = s.getIn(l.ns(i+1), p.name, blobURL(p, d.Big), d.Big, at)
			}(i, p)
		}
		wg.Wait()
		close(stopSampling)
		run.Samples = <-samplesC
		run.CPU, run.MachineBusy = meter.read()
		for i, err := range errs {
			if err != nil {
				stopPullers()
				return fmt.Errorf("fan-out puller %d: %v\nlog:\n%s", i+1, err, logTail(pullers[i].p.log, 20))
			}
		}
		first, last := int64(math.MaxInt64), int64(0)
		for _, r := range results {
			if r.Start < first {
				first = r.Start
			}
			if end := r.Start + int64(r.Secs*1e9); end > last {
				last = end
			}
		}
		run.Wall = float64(last-first) / 1e9
		for _, p := range pullers {
			if _, err := p.waitIdle(1, time.Minute); err != nil {
				stopPullers()
				return err
			}
		}
		// seeded_bytes is brought up to date every 5 s.
		time.Sleep(6 * time.Second)
		run.UpstreamReqs = s.up.requests() - reqs0
		run.HolderUpload = s.holderUploaded() - up0
		for i, p := range pullers {
			m, err := p.stats()
			if err != nil {
				stopPullers()
				return err
			}
			pr := pullerResult{Node: p.name, StartOffset: float64(results[i].Start-first) / 1e9, Secs: results[i].Secs,
				FirstByte: results[i].FirstByte, UpstreamBytes: statInt(m, "upstream_bytes"), PeerBytes: statInt(m, "peer_bytes"),
				SeededBytes: statInt(m, "seeded_bytes"), Stats: m}
			for _, smp := range run.Samples {
				if smp.Node == p.name {
					for _, t := range smp.Torrents {
						if v, ok := t["peers"].(float64); ok && v > pr.MaxPeers {
							pr.MaxPeers = v
						}
					}
				}
			}
			run.Pullers = append(run.Pullers, pr)
		}
		stopPullers()
		rep.Fanout = append(rep.Fanout, run)
		walls = append(walls, run.Wall)
		var per []string
		for _, pr := range run.Pullers {
			per = append(per, fmt.Sprintf("%.1f s (up %d B, seeded %s, peers ≤%.0f)", pr.Secs, pr.UpstreamBytes, human(pr.SeededBytes), pr.MaxPeers))
		}
		logf("fan-out %d: all 4 in %.2f s = %.2f × one transfer; holder uploaded %s (%.2f copies); pullers: %s; discovery %.1f s; upstream requests %d; CPU s %s; machine %.0f%% busy",
			round+1, run.Wall, run.Wall/single, human(run.HolderUpload), float64(run.HolderUpload)/float64(d.Big.Size),
			strings.Join(per, ", "), run.DiscoverySecs, run.UpstreamReqs, fmtCPU(run.CPU), 100*run.MachineBusy)
	}
	ratio := median(walls) / single
	var copies []float64
	for _, r := range rep.Fanout {
		copies = append(copies, float64(r.HolderUpload)/float64(d.Big.Size))
	}
	rep.Figures = append(rep.Figures, swarmFigure{
		Name: "fan-out: 4 pullers / one transfer", Value: ratio, Unit: "×",
		Goal: fmt.Sprintf("≤ %.2f", o.fanoutGoal), Met: ratio <= o.fanoutGoal,
		Detail: fmt.Sprintf("4 pullers (found the holder by LAN discovery) GET the %s blob at once, every link capped at %d Mbit/s; median wall time of %d rounds %.2f s [%s] ÷ one BitTorrent transfer alone %.2f s; the holder uploaded [%s] copies of the blob per round (a central server on the same link: 4 copies, about 4×)",
			sizeStr(d.Big.Size), o.mbit, o.fanoutReps, median(walls), fmtList(walls, 2), single, fmtList(copies, 2)),
	})
	return nil
}

// upstreamFigure: bytes the pullers fetched upstream and requests upstream answered while
// the LAN held the blob (pair BitTorrent transfers and fan-out rounds).
func (s *swarmBench) upstreamFigure() {
	rep := s.rep
	var bytes int64
	reqs, n := 0, 0
	for _, t := range rep.Pair {
		if t.Via == "bt" {
			bytes += t.UpstreamBytes
			reqs += t.UpstreamReqs
			n++
		}
	}
	for _, r := range rep.Fanout {
		for _, p := range r.Pullers {
			bytes += p.UpstreamBytes
			n++
		}
		reqs += r.UpstreamReqs
	}
	if n == 0 {
		return
	}
	rep.Figures = append(rep.Figures, swarmFigure{
		Name: "upstream bytes for a blob the LAN holds", Value: float64(bytes), Unit: "B",
		Goal: "= 0 (and 0 requests)", Met: bytes == 0 && reqs == 0,
		Detail: fmt.Sprintf("sum of upstream_bytes over %d BitTorrent pulls (pair and fan-out): %d B; requests the fake upstream answered meanwhile (its access log): %d", n, bytes, reqs),
	})
}

// restart: a data dir of N small blobs (filled through shoal from upstream), then timed
// restarts until health answers 200 and until the catalog lists every blob.
func (s *swarmBench) restart() error {
	o, d, rep := s.o, s.d, s.rep
	spec := nodeSpec{name: "restart", ip: "127.0.0.1", fresh: true}
	n, err := s.startNode(spec)
	if err != nil {
		return err
	}
	logf("restart: filling %d blobs (%s-%s) through shoal from upstream, %d at a time",
		len(d.Small), human(d.Min), human(d.Max), o.fillParallel)
	t0 := time.Now()
	jobs := make(chan blobInfo)
	errc := make(chan error, o.fillParallel)
	var wg sync.WaitGroup
	for w := 0; w < o.fillParallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range jobs {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				_, err := fullGet(ctx, blobURL(n, b), b)
				cancel()
				if err != nil {
					select {
					case errc <- fmt.Errorf("restart fill %s: %v", b.Hex[:12], err):
					default:
					}
				}
			}
		}()
	}
	for _, b := range d.Small {
		jobs <- b
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		n.stop()
		return fmt.Errorf("%v\n%s", err, logTail(n.p.log, 20))
	default:
	}
	want := int64(len(d.Small))
	if _, err := n.waitIdle(want, 2*time.Minute); err != nil {
		n.stop()
		return err
	}
	rep.RestartFillSecs = time.Since(t0).Seconds()
	rep.RestartFirstStop = n.stop().Seconds()
	logf("restart: filled in %.1f s; stopped in %.2f s", rep.RestartFillSecs, rep.RestartFirstStop)

	spec.fresh = false
	var health, catalog, rss []float64
	for i := 0; i < o.restarts; i++ {
		syscall.Sync()
		var r restartRun
		n, err := s.startNode(spec)
		if err != nil {
			return err
		}
		r.HealthSecs = time.Since(n.started).Seconds()
		for {
			c, err := n.catalogLen()
			if err == nil && int64(c) >= want {
				break
			}
			if time.Since(n.started) > time.Minute {
				n.stop()
				return fmt.Errorf("restart: catalog lists %d of %d blobs after a minute (%v)", c, want, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		r.CatalogSecs = time.Since(n.started).Seconds()
		m, err := n.stats()
		if err != nil {
			n.stop()
			return err
		}
		r.StatsBlobs = statInt(m, "blobs")
		time.Sleep(2 * time.Second)
		r.VmRSS, _ = procStatus(n.p.pid(), "VmRSS:")
		r.VmHWM, _ = procStatus(n.p.pid(), "VmHWM:")
		r.StopSecs = n.stop().Seconds()
		rep.Restarts = append(rep.Restarts, r)
		health, catalog, rss = append(health, r.HealthSecs), append(catalog, r.CatalogSecs), append(rss, float64(r.VmRSS)/1e6)
		logf("restart %d: health %.3f s, full catalog (%d blobs) %.3f s, stats blobs %d; RSS %.1f MB (peak %.1f MB); stopped in %.2f s",
			i+1, r.HealthSecs, want, r.CatalogSecs, r.StatsBlobs, float64(r.VmRSS)/1e6, float64(r.VmHWM)/1e6, r.StopSecs)
		if r.StatsBlobs != want {
			return fmt.Errorf("restart: stats say %d blobs, want %d", r.StatsBlobs, want)
		}
	}
	rep.Figures = append(rep.Figures,
		swarmFigure{Name: fmt.Sprintf("restart → health 200 (%d blobs)", want), Value: median(health), Unit: "s",
			Detail: fmt.Sprintf("from starting `shoal serve` on a data dir of %d blobs (%s-%s) to the first 200 from /_shoal/v1/health, median of %d [%s]",
				want, human(d.Min), human(d.Max), o.restarts, fmtList(health, 3))},
		swarmFigure{Name: fmt.Sprintf("restart → catalog lists all %d", want), Value: median(catalog), Unit: "s",
			Detail: fmt.Sprintf("same start to /_shoal/v1/catalog listing all %d blobs, median of %d [%s]", want, o.restarts, fmtList(catalog, 3))},
		swarmFigure{Name: "RSS after restart", Value: median(rss), Unit: "MB",
			Detail: fmt.Sprintf("VmRSS 2 s after the catalog was complete, median of %d [%s]", o.restarts, fmtList(rss, 1))},
	)
	return nil
}

func procStatus(pid int, key string) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", fmt.Sprint(pid), "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key) {
			var kb int64
			fmt.Sscan(strings.Fields(line)[1], &kb)
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", key, pid)
}

func printSwarmSummary(rep *swarmReport) {
	fmt.Println()
	fmt.Printf("shoal LAN-swarm benchmark  %s  %s cores (%s)  shoal %s\n", rep.Date, rep.Host["cores"], rep.Host["cpu"], rep.Host["shoal_commit"])
	fmt.Printf("load average %s at start, %s at end; %.0f s\n", rep.Host["loadavg_start"], rep.Host["loadavg_end"], rep.Elapsed)
	fmt.Printf("links: tbf %v on both directions of every node's veth\n\n", rep.Params["tbf"])
	fmt.Printf("%-40s %12s %22s  %s\n", "figure", "value", "goal", "result")
	for _, f := range rep.Figures {
		goal, res := "—", "info"
		if f.Goal != "" {
			goal, res = f.Goal, "PASS"
			if !f.Met {
				res = "FAIL"
			}
		}
		fmt.Printf("%-40s %12s %22s  %s\n", f.Name, swarmVal(f), goal, res)
	}
	fmt.Println()
	for _, f := range rep.Figures {
		fmt.Printf("- %s: %s\n", f.Name, f.Detail)
	}
	var busy []string
	for i, t := range rep.Pair {
		if t.MachineBusy > 0.8 {
			busy = append(busy, fmt.Sprintf("pair transfer %d (%s) %.0f%%", i+1, t.Via, 100*t.MachineBusy))
		}
	}
	for i, r := range rep.Fanout {
		if r.MachineBusy > 0.8 {
			busy = append(busy, fmt.Sprintf("fan-out round %d %.0f%%", i+1, 100*r.MachineBusy))
		}
	}
	if len(busy) > 0 {
		fmt.Printf("\nNOTE: the machine was over 80%% busy (all processes, other users' included) during: %s; those samples may be CPU-bound rather than link-bound.\n",
			strings.Join(busy, ", "))
	}
	fmt.Println()
	if rep.Pass {
		fmt.Println("RESULT: PASS (every figure meets its goal)")
	} else {
		fmt.Println("RESULT: FAIL (at least one figure misses its goal)")
	}
}

func swarmVal(f swarmFigure) string {
	switch f.Unit {
	case "MB":
		return fmt.Sprintf("%.1f MB", f.Value)
	case "s":
		return fmt.Sprintf("%.3f s", f.Value)
	case "B":
		return fmt.Sprintf("%.0f B", f.Value)
	default:
		return fmt.Sprintf("%.3f", f.Value)
	}
}
