package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// childPIDs finds this process's children with the given command names.
func childPIDs(names ...string) map[string]int {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	self := os.Getpid()
	out := map[string]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		comm, ppid, ok := statOf(pid)
		if ok && ppid == self && want[comm] {
			out[comm] = pid
		}
	}
	return out
}

// statFields returns the fields of /proc/<pid>/stat after the command name (field 3 on).
func statFields(pid int) (comm string, rest []string, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", nil, false
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return "", nil, false
	}
	return s[open+1 : closing], strings.Fields(s[closing+1:]), true
}

func statOf(pid int) (comm string, ppid int, ok bool) {
	comm, f, ok := statFields(pid)
	if !ok || len(f) < 2 {
		return "", 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return comm, ppid, err == nil
}

// cpuSeconds is a process's user + system CPU time (fields 14 and 15 of stat).
func cpuSeconds(pid int) float64 {
	_, f, ok := statFields(pid)
	if !ok || len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / clockTicks
}

// memory reads VmHWM (peak RSS) and VmRSS of a process, in bytes.
func memory(pid int) (hwm, rss int64) {
	m := procStatus(pid)
	return m["VmHWM"], m["VmRSS"]
}

// procStatus reads the sizes (kB) of /proc/<pid>/status, in bytes.
func procStatus(pid int) map[string]int64 {
	out := map[string]int64{}
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return out
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		if len(fields) == 2 && fields[1] == "kB" {
			n, _ := strconv.ParseInt(fields[0], 10, 64)
			out[k] = n * 1024
		}
	}
	return out
}

type loadAvg struct {
	when            string
	at              time.Time
	one, five, fift string
}

func loadSample(when string) loadAvg {
	l := loadAvg{when: when, at: time.Now()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			l.one, l.five, l.fift = f[0], f[1], f[2]
		}
	}
	return l
}
