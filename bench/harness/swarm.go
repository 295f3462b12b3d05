package main

// `harness swarm`: the LAN-swarm benchmark (run it through bench/swarm, which builds the
// network namespaces and tears them down). -nodes N shoal nodes, each `shoal serve` with
// its defaults (discovery on, no --peer, no SHOAL_* of the harness's own) in a namespace of
// its own; every node link capped (-rate), and the WAN link between the fake upstream
// (nginx registry + CDN) and the LAN capped too (-wan-rate). In one run, each figure
// against a baseline of the same run:
//
//   - pair: node B pulls a blob that node A holds, over BitTorrent, vs a plain HTTP copy of
//     the same file (nginx in A's namespace, the same client in B's), same caps;
//   - classroom: A holds the blob, N−1 fresh nodes pull it at once: slowest and median ÷
//     one transfer alone (pair's), the copies A uploaded, the bytes the CDN sent (0);
//   - cold: N fresh nodes pull an uncached blob at once over the capped WAN: the bytes the
//     CDN sent ÷ the blob, and the slowest ÷ one fresh node pulling it alone (same run);
//   - after5s: a node pulls a blob 5 s after another cached it: the bytes the CDN sent (0);
//   - restart: `shoal serve` on a data dir of many small blobs until health answers and
//     until its catalog lists them all, and its RSS after the restart.
//
// The phases run in that order (pair and classroom need the holder A, which is stopped
// before cold and after5s so that those rounds have only their own nodes on the LAN).

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
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
	shoal, nginx, self           string
	work, data, out, repo        string
	subnet, nsPrefix, vethPrefix string
	nodes                        int
	mbit, wanMbit                int
	blobSize, coldSize           int64
	pairReps, classroomReps      int
	coldReps, after5sReps        int
	restarts                     int
	smallBlobs                   int
	smallMin, smallMax           int64
	fillParallel                 int
	shoalLog                     string
	phases                       string
	timeout, transferTimeout     time.Duration
}

// The figures' bounds: a run passes (exit 0) when every "must" holds; the goals are
// reported beside them.
const (
	pairMust, pairGoal               = 0.90, 0.95  // HTTP time ÷ BitTorrent time, at least
	coldCDNMust, coldCDNGoal         = 1.02, 1.005 // CDN bytes ÷ blob, at most (the goal: 1.00 to two places)
	coldSlowMust, coldSlowGoal       = 1.5, 1.2    // slowest ÷ one node alone, at most
	classSlowMust, classSlowGoal     = 2.0, 1.3    // slowest ÷ one transfer alone, at most
	classMedianMust                  = 1.5         // median ÷ one transfer alone, at most
	classCopiesMust, classCopiesGoal = 2.0, 1.3    // copies the holder uploaded, at most
	after5sDelay                     = 5 * time.Second
	defaultCatalogInterval           = 30 * time.Second // shoal's p2p.catalog_interval
	after5sCommitAfterPoll           = 10 * time.Second
	meshTimeout                      = 60 * time.Second
	commitTimeout                    = 2 * time.Minute
	busyShare                        = 0.8 // flag samples taken while the machine was busier
	lanOwnerTries                    = 16
	startSkew                        = 500 * time.Millisecond
	startSkewPerNode                 = 50 * time.Millisecond
	seededUpdate                     = 6 * time.Second // seeded_bytes is brought up to date every 5 s
	classroomAlias, classroomPhase   = "fanout", "classroom"
	defaultPhases                    = "pair,cold,classroom,after5s,restart"
	knownPhases                      = "pair, cold, classroom (or fanout), after5s, restart"
)

type swarmFigure struct {
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit"`
	Must    string  `json:"must"` // "" for figures recorded without bounds
	Goal    string  `json:"goal"`
	MetMust bool    `json:"met_must"`
	MetGoal bool    `json:"met_goal"`
	Detail  string  `json:"detail"`
}

// atMost and atLeast build a bounded figure; exact asks for 0.
func atMost(name string, v float64, unit string, must, goal float64, prec int, detail string) swarmFigure {
	return swarmFigure{Name: name, Value: v, Unit: unit, Must: fmt.Sprintf("≤ %.*f", prec, must),
		Goal: fmt.Sprintf("≤ %.*f", prec, goal), MetMust: v <= must, MetGoal: v <= goal, Detail: detail}
}

func atLeast(name string, v float64, unit string, must, goal float64, prec int, detail string) swarmFigure {
	return swarmFigure{Name: name, Value: v, Unit: unit, Must: fmt.Sprintf("≥ %.*f", prec, must),
		Goal: fmt.Sprintf("≥ %.*f", prec, goal), MetMust: v >= must, MetGoal: v >= goal, Detail: detail}
}

func zero(name string, v float64, unit, detail string) swarmFigure {
	return swarmFigure{Name: name, Value: v, Unit: unit, Must: "= 0", Goal: "= 0", MetMust: v == 0, MetGoal: v == 0, Detail: detail}
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

// pullerResult is one node's pull in a round: its client's times and the node's stats
// once its fill committed.
type pullerResult struct {
	Node          string                 `json:"node"`
	NodeID        string                 `json:"node_id"`
	StartOffset   float64                `json:"start_offset_secs"`
	Secs          float64                `json:"secs"`
	FirstByte     float64                `json:"first_byte_secs"`
	UpstreamBytes int64                  `json:"upstream_bytes"`
	PeerBytes     int64                  `json:"peer_bytes"`
	ServedBytes   int64                  `json:"served_bytes"`
	SeededBytes   int64                  `json:"seeded_bytes"`
	MaxPeers      float64                `json:"max_bt_peers_seen,omitempty"`
	Stats         map[string]interface{} `json:"stats"`
	Fills         json.RawMessage        `json:"fills,omitempty"` // the node's fills report (where its bytes came from)
}

type torrentSample struct {
	T        float64                  `json:"t"`
	Node     string                   `json:"node"`
	Torrents []map[string]interface{} `json:"torrents"`
}

type classroomRun struct {
	Wall          float64            `json:"wall_secs"`
	Slowest       float64            `json:"slowest_secs"`
	Median        float64            `json:"median_secs"`
	DiscoverySecs float64            `json:"discovery_secs"`
	MeshSecs      float64            `json:"all_peers_known_secs"`
	Pullers       []pullerResult     `json:"pullers"`
	HolderUpload  int64              `json:"holder_uploaded_bytes"` // BitTorrent (torrents' uploaded_bytes)
	HolderServed  int64              `json:"holder_served_bytes"`   // HTTP (stats served_bytes)
	HolderWire    int64              `json:"holder_link_sent_bytes"`
	UpstreamReqs  int                `json:"upstream_requests"`
	CDN           cdnCount           `json:"cdn"`
	CPU           map[string]float64 `json:"cpu_secs"`
	MachineBusy   float64            `json:"machine_busy_share"`
	Samples       []torrentSample    `json:"torrent_samples"`
}

func (r classroomRun) copies(size int64) float64 {
	return float64(r.HolderUpload+r.HolderServed) / float64(size)
}

type coldRun struct {
	Alone         pullerResult       `json:"alone"`
	AloneCDN      cdnCount           `json:"alone_cdn"`
	AloneWAN      int64              `json:"alone_wan_sent_bytes"`
	AloneBusy     float64            `json:"alone_machine_busy_share"`
	MeshSecs      float64            `json:"all_peers_known_secs"`
	Wall          float64            `json:"wall_secs"`
	Slowest       float64            `json:"slowest_secs"`
	Nodes         []pullerResult     `json:"nodes"`
	CDN           cdnCount           `json:"cdn"`
	WAN           int64              `json:"wan_sent_bytes"`
	UpstreamReqs  int                `json:"upstream_requests"`
	CPU           map[string]float64 `json:"cpu_secs"`
	MachineBusy   float64            `json:"machine_busy_share"`
	FetchingNodes []string           `json:"nodes_with_upstream_bytes"`
}

type after5sRun struct {
	Steered   int          `json:"restarts_to_make_a_the_owner"`
	AOwner    bool         `json:"a_is_the_rendezvous_owner"`
	MeshSecs  float64      `json:"all_peers_known_secs"`
	A         pullerResult `json:"a"`
	ACDN      cdnCount     `json:"a_cdn"`
	GapSecs   float64      `json:"a_commit_to_b_request_secs"`
	AlignSecs float64      `json:"a_start_delay_secs"` // after the mesh, to keep B's catalog poll out of the gap
	// Seconds into B's catalog-poll period (30 s from B's start) of A's commit and of B's
	// request; PollInGap when a poll may have fallen between them.
	CommitPhase  float64      `json:"a_commit_poll_phase_secs"`
	RequestPhase float64      `json:"b_request_poll_phase_secs"`
	PollInGap    bool         `json:"catalog_poll_in_gap"`
	BHeldBefore  bool         `json:"b_held_the_blob_before_its_pull"`
	B            pullerResult `json:"b"`
	BCDN         cdnCount     `json:"b_cdn"`
	BUpReqs      int          `json:"upstream_requests_during_b"`
	BBusy        float64      `json:"b_machine_busy_share"`
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
	HolderFillSecs      float64           `json:"holder_fill_secs"`
	SeedActivationSecs  float64           `json:"seed_activation_secs"`
	Pair                []transfer        `json:"pair"`
	PairCDN             *cdnCount         `json:"pair_cdn,omitempty"`
	Classroom           []classroomRun    `json:"classroom"`
	ClassroomSingleSecs float64           `json:"classroom_single_secs"`
	Cold                []coldRun         `json:"cold"`
	After5s             []after5sRun      `json:"after5s"`
	RestartFillSecs     float64           `json:"restart_fill_secs"`
	RestartFirstStop    float64           `json:"restart_first_stop_secs"`
	Restarts            []restartRun      `json:"restarts"`
	TC                  map[string]string `json:"tc_stats_end"`
	UpstreamTotalReqs   int               `json:"upstream_requests_total"`
	Figures             []swarmFigure     `json:"figures"`
	Pass                bool              `json:"all_musts_met"`
	GoalsMet            bool              `json:"all_goals_met"`
	Elapsed             float64           `json:"elapsed_secs"`
}

type swarmData struct {
	Big   blobInfo   `json:"big"`
	Cold  blobInfo   `json:"cold"`
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

// catalogIntervalSet: the caller's environment changes shoal's catalog interval.
func catalogIntervalSet() bool {
	for _, kv := range shoalEnv() {
		if strings.HasPrefix(kv, "SHOAL_P2P__CATALOG_INTERVAL=") {
			return true
		}
	}
	return false
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
	fs.IntVar(&o.nodes, "nodes", 4, "N: node namespaces (cold: N nodes at once; classroom: a holder and N−1 pullers)")
	fs.IntVar(&o.mbit, "rate", 200, "tbf cap of every node link, each direction, in Mbit/s")
	fs.IntVar(&o.wanMbit, "wan-rate", 100, "tbf cap of the WAN link (fake upstream ⇄ LAN), each direction, in Mbit/s")
	fs.Int64Var(&o.blobSize, "blob-size", 1<<30, "size of the blob the holder shares (pair, classroom)")
	fs.Int64Var(&o.coldSize, "cold-size", 256<<20, "size of the uncached blob (cold, after5s)")
	fs.IntVar(&o.pairReps, "pair-reps", 3, "transfers each way (HTTP, BitTorrent) in the pair test")
	fs.IntVar(&o.classroomReps, "classroom-reps", 3, "classroom rounds")
	fs.IntVar(&o.classroomReps, "fanout-reps", 3, "same as -classroom-reps")
	fs.IntVar(&o.coldReps, "cold-reps", 3, "cold rounds (each: one node alone, then N at once)")
	fs.IntVar(&o.after5sReps, "after5s-reps", 1, "after5s rounds")
	fs.IntVar(&o.restarts, "restarts", 5, "timed restarts")
	fs.IntVar(&o.smallBlobs, "small-blobs", 2000, "blobs in the restart data dir")
	fs.Int64Var(&o.smallMin, "small-min", 64<<10, "smallest of those blobs")
	fs.Int64Var(&o.smallMax, "small-max", 1<<20, "largest of those blobs")
	fs.IntVar(&o.fillParallel, "fill-parallel", 8, "parallel GETs filling the restart data dir")
	fs.StringVar(&o.shoalLog, "shoal-log", "warn", "RUST_LOG for shoal (e.g. shoal=debug)")
	fs.StringVar(&o.phases, "phases", defaultPhases, "which measurements to run: "+knownPhases)
	fs.DurationVar(&o.timeout, "timeout", 50*time.Minute, "give up after this long")
	fs.DurationVar(&o.transferTimeout, "transfer-timeout", 8*time.Minute, "give up on one transfer after this long")
	fs.Parse(args)
	if o.shoal == "" || o.self == "" || o.work == "" || o.data == "" || o.out == "" || o.subnet == "" || o.nsPrefix == "" || o.vethPrefix == "" {
		fmt.Fprintln(os.Stderr, "harness swarm: -shoal, -self, -work, -data, -out, -subnet, -ns-prefix and -veth-prefix are required (use bench/swarm)")
		os.Exit(2)
	}
	if o.nodes < 2 {
		fmt.Fprintln(os.Stderr, "harness swarm: -nodes must be at least 2")
		os.Exit(2)
	}
	if o.mbit < 1 || o.wanMbit < 1 {
		fmt.Fprintln(os.Stderr, "harness swarm: -rate and -wan-rate must be at least 1 (Mbit/s)")
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
		case classroomAlias:
			phases[classroomPhase] = true
		case "pair", "cold", classroomPhase, "after5s", "restart":
			phases[p] = true
		case "":
		default:
			return 0, fmt.Errorf("-phases: unknown phase %q (%s)", p, knownPhases)
		}
	}
	l := &lan{subnet: o.subnet, nsPrefix: o.nsPrefix, vethPrefix: o.vethPrefix, nodes: o.nodes}
	rep := &swarmReport{Date: time.Now().UTC().Format(time.RFC3339), Host: hostInfo(&options{repo: o.repo, nginx: o.nginx})}
	rep.Host["loadavg_start"] = loadavg()
	rep.Host["shoal_binary"] = o.shoal
	if st, err := os.Stat(o.shoal); err == nil {
		rep.Host["shoal_binary_mtime"] = st.ModTime().UTC().Format(time.RFC3339)
	}
	rep.Params = map[string]interface{}{
		"nodes": o.nodes, "rate_mbit": o.mbit, "tbf": tbfSpec(o.mbit), "wan_rate_mbit": o.wanMbit, "wan_tbf": tbfSpec(o.wanMbit),
		"blob_size": o.blobSize, "cold_size": o.coldSize, "pair_reps": o.pairReps, "classroom_reps": o.classroomReps,
		"cold_reps": o.coldReps, "after5s_reps": o.after5sReps, "after5s_delay_secs": after5sDelay.Seconds(),
		"restarts": o.restarts, "small_blobs": o.smallBlobs, "small_min": o.smallMin, "small_max": o.smallMax,
		"shoal_env": shoalEnv(), "shoal_log": o.shoalLog, "phases": o.phases, "subnet": o.subnet + ".0/24",
	}
	rep.Topology = fmt.Sprintf("%d node namespaces (node i at %s.<i+1>) each on a veth into a bridge in a switch namespace, "+
		"every node link capped by a tbf of %d Mbit/s on both directions (node-side veth egress = uploads, switch-side veth "+
		"egress = downloads); the root namespace (fake upstream: registry %s.254, CDN %s.253; the harness's admin requests) "+
		"on one more veth into the bridge, the WAN link, capped at %d Mbit/s on both directions (root-side egress = what the "+
		"CDN sends). Holder A = node 0 and pair puller B = node 1; classroom pullers = nodes 1..%d; cold = nodes 0..%d; "+
		"after5s = nodes 0 and 1.",
		o.nodes, o.subnet, o.mbit, o.subnet, o.subnet, o.wanMbit, o.nodes-1, o.nodes-1)

	d, err := prepareSwarmData(o, phases["cold"] || phases["after5s"])
	if err != nil {
		return 0, fmt.Errorf("test data: %w", err)
	}
	s := &swarmBench{o: o, l: l, d: d, rep: rep}
	if err := s.startUpstream(); err != nil {
		return 0, err
	}
	holderPhases := phases["pair"] || phases[classroomPhase]
	lanPhases := holderPhases || phases["cold"] || phases["after5s"]
	if holderPhases {
		if err := s.setupHolder(); err != nil {
			return 0, err
		}
	}
	if lanPhases {
		logf("capping every node link at %d Mbit/s each way (tbf burst %d B), the WAN link at %d Mbit/s each way (burst %d B)",
			o.mbit, tbfBurst(o.mbit), o.wanMbit, tbfBurst(o.wanMbit))
		if err := l.capAll(o.mbit, o.wanMbit); err != nil {
			return 0, err
		}
	}
	if phases["pair"] {
		if err := s.pair(); err != nil {
			return 0, err
		}
	}
	if phases[classroomPhase] {
		if err := s.classroom(); err != nil {
			return 0, err
		}
	}
	if holderPhases {
		s.stopHolder()
	}
	if phases["cold"] {
		if err := s.cold(); err != nil {
			return 0, err
		}
	}
	if phases["after5s"] {
		if err := s.after5s(); err != nil {
			return 0, err
		}
	}
	if lanPhases {
		rep.TC = l.tcStats()
		l.capAll(0, 0)
	}
	if phases["restart"] {
		if err := s.restart(); err != nil {
			return 0, err
		}
	}
	rep.UpstreamTotalReqs = s.up.requests()
	rep.Pass, rep.GoalsMet = true, true
	for _, f := range rep.Figures {
		if f.Must != "" {
			rep.Pass = rep.Pass && f.MetMust
			rep.GoalsMet = rep.GoalsMet && f.MetGoal
		}
	}
	rep.Host["loadavg_end"] = loadavg()
	rep.Elapsed = time.Since(t0).Seconds()
	printSwarmSummary(rep)
	return writeReport(o.out, "swarm-", "swarm-latest.json", rep, rep.Pass)
}

// prepareSwarmData reuses <dir>/meta.json when its blobs exist with the wanted sizes; the
// uncached blob (cold, after5s) is added on its own when it is missing or has another size.
func prepareSwarmData(o *swarmOpts, needCold bool) (*swarmData, error) {
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
			if needCold && (d.Cold.Size != o.coldSize || d.Cold.Hex == "" || fileSize(d.blobPath(d.Cold)) != d.Cold.Size) {
				if err := addColdBlob(&d, o.coldSize, metaPath); err != nil {
					return nil, err
				}
			}
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
	if needCold {
		if d.Cold, err = writeRandomBlob(blobs, o.coldSize, seed^0x5bd1e9955bd1e995); err != nil {
			return nil, err
		}
	}
	js, _ := json.MarshalIndent(&d, "", " ")
	if err := os.WriteFile(metaPath, js, 0o644); err != nil {
		return nil, err
	}
	logf("test data: generated in %.1f s", time.Since(t0).Seconds())
	return &d, nil
}

func addColdBlob(d *swarmData, size int64, metaPath string) error {
	logf("test data: generating the uncached blob (%s)", human(size))
	if d.Cold.Hex != "" {
		os.Remove(d.blobPath(d.Cold))
	}
	var err error
	if d.Cold, err = writeRandomBlob(filepath.Join(d.dir, "blobs"), size, uint64(time.Now().UnixNano())|1); err != nil {
		return err
	}
	js, _ := json.MarshalIndent(d, "", " ")
	return os.WriteFile(metaPath, js, 0o644)
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
		if u.statusPort, err = freePort("127.0.0.1"); err != nil {
			return err
		}
		conf := swarmUpstreamConf(dir, filepath.Join(s.d.dir, "blobs"), u.regIP, u.cdnIP, u.regPort, u.cdnPort, u.statusPort)
		u.proc, err = startNginx(s.o.nginx, "", "nginx-upstream", dir, conf,
			[]string{fmt.Sprintf("%s:%d", u.regIP, u.regPort), fmt.Sprintf("%s:%d", u.cdnIP, u.cdnPort),
				fmt.Sprintf("127.0.0.1:%d", u.statusPort)})
		if err == nil {
			if _, err = u.inFlight(); err != nil {
				u.proc.stop(3 * time.Second)
				return fmt.Errorf("nginx (upstream): no stub_status: %v", err)
			}
			s.up = u
			logf("fake upstream: registry %s (307 to the CDN http://%s:%d)", u.registryURL(), u.cdnIP, u.cdnPort)
			return nil
		}
		last = err
	}
	return fmt.Errorf("nginx (upstream): %v", last)
}

func blobURL(n *node, b blobInfo) string {
	return n.url() + "/v2/library/bench/blobs/" + b.digest()
}

// setupHolder starts node A, fills the big blob through it from upstream (links, the WAN's
// too, not yet capped), activates its seed, and starts the plain-HTTP baseline next to it.
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

// stopHolder stops A and the baseline nginx: the rounds after (cold, after5s) have only
// their own nodes on the LAN.
func (s *swarmBench) stopHolder() {
	if s.base != nil {
		s.base.stop(3 * time.Second)
		s.base = nil
	}
	if s.holder != nil {
		s.holder.stop()
		os.RemoveAll(s.holder.dataDir)
		s.holder = nil
	}
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
	mark := s.up.mark()
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
	cdn, err := s.up.cdnSince(mark)
	if err != nil {
		return err
	}
	rep.PairCDN = &cdn
	ratio := median(httpS) / median(btS)
	rep.ClassroomSingleSecs = median(btS)
	var cpuA, cpuB, cpuN []float64
	for _, t := range rep.Pair {
		if t.Via == "bt" {
			cpuA, cpuB = append(cpuA, t.CPU["A"]), append(cpuB, t.CPU["B"])
		} else {
			cpuN = append(cpuN, t.CPU["nginx"])
		}
	}
	var upB int64
	for _, t := range rep.Pair {
		upB += t.UpstreamBytes
	}
	rep.Figures = append(rep.Figures, atLeast("pair: HTTP time ÷ BitTorrent time", ratio, "×", pairMust, pairGoal, 2,
		fmt.Sprintf("node B pulls a %s blob that A holds, links capped at %d Mbit/s; median of %d: HTTP (nginx in A's namespace) %.2f s [%s] = %.1f MB/s, BitTorrent (GET through shoal on B) %.2f s [%s] = %.1f MB/s",
			sizeStr(d.Big.Size), o.mbit, o.pairReps, median(httpS), fmtList(httpS, 2), float64(d.Big.Size)/median(httpS)/1e6,
			median(btS), fmtList(btS, 2), float64(d.Big.Size)/median(btS)/1e6)+
			fmt.Sprintf("; CPU seconds per transfer (median): nginx %.1f; shoal A %.1f + shoal B %.1f", median(cpuN), median(cpuA), median(cpuB))),
		zero("pair: CDN bytes for B's pulls", float64(cdn.Bytes), "B",
			fmt.Sprintf("the CDN's access log over the pair phase (A holds the blob; B pulls it %d times): %d B in %d requests; B's upstream_bytes summed: %d B",
				o.pairReps, cdn.Bytes, cdn.Requests, upB)))
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
	fmt.Printf("N = %v nodes; links: tbf %v on both directions of every node's veth; WAN (upstream ⇄ LAN): tbf %v both directions\n",
		rep.Params["nodes"], rep.Params["tbf"], rep.Params["wan_tbf"])
	if env, _ := rep.Params["shoal_env"].([]string); len(env) > 0 {
		fmt.Printf("NOTE: not shoal's defaults: every node got %s\n", strings.Join(env, " "))
	}
	fmt.Println()
	fmt.Printf("%-46s %14s %9s %9s  %s\n", "figure", "value", "must", "goal", "result")
	for _, f := range rep.Figures {
		must, goal, res := "—", "—", "info"
		if f.Must != "" {
			must, goal = f.Must, f.Goal
			switch {
			case !f.MetMust:
				res = "FAIL"
			case f.MetGoal:
				res = "PASS, goal met"
			default:
				res = "PASS, goal missed"
			}
		}
		fmt.Printf("%-46s %14s %9s %9s  %s\n", f.Name, swarmVal(f), must, goal, res)
	}
	fmt.Println()
	for _, f := range rep.Figures {
		fmt.Printf("- %s: %s\n", f.Name, f.Detail)
	}
	var busy []string
	flag := func(what string, share float64) {
		if share > busyShare {
			busy = append(busy, fmt.Sprintf("%s %.0f%%", what, 100*share))
		}
	}
	for i, t := range rep.Pair {
		flag(fmt.Sprintf("pair transfer %d (%s)", i+1, t.Via), t.MachineBusy)
	}
	for i, r := range rep.Classroom {
		flag(fmt.Sprintf("classroom round %d", i+1), r.MachineBusy)
	}
	for i, r := range rep.Cold {
		flag(fmt.Sprintf("cold round %d (alone)", i+1), r.AloneBusy)
		flag(fmt.Sprintf("cold round %d (%d at once)", i+1, len(r.Nodes)), r.MachineBusy)
	}
	for i, r := range rep.After5s {
		flag(fmt.Sprintf("after5s round %d (B's pull)", i+1), r.BBusy)
	}
	if len(busy) > 0 {
		fmt.Printf("\nNOTE: the machine was over %.0f%% busy (all processes, other users' included) during: %s; those samples may be CPU-bound rather than link-bound.\n",
			100*busyShare, strings.Join(busy, ", "))
	}
	fmt.Println()
	switch {
	case rep.Pass && rep.GoalsMet:
		fmt.Println("RESULT: PASS (every figure meets its must and its goal)")
	case rep.Pass:
		fmt.Println("RESULT: PASS (every figure meets its must; some miss their goal)")
	default:
		fmt.Println("RESULT: FAIL (at least one figure misses its must)")
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
	case "copies":
		return fmt.Sprintf("%.2f copies", f.Value)
	case "× blob":
		return fmt.Sprintf("%.4f", f.Value)
	default:
		return fmt.Sprintf("%.3f", f.Value)
	}
}
