package sysmem

import (
	"os"
	"path/filepath"
	"testing"
)

func TestProcField(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meminfo")
	os.WriteFile(p, []byte("MemTotal:       24634588 kB\nMemFree:  100 kB\nVmHWM:\t  2048 kB\nBad: x kB\n"), 0o644)
	for name, want := range map[string]int64{"MemTotal:": 24634588 << 10, "MemFree:": 100 << 10, "VmHWM:": 2 << 20, "Bad:": 0, "Missing:": 0} {
		if got := procField(p, name); got != want {
			t.Errorf("procField(%s) = %d, want %d", name, got, want)
		}
	}
	if procField(filepath.Join(t.TempDir(), "absent"), "MemTotal:") != 0 {
		t.Error("absent file gave a value")
	}
}

func TestMachine(t *testing.T) {
	if Physical() <= 0 {
		t.Fatalf("Physical %d", Physical())
	}
	if _, err := os.Stat("/proc/self/status"); err == nil && PeakRSS() <= 0 {
		t.Fatal("PeakRSS is 0 on a machine with /proc")
	}
}
