package main

// Child processes: every one runs in its own process group, is listed in
// <work>/pgids while it lives (bench/run's trap kills those groups if this program
// dies), and is stopped by stopAll on any exit path.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

var (
	procsMu  sync.Mutex
	procs    = map[int]*proc{}
	pgidFile string
)

func writePgids() {
	if pgidFile == "" {
		return
	}
	var ids []int
	for pid := range procs {
		ids = append(ids, pid)
	}
	sort.Ints(ids)
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(strconv.Itoa(id))
		b.WriteByte('\n')
	}
	tmp := pgidFile + ".tmp"
	if os.WriteFile(tmp, []byte(b.String()), 0o644) == nil {
		os.Rename(tmp, pgidFile)
	}
}

// start runs a long-lived child with stdout and stderr appended to logPath.
func start(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	procsMu.Lock()
	procs[cmd.Process.Pid] = p
	writePgids()
	procsMu.Unlock()
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the child's group, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	pid := p.pid()
	if !p.exited() {
		syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			syscall.Kill(-pid, syscall.SIGKILL)
			<-p.done
		}
	}
	// Anything left in the group (nginx workers after a killed master).
	syscall.Kill(-pid, syscall.SIGKILL)
	procsMu.Lock()
	delete(procs, pid)
	writePgids()
	procsMu.Unlock()
}

func stopAll() {
	procsMu.Lock()
	var ps []*proc
	for _, p := range procs {
		ps = append(ps, p)
	}
	procsMu.Unlock()
	for _, p := range ps {
		p.stop(5 * time.Second)
	}
}

func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// vmHWM reads the peak resident set size (bytes) of a live process.
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, err := strconv.ParseInt(f[1], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// cpuSecs is the user+system CPU time of a live process (its threads included).
func cpuSecs(pid int) float64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// after the command: state(0) ppid pgrp session tty tpgid flags minflt cminflt majflt
	// cmajflt utime(11) stime(12)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100 // USER_HZ is 100 on Linux
}

// groupCPUSecs sums cpuSecs over the live members of process group pgid.
func groupCPUSecs(pgid int) float64 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	total := 0.0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) {
			total += cpuSecs(pid)
		}
	}
	return total
}

// machineCPU returns busy and total CPU seconds of the whole machine since boot.
func machineCPU() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line := strings.SplitN(string(b), "\n", 2)[0]
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		x, _ := strconv.ParseFloat(v, 64)
		total += x
		if i != 3 && i != 4 { // idle, iowait
			busy += x
		}
	}
	return busy / 100, total / 100
}

// cpuMeter measures CPU use over an interval: the machine's, and a process group's.
type cpuMeter struct {
	busy0, total0 float64
	groups        map[string]int
	g0            map[string]float64
}

func newCPUMeter(groups map[string]int) *cpuMeter {
	m := &cpuMeter{groups: groups, g0: map[string]float64{}}
	m.busy0, m.total0 = machineCPU()
	for k, pg := range groups {
		m.g0[k] = groupCPUSecs(pg)
	}
	return m
}

// read returns the CPU seconds each group used so far, and the machine's busy share
// of all its cores (0..1).
func (m *cpuMeter) read() (map[string]float64, float64) {
	out := map[string]float64{}
	for k, pg := range m.groups {
		out[k] = groupCPUSecs(pg) - m.g0[k]
	}
	b, t := machineCPU()
	share := 0.0
	if t > m.total0 {
		share = (b - m.busy0) / (t - m.total0)
	}
	return out, share
}
