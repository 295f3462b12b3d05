package main

// The LAN-swarm rounds where several fresh nodes pull at once (bench/swarm): classroom (a
// holder and N−1 pullers), cold (N nodes, nobody holds the blob, the WAN capped) and
// after5s (a pull 5 s after another node cached the blob). Every node is `shoal serve` with
// its defaults, discovery on and no --peer; before anything is timed, every node lists
// every other one as a live peer.

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startFresh starts fresh nodes <prefix><i> in namespaces idx (discovery on, no --peer).
func (s *swarmBench) startFresh(prefix string, idx []int) ([]*node, error) {
	var nodes []*node
	for _, i := range idx {
		n, err := s.startNode(nodeSpec{name: fmt.Sprintf("%s%d", prefix, i), ns: s.l.ns(i), ip: s.l.ip(i), discovery: true, fresh: true})
		if err != nil {
			stopNodes(nodes)
			return nil, err
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// stopNodes stops nodes and deletes their data dirs.
func stopNodes(nodes []*node) {
	for _, n := range nodes {
		n.stop()
		os.RemoveAll(n.dataDir)
	}
}

func seq(from, to int) []int {
	var xs []int
	for i := from; i < to; i++ {
		xs = append(xs, i)
	}
	return xs
}

// pullAll has every node's client (in the node's namespace) GET the blob through its own
// node, all starting at the same instant.
func (s *swarmBench) pullAll(nodes []*node, b blobInfo) ([]getResult, []error) {
	at := time.Now().Add(startSkew + time.Duration(len(nodes))*startSkewPerNode)
	results := make([]getResult, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func(i int, n *node) {
			defer wg.Done()
			results[i], errs[i] = s.getIn(n.ns, n.name, blobURL(n, b), b, at)
		}(i, n)
	}
	wg.Wait()
	return results, errs
}

// span is the wall time from the first request to the last byte, and the slowest and the
// median of the clients' own times.
func span(rs []getResult) (first int64, wall, slowest, med float64) {
	first, last := int64(math.MaxInt64), int64(0)
	var secs []float64
	for _, r := range rs {
		if r.Start < first {
			first = r.Start
		}
		if end := r.Start + int64(r.Secs*1e9); end > last {
			last = end
		}
		secs = append(secs, r.Secs)
	}
	return first, float64(last-first) / 1e9, maxOf(secs), median(secs)
}

// settled waits for n's commit and returns its result in the round.
func settled(n *node, r getResult, first int64) (pullerResult, error) {
	m, err := n.waitIdle(1, commitTimeout)
	if err != nil {
		return pullerResult{}, err
	}
	return nodeResult(n, r, first, m), nil
}

func nodeResult(n *node, r getResult, first int64, m map[string]interface{}) pullerResult {
	pr := pullerResult{Node: n.name, NodeID: n.id, StartOffset: float64(r.Start-first) / 1e9, Secs: r.Secs, FirstByte: r.FirstByte,
		UpstreamBytes: statInt(m, "upstream_bytes"), PeerBytes: statInt(m, "peer_bytes"),
		ServedBytes: statInt(m, "served_bytes"), SeededBytes: statInt(m, "seeded_bytes"), Stats: m}
	// Where the node's fills came from, when its shoal reports it (`fills` in /_shoal/v1/torrents).
	var v struct {
		Fills json.RawMessage `json:"fills"`
	}
	if n.getJSON("/_shoal/v1/torrents", &v) == nil && len(v.Fills) > 0 {
		pr.Fills = v.Fills
	}
	return pr
}

func firstErr(nodes []*node, errs []error) error {
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("%s: %v\nlog:\n%s", nodes[i].name, err, logTail(nodes[i].p.log, 20))
		}
	}
	return nil
}

func nodePGIDs(nodes []*node) map[string]int {
	g := map[string]int{}
	for _, n := range nodes {
		g[n.name] = n.p.pid()
	}
	return g
}

// lanOwner is the node (index into ids) that shoal's rendezvous hashing makes fetch digest
// from upstream for the LAN (p2p/lan.rs `owner`: the highest first 8 bytes, big-endian, of
// sha256(digest ‖ 0 ‖ node id)).
func lanOwner(digest string, ids []string) int {
	best, bs, bid := -1, uint64(0), ""
	for i, id := range ids {
		h := sha256.Sum256([]byte(digest + "\x00" + id))
		v := binary.BigEndian.Uint64(h[:8])
		if best < 0 || v > bs || (v == bs && id > bid) {
			best, bs, bid = i, v, id
		}
	}
	return best
}

// ---------------------------------------------------------------------------------------
// classroom: A holds the blob; N−1 fresh nodes find it (and each other) by LAN discovery
// alone, then all GET it at once.

func (s *swarmBench) classroom() error {
	o, l, d, rep := s.o, s.l, s.d, s.rep
	a := s.holder
	single := rep.ClassroomSingleSecs
	if single == 0 {
		// No pair phase: time one puller alone first.
		b, err := s.startNode(nodeSpec{name: "single", ns: l.ns(1), ip: l.ip(1), discovery: true, fresh: true})
		if err != nil {
			return err
		}
		if _, err := b.waitHolder(a, 30*time.Second); err != nil {
			stopNodes([]*node{b})
			return err
		}
		r, err := s.getIn(l.ns(1), "single", blobURL(b, d.Big), d.Big, time.Time{})
		stopNodes([]*node{b})
		if err != nil {
			return err
		}
		single = r.Secs
		rep.ClassroomSingleSecs = single
		logf("classroom: one puller alone: %.2f s", single)
	}
	k := o.nodes - 1
	var slowest, medians, copies []float64
	var cdnBytes, upBytes int64
	upReqs := 0
	for round := 0; round < o.classroomReps; round++ {
		syscall.Sync()
		var run classroomRun
		mark := s.up.mark()
		t0 := time.Now()
		pullers, err := s.startFresh(fmt.Sprintf("class%d-p", round), seq(1, o.nodes))
		if err != nil {
			return err
		}
		// Every puller finds the holder by multicast discovery alone (no --peer) ...
		for _, p := range pullers {
			if _, err := p.waitHolder(a, meshTimeout); err != nil {
				stopNodes(pullers)
				return fmt.Errorf("classroom: %v", err)
			}
		}
		run.DiscoverySecs = time.Since(t0).Seconds()
		// ... and every node knows every other one.
		if _, err := waitMesh(append([]*node{a}, pullers...), meshTimeout); err != nil {
			stopNodes(pullers)
			return fmt.Errorf("classroom: %v", err)
		}
		run.MeshSecs = time.Since(t0).Seconds()
		reqs0, up0 := s.up.requests(), s.holderUploaded()
		am0, _ := a.stats()
		wire0 := tcSent(l.nodeDevs(0)[0])
		meter := newCPUMeter(nodePGIDs(append([]*node{a}, pullers...)))
		stopSampling := make(chan struct{})
		samplesC := make(chan []torrentSample, 1)
		go func() { samplesC <- sampleTorrents(append([]*node{a}, pullers...), time.Now(), stopSampling) }()
		results, errs := s.pullAll(pullers, d.Big)
		close(stopSampling)
		run.Samples = <-samplesC
		run.CPU, run.MachineBusy = meter.read()
		if err := firstErr(pullers, errs); err != nil {
			stopNodes(pullers)
			return fmt.Errorf("classroom: %v", err)
		}
		var first int64
		first, run.Wall, run.Slowest, run.Median = span(results)
		for _, p := range pullers {
			if _, err := p.waitIdle(1, commitTimeout); err != nil {
				stopNodes(pullers)
				return err
			}
		}
		time.Sleep(seededUpdate)
		run.UpstreamReqs = s.up.requests() - reqs0
		run.HolderUpload = s.holderUploaded() - up0
		if am1, err := a.stats(); err == nil && am0 != nil {
			run.HolderServed = statInt(am1, "served_bytes") - statInt(am0, "served_bytes")
		}
		run.HolderWire = tcSent(l.nodeDevs(0)[0]) - wire0
		for i, p := range pullers {
			m, err := p.stats()
			if err != nil {
				stopNodes(pullers)
				return err
			}
			pr := nodeResult(p, results[i], first, m)
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
		stopNodes(pullers)
		if run.CDN, err = s.up.cdnSince(mark); err != nil {
			return err
		}
		rep.Classroom = append(rep.Classroom, run)
		slowest, medians = append(slowest, run.Slowest/single), append(medians, run.Median/single)
		copies = append(copies, run.copies(d.Big.Size))
		cdnBytes += run.CDN.Bytes
		upReqs += run.UpstreamReqs
		var per []string
		for _, pr := range run.Pullers {
			upBytes += pr.UpstreamBytes
			per = append(per, fmt.Sprintf("%.1f s (up %d B, seeded %s, peers ≤%.0f)", pr.Secs, pr.UpstreamBytes, human(pr.SeededBytes), pr.MaxPeers))
		}
		logf("classroom %d: %d pullers: slowest %.2f s = %.2f×, median %.2f s = %.2f× one transfer; holder uploaded %s + served %s over HTTP (%.2f copies; its link sent %s); CDN %d B; pullers: %s; discovery %.1f s, all peers known %.1f s; CPU s %s; machine %.0f%% busy",
			round+1, k, run.Slowest, run.Slowest/single, run.Median, run.Median/single, human(run.HolderUpload), human(run.HolderServed),
			run.copies(d.Big.Size), human(run.HolderWire), run.CDN.Bytes, strings.Join(per, ", "), run.DiscoverySecs, run.MeshSecs,
			fmtCPU(run.CPU), 100*run.MachineBusy)
	}
	where := fmt.Sprintf("%d fresh nodes (discovery on, no --peer) pull the %s blob that A holds at once, every link capped at %d Mbit/s; %d rounds; one transfer alone (pair's BitTorrent median) %.2f s",
		k, sizeStr(d.Big.Size), o.mbit, o.classroomReps, single)
	var sl, md []float64
	for _, r := range rep.Classroom {
		sl, md = append(sl, r.Slowest), append(md, r.Median)
	}
	rep.Figures = append(rep.Figures,
		atMost(fmt.Sprintf("classroom (%d pullers): slowest ÷ one", k), median(slowest), "×", classSlowMust, classSlowGoal, 2,
			fmt.Sprintf("%s; median over rounds of the slowest puller's time ÷ one transfer: [%s] (slowest %s s); a central server on A's link would need %d copies through it, about %d×",
				where, fmtList(slowest, 2), fmtList(sl, 2), k, k)),
		atMost(fmt.Sprintf("classroom (%d pullers): median ÷ one", k), median(medians), "×", classMedianMust, classMedianMust, 2,
			fmt.Sprintf("%s; median over rounds of the median puller's time ÷ one transfer: [%s] (median %s s)", where, fmtList(medians, 2), fmtList(md, 2))),
		atMost("classroom: copies the holder uploaded", median(copies), "copies", classCopiesMust, classCopiesGoal, 2,
			fmt.Sprintf("A's BitTorrent upload (uploaded_bytes of its seed in /_shoal/v1/torrents) plus what it served over HTTP (served_bytes), ÷ the blob, per round [%s], median", fmtList(copies, 2))),
		zero("classroom: CDN bytes", float64(cdnBytes), "B",
			fmt.Sprintf("bytes the CDN sent (its access log) from the pullers' start to their stop, summed over the rounds; pullers' upstream_bytes summed: %d B; requests the fake upstream answered meanwhile: %d", upBytes, upReqs)),
	)
	return nil
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

// ---------------------------------------------------------------------------------------
// cold: nobody holds the blob; first one fresh node pulls it alone over the capped WAN (the
// baseline), then N fresh nodes pull it at once.

func (s *swarmBench) cold() error {
	o, l, d, rep := s.o, s.l, s.d, s.rep
	b := d.Cold
	if err := readFile(d.blobPath(b)); err != nil { // the CDN's copy in the page cache
		return err
	}
	var alone, slowest, ratios []float64
	for round := 0; round < o.coldReps; round++ {
		var run coldRun
		// One node alone.
		syscall.Sync()
		mark, wan0 := s.up.mark(), tcSent(l.wanDev())
		ns, err := s.startFresh(fmt.Sprintf("cold%d-alone", round), []int{0})
		if err != nil {
			return err
		}
		meter := newCPUMeter(nodePGIDs(ns))
		r, err := s.getIn(ns[0].ns, ns[0].name, blobURL(ns[0], b), b, time.Time{})
		_, run.AloneBusy = meter.read()
		if err != nil {
			stopNodes(ns)
			return fmt.Errorf("cold, one node alone: %v\nlog:\n%s", err, logTail(ns[0].p.log, 20))
		}
		if run.Alone, err = settled(ns[0], r, r.Start); err != nil {
			stopNodes(ns)
			return err
		}
		stopNodes(ns)
		if run.AloneCDN, err = s.up.cdnSince(mark); err != nil {
			return err
		}
		run.AloneWAN = tcSent(l.wanDev()) - wan0
		logf("cold %d: one node alone: %.2f s (%.1f MB/s, first byte %.3f s); CDN sent %s (%.4f × the blob); upstream_bytes %s; machine %.0f%% busy",
			round+1, r.Secs, float64(b.Size)/r.Secs/1e6, r.FirstByte, human(run.AloneCDN.Bytes), run.AloneCDN.per(b.Size),
			human(run.Alone.UpstreamBytes), 100*run.AloneBusy)

		// N nodes at once.
		syscall.Sync()
		mark, reqs0 := s.up.mark(), s.up.requests()
		t0 := time.Now()
		nodes, err := s.startFresh(fmt.Sprintf("cold%d-n", round), seq(0, o.nodes))
		if err != nil {
			return err
		}
		if _, err := waitMesh(nodes, meshTimeout); err != nil {
			stopNodes(nodes)
			return fmt.Errorf("cold: %v", err)
		}
		run.MeshSecs = time.Since(t0).Seconds()
		wan0 = tcSent(l.wanDev())
		meter = newCPUMeter(nodePGIDs(nodes))
		results, errs := s.pullAll(nodes, b)
		run.CPU, run.MachineBusy = meter.read()
		if err := firstErr(nodes, errs); err != nil {
			stopNodes(nodes)
			return fmt.Errorf("cold: %v", err)
		}
		var first int64
		first, run.Wall, run.Slowest, _ = span(results)
		for i, n := range nodes {
			pr, err := settled(n, results[i], first)
			if err != nil {
				stopNodes(nodes)
				return err
			}
			run.Nodes = append(run.Nodes, pr)
			if pr.UpstreamBytes > 0 {
				run.FetchingNodes = append(run.FetchingNodes, n.name)
			}
		}
		stopNodes(nodes)
		if run.CDN, err = s.up.cdnSince(mark); err != nil {
			return err
		}
		run.UpstreamReqs = s.up.requests() - reqs0
		run.WAN = tcSent(l.wanDev()) - wan0
		rep.Cold = append(rep.Cold, run)
		alone, slowest = append(alone, r.Secs), append(slowest, run.Slowest)
		ratios = append(ratios, run.CDN.per(b.Size))
		var per []string
		for _, pr := range run.Nodes {
			per = append(per, fmt.Sprintf("%s %.1f s (first byte %.2f s; upstream %s, peers %s, served %s)", pr.Node, pr.Secs, pr.FirstByte,
				human(pr.UpstreamBytes), human(pr.PeerBytes), human(pr.ServedBytes)))
		}
		logf("cold %d: %d nodes at once: slowest %.2f s = %.2f × alone; CDN sent %s in %d requests (%.4f × the blob; WAN link carried %s); fetching from upstream: %s; nodes: %s; all peers known after %.1f s; CPU s %s; machine %.0f%% busy",
			round+1, len(nodes), run.Slowest, run.Slowest/r.Secs, human(run.CDN.Bytes), run.CDN.Requests, run.CDN.per(b.Size), human(run.WAN),
			strings.Join(run.FetchingNodes, " "), strings.Join(per, "; "), run.MeshSecs, fmtCPU(run.CPU), 100*run.MachineBusy)
	}
	var fetching []string
	for _, r := range rep.Cold {
		fetching = append(fetching, fmt.Sprint(len(r.FetchingNodes)))
	}
	cdnFig := atMost(fmt.Sprintf("cold (%d nodes): CDN bytes ÷ blob", o.nodes), maxOf(ratios), "× blob", coldCDNMust, coldCDNGoal, 2,
		fmt.Sprintf("%d fresh nodes (discovery on, no --peer) GET an uncached %s blob at once, the WAN capped at %d Mbit/s, node links at %d Mbit/s; the CDN's $bytes_sent (headers included) ÷ the blob, worst of %d rounds [%s]; nodes that fetched from upstream per round [%s]",
			o.nodes, sizeStr(b.Size), o.wanMbit, o.mbit, o.coldReps, fmtList(ratios, 4), strings.Join(fetching, " ")))
	cdnFig.Goal = "1.00" // to two places: at most 1.005
	rep.Figures = append(rep.Figures, cdnFig,
		atMost(fmt.Sprintf("cold (%d nodes): slowest ÷ one alone", o.nodes), median(slowest)/median(alone), "×", coldSlowMust, coldSlowGoal, 2,
			fmt.Sprintf("median slowest node %.2f s [%s] ÷ median of one fresh node pulling the same blob alone over the same WAN %.2f s [%s] (%.1f MB/s)",
				median(slowest), fmtList(slowest, 2), median(alone), fmtList(alone, 2), float64(b.Size)/median(alone)/1e6)),
	)
	return nil
}

// ---------------------------------------------------------------------------------------
// after5s: two fresh nodes; A pulls the blob (from upstream: both are restarted with new node
// ids until shoal's rendezvous makes A the owner), and 5 s after A committed it, B pulls it.

func (s *swarmBench) after5s() error {
	o, d, rep := s.o, s.d, s.rep
	b := d.Cold
	if err := readFile(d.blobPath(b)); err != nil {
		return err
	}
	var total int64
	var per []string
	for round := 0; round < o.after5sReps; round++ {
		var run after5sRun
		syscall.Sync()
		// Fresh A and B (new node ids) until shoal's rendezvous makes A the blob's owner, so
		// that A fetches it from upstream itself (else B would, for A, and hold it before
		// its own pull). Checked after the pull: A's upstream_bytes, B's blobs.
		var ns []*node
		for try := 0; ; try++ {
			var err error
			if ns, err = s.startFresh(fmt.Sprintf("after5s%d-", round), []int{0, 1}); err != nil {
				return err
			}
			run.AOwner = lanOwner(b.digest(), []string{ns[0].id, ns[1].id}) == 0
			if run.AOwner || try+1 >= lanOwnerTries {
				break
			}
			run.Steered++
			stopNodes(ns)
		}
		na, nb := ns[0], ns[1]
		t0 := time.Now()
		if _, err := waitMesh(ns, meshTimeout); err != nil {
			stopNodes(ns)
			return fmt.Errorf("after5s: %v", err)
		}
		run.MeshSecs = time.Since(t0).Seconds()
		// B polls its peers' catalogs every 30 s from its start (shoal's default
		// p2p.catalog_interval). A's pull starts when it should commit about 10 s after one
		// of those polls, so that B's request (5 s after the commit) comes before the next:
		// only news or B's question to the LAN can tell B that A holds the blob.
		est := time.Duration(float64(b.Size) * 8 / float64(o.wanMbit) / 1e6 * 1.05 * float64(time.Second))
		if len(rep.Cold) > 0 {
			var al []float64
			for _, r := range rep.Cold {
				al = append(al, r.Alone.Secs)
			}
			est = time.Duration(median(al) * float64(time.Second))
		}
		if !catalogIntervalSet() {
			startAt := nb.started.Add(after5sCommitAfterPoll - est)
			for startAt.Before(time.Now()) {
				startAt = startAt.Add(defaultCatalogInterval)
			}
			run.AlignSecs = time.Until(startAt).Seconds()
			time.Sleep(time.Until(startAt))
		}
		mark0 := s.up.mark()
		ra, err := s.getIn(na.ns, na.name, blobURL(na, b), b, time.Time{})
		if err != nil {
			stopNodes(ns)
			return fmt.Errorf("after5s, A: %v\nlog:\n%s", err, logTail(na.p.log, 20))
		}
		ma, err := na.waitIdle(1, commitTimeout)
		if err != nil {
			stopNodes(ns)
			return err
		}
		committed := time.Now() // A's commit, as the harness saw it
		run.A = nodeResult(na, ra, ra.Start, ma)
		// The scenario's own delay (not synchronisation): B's client starts exactly 5 s later.
		at := committed.Add(after5sDelay)
		if mb, err := nb.stats(); err == nil {
			run.BHeldBefore = statInt(mb, "blobs") > 0
		}
		mark1, reqs0 := s.up.mark(), s.up.requests()
		meter := newCPUMeter(nodePGIDs(ns))
		rb, err := s.getIn(nb.ns, nb.name, blobURL(nb, b), b, at)
		_, run.BBusy = meter.read()
		if err != nil {
			stopNodes(ns)
			return fmt.Errorf("after5s, B: %v\nlog:\n%s", err, logTail(nb.p.log, 20))
		}
		run.GapSecs = float64(rb.Start-committed.UnixNano()) / 1e9
		// Where A's commit and B's request fell in B's catalog-poll period (from B's start).
		phase := func(t time.Time) float64 {
			return math.Mod(t.Sub(nb.started).Seconds(), defaultCatalogInterval.Seconds())
		}
		run.CommitPhase, run.RequestPhase = phase(committed), phase(time.Unix(0, rb.Start))
		run.PollInGap = catalogIntervalSet() || run.RequestPhase < run.CommitPhase
		if run.B, err = settled(nb, rb, rb.Start); err != nil {
			stopNodes(ns)
			return err
		}
		stopNodes(ns)
		if run.BCDN, err = s.up.cdnSince(mark1); err != nil {
			return err
		}
		run.BUpReqs = s.up.requests() - reqs0
		if run.ACDN, err = s.up.cdnBetween(mark0, mark1); err != nil {
			return err
		}
		rep.After5s = append(rep.After5s, run)
		total += run.BCDN.Bytes
		note := ""
		if run.A.UpstreamBytes == 0 || run.BHeldBefore {
			note = " (NOT the scenario: A did not fetch it from upstream itself, or B held it before its pull)"
		} else if run.PollInGap {
			note = " (B may have polled A's catalog between A's commit and its request)"
		}
		logf("after5s %d: A (the owner: %v, after %d restarts; started %.1f s after the mesh, B's catalog polls at %.1f s and %.1f s into their period at A's commit and B's request) pulled it in %.2f s (upstream %s; CDN %s); B %.2fs after A's commit pulled it in %.2f s (first byte %.3f s): CDN sent %d B in %d requests; B upstream %d B, from peers %s%s",
			round+1, run.AOwner, run.Steered, run.AlignSecs, run.CommitPhase, run.RequestPhase, ra.Secs, human(run.A.UpstreamBytes), human(run.ACDN.Bytes), run.GapSecs, rb.Secs, rb.FirstByte,
			run.BCDN.Bytes, run.BCDN.Requests, run.B.UpstreamBytes, human(run.B.PeerBytes), note)
		per = append(per, fmt.Sprintf("round %d: CDN %d B, B's upstream_bytes %d, peer_bytes %s, B %.2f s (A alone from upstream %.2f s), B started %.2f s after A's commit%s",
			round+1, run.BCDN.Bytes, run.B.UpstreamBytes, human(run.B.PeerBytes), rb.Secs, ra.Secs, run.GapSecs, note))
	}
	rep.Figures = append(rep.Figures, zero("after5s: CDN bytes for the second pull", float64(total), "B",
		fmt.Sprintf("two fresh nodes (discovery on, no --peer); A pulls an uncached %s blob from upstream (WAN %d Mbit/s), and %s after A committed it B pulls it; bytes the CDN sent during B's pull, summed over %d rounds: %s",
			sizeStr(b.Size), o.wanMbit, after5sDelay, o.after5sReps, strings.Join(per, "; "))))
	return nil
}
