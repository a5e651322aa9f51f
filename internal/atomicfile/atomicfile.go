// Package atomicfile writes output files atomically and never leaves a temp
// file behind: not on an error, not on a panic, not when the process is
// interrupted, and not after a crash that skipped all of those.
//
//   - A file is written to a temp file beside it, then renamed over it, so a
//     reader sees the old file or the new one, never half of one.
//   - Every temp file is registered while it exists; RemoveAll deletes them all
//     and refuses new ones. With OnSignal, a SIGINT or SIGTERM that arrives
//     while any temp file exists calls RemoveAll and then the program's exit
//     function; the handler is installed only while a temp file exists, so
//     commands that handle those signals themselves (serve, chat, a run
//     that reports on Ctrl-C) are left alone the rest of the time.
//   - Temp names carry the writer's pid (".NAME.offload-tmp-PID-RANDOM"), so a
//     later write into the same directory removes the ones whose writer is
//     gone (killed with SIGKILL, or the machine lost power).
//   - An output that is a directory, or the same file (inode) as one of the
//     command's inputs, is refused before anything is written.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// tmpMarker is in every temp file name this package makes.
const tmpMarker = ".offload-tmp-"

// ErrInterrupted is returned by Create after RemoveAll (the process is
// shutting down on a signal).
var ErrInterrupted = errors.New("interrupted: not starting a new output file")

var (
	mu       sync.Mutex
	live     = map[string]bool{}
	creating int // temp files being created (counted by watch)
	stopped  bool
	// onSignal, when set, is called after RemoveAll for a signal that
	// arrives while temp files exist; sigs is then subscribed.
	onSignal func(sig os.Signal, removed []string)
	sigs     chan os.Signal
)

// OnSignal makes a SIGINT or SIGTERM that arrives while a temp file exists
// remove every temp file and then call exit (which should end the process,
// e.g. with status 128+signal). Call it once, early in main.
func OnSignal(exit func(sig os.Signal, removed []string)) {
	mu.Lock()
	defer mu.Unlock()
	onSignal = exit
	if sigs == nil {
		sigs = make(chan os.Signal, 1)
		go func() {
			for sig := range sigs {
				removed := RemoveAll()
				mu.Lock()
				f := onSignal
				mu.Unlock()
				f(sig, removed)
			}
		}()
	}
	watch()
}

// watch subscribes to the signals while temp files exist (mu held).
func watch() {
	if sigs == nil {
		return
	}
	if len(live)+creating > 0 {
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	} else {
		signal.Stop(sigs)
	}
}

// File is a temp file that becomes path on Commit.
type File struct {
	*os.File
	path string
	tmp  string
	done bool
}

// Create starts writing path: it checks path is not a directory, removes
// stale temp files of dead writers from its directory, and creates and
// registers a temp file beside it (mode 0644 on Commit).
func Create(path string) (*File, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return nil, fmt.Errorf("write %s: is a directory", path)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	CleanStale(dir)
	mu.Lock()
	defer mu.Unlock()
	if stopped {
		return nil, fmt.Errorf("write %s: %w", path, ErrInterrupted)
	}
	// Subscribe before the file exists: a signal between the two would
	// otherwise kill the process with the file in place.
	creating++
	watch()
	f, err := os.CreateTemp(dir, "."+base+tmpMarker+strconv.Itoa(os.Getpid())+"-*")
	creating--
	if err != nil {
		watch()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	live[f.Name()] = true
	return &File{File: f, path: path, tmp: f.Name()}, nil
}

// Commit flushes the file to disk when sync is set, closes it and renames it
// over the final path (then syncs the directory, best effort). On any error
// the temp file is removed.
func (f *File) Commit(sync bool) (err error) {
	if f.done {
		return fmt.Errorf("write %s: already committed or aborted", f.path)
	}
	defer func() {
		if err != nil {
			f.Abort()
		}
	}()
	if sync {
		if err = f.File.Sync(); err != nil {
			return fmt.Errorf("write %s: fsync: %w", f.path, err)
		}
	}
	if err = f.File.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err = f.File.Close(); err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err = os.Rename(f.tmp, f.path); err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	f.done = true
	unregister(f.tmp)
	if sync {
		if d, derr := os.Open(filepath.Dir(f.path)); derr == nil { // make the rename durable
			_ = d.Sync()
			_ = d.Close()
		}
	}
	return nil
}

// Abort closes and removes the temp file. It is safe to call after Commit
// (it then does nothing), so `defer f.Abort()` covers every early return and
// panic.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	_ = f.File.Close()
	_ = os.Remove(f.tmp)
	unregister(f.tmp)
}

func unregister(name string) {
	mu.Lock()
	delete(live, name)
	watch()
	mu.Unlock()
}

// Write writes path atomically with the bytes body writes to the temp file.
func Write(path string, body func(f *os.File) error) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if err := body(f.File); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit(false)
}

// RemoveAll deletes every registered temp file and makes later Creates fail
// with ErrInterrupted. It returns the names removed. A signal handler calls
// it; it is safe from any goroutine.
func RemoveAll() []string {
	mu.Lock()
	defer mu.Unlock()
	stopped = true
	var names []string
	for name := range live {
		if os.Remove(name) == nil {
			names = append(names, name)
		}
		delete(live, name)
	}
	return names
}

// Live is the number of registered temp files.
func Live() int {
	mu.Lock()
	defer mu.Unlock()
	return len(live)
}

// CleanStale removes this package's temp files in dir whose writing process
// no longer exists, and returns their names. Files of live processes (this
// one included) are left alone.
func CleanStale(dir string) []string {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range es {
		pid, ok := tmpPID(e.Name())
		if !ok || !e.Type().IsRegular() || alive(pid) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if os.Remove(p) == nil {
			removed = append(removed, p)
		}
	}
	return removed
}

// tmpPID parses the writer's pid out of a temp file name.
func tmpPID(name string) (int, bool) {
	i := strings.LastIndex(name, tmpMarker)
	if i < 0 || !strings.HasPrefix(name, ".") {
		return 0, false
	}
	rest := name[i+len(tmpMarker):]
	num, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(num)
	return pid, err == nil && pid > 0
}

// alive says whether a process with this pid exists (EPERM: it does, as
// another user's).
func alive(pid int) bool {
	if pid == os.Getpid() {
		return true
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// SameFile returns an error when out names the same file as one of inputs
// (same device and inode: through hard links, symlinks or another path).
// Writing out would then replace an input the command is still reading.
func SameFile(out string, inputs ...string) error {
	ost, err := os.Stat(out)
	if err != nil {
		return nil // out does not exist yet (or cannot be read): no clash
	}
	for _, in := range inputs {
		ist, err := os.Stat(in)
		if err == nil && os.SameFile(ost, ist) {
			if filepath.Clean(in) == filepath.Clean(out) {
				return fmt.Errorf("output %s is the input file: choose another output path", out)
			}
			return fmt.Errorf("output %s is the same file as the input %s (a link to it): choose another output path", out, in)
		}
	}
	return nil
}
