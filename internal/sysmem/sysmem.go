// Package sysmem reads what the operating system says about memory: the
// machine's physical RAM (to derive default budgets from the machine rather
// than assume one) and this process's peak resident set (for run reports).
// Both read /proc on Linux and fall back to conservative values elsewhere.
package sysmem

import (
	"os"
	"strconv"
	"strings"
)

// fallbackPhysical is assumed when /proc/meminfo cannot be read.
const fallbackPhysical = 8 << 30

// Physical is the machine's RAM in bytes (MemTotal), or 8 GiB when unknown.
func Physical() int64 {
	if n := procField("/proc/meminfo", "MemTotal:"); n > 0 {
		return n
	}
	return fallbackPhysical
}

// PeakRSS is this process's peak resident set size in bytes (VmHWM), or 0.
func PeakRSS() int64 { return procField("/proc/self/status", "VmHWM:") }

// procField reads a "Name:  1234 kB" line of a /proc file, in bytes.
func procField(path, name string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				if n, err := strconv.ParseInt(f[0], 10, 64); err == nil && n > 0 {
					return n << 10
				}
			}
		}
	}
	return 0
}
