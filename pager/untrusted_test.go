package pager

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"offload/internal/fault"
)

// sparseGGUF writes a GGUF header of one metadata key whose value is an
// array of n elements of GGUF type et, in a sparse file just big enough for
// the count to pass the file-size check (costing no disk).
func sparseGGUF(t *testing.T, et uint32, n uint64, elemSize int64) string {
	t.Helper()
	var e ggufEnc
	e.raw([]byte("GGUF"))
	e.u32(3)
	e.u64(0) // tensors
	e.u64(1) // kv
	e.str("tokenizer.ggml.tokens")
	e.u32(ggufArray)
	e.u32(et)
	e.u64(n)
	path := filepath.Join(t.TempDir(), "sparse.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(e.b); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(len(e.b)) + int64(n)*elemSize + 64); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestMetadataBudget: counts the file can "hold" (a sparse file) are still
// refused before anything is allocated once the decoded metadata would
// pass ggufMaxMeta.
func TestMetadataBudget(t *testing.T) {
	for _, c := range []struct {
		name string
		et   uint32
		n    uint64
		es   int64
	}{
		{"2^31-1 empty strings", ggufString, 1<<31 - 1, 8},
		{"1 GiB of bytes", ggufUint8, 1 << 30, 1},
		{"2^27 int64", ggufInt64, 1 << 27, 8},
		{"3M empty strings", ggufString, 3 << 20, 8},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := sparseGGUF(t, c.et, c.n, c.es)
			var before, after syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			_, err := Open(path)
			syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			wantErr(t, err, path, "limit")
			if grew := (after.Maxrss - before.Maxrss) << 10; grew > 2*ggufMaxMeta {
				t.Errorf("peak RSS grew by %d MiB", grew>>20)
			}
		})
	}
}

// TestTensorNameBound: a tensor name longer than ggufMaxTensorName is refused.
func TestTensorNameBound(t *testing.T) {
	long := make([]byte, ggufMaxTensorName+1)
	for i := range long {
		long[i] = 'a'
	}
	b := buildGGUF(3, 1, 0, nil, []rawTensor{{string(long), []uint64{4}, uint32(F32), 0}}, 16)
	path := filepath.Join(t.TempDir(), "m.gguf")
	writeFile(t, path, b)
	_, err := Open(path)
	wantErr(t, err, path, "limit")
}

// TestFIFORefused: a named pipe as a model (or config.json) fails at once
// instead of blocking in open.
func TestFIFORefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "model.gguf")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	hf := filepath.Join(dir, "hf")
	os.Mkdir(hf, 0o755)
	if err := syscall.Mkfifo(filepath.Join(hf, "config.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, hf} {
		done := make(chan error, 1)
		go func() { _, err := Open(p); done <- err }()
		select {
		case err := <-done:
			wantErr(t, err, "named pipe")
		case <-time.After(10 * time.Second):
			t.Fatalf("Open(%s) blocked", p)
		}
	}
}

// TestTruncatedWhileMapped: reading a tensor of a file truncated after it
// was opened is a fault.Error naming the file, not a crash.
func TestTruncatedWhileMapped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	writeFile(t, path, readFile(t, storiesPath(t, "stories260K.gguf")))
	m := openT(t, path)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	tn := m.Tensors[len(m.Tensors)-1]
	var sum uint32
	err := fault.Guard(func() {
		for i := 0; i+4 <= len(tn.Data); i += 4 {
			sum += binary.LittleEndian.Uint32(tn.Data[i:])
		}
	})
	if !errors.Is(err, fault.ErrFileChanged) {
		t.Fatalf("got %v (sum %d), want ErrFileChanged", err, sum)
	}
	wantErr(t, err, path)
}

func TestJSONValueLen(t *testing.T) {
	for in, want := range map[string]int{
		`: {"a":"b"}, "x"`:     9,
		` : "x\"}y" ,`:         7,
		`:[1,[2,{"]":3}]]}`:    15,
		`: 12.5e3}`:            6,
		`:true`:                4,
		`: "unterminated`:      13,
		`: {"a": {"b": "}"}}}`: 17,
	} {
		if got := jsonValueLen([]byte(in)); got != want {
			t.Errorf("%q: %d, want %d", in, got, want)
		}
	}
}

// TestSafetensorsMetadataBound: a huge __metadata__ is refused before it is
// decoded.
func TestSafetensorsMetadataBound(t *testing.T) {
	h := `{"__metadata__":{"x":"` + strings.Repeat("a", stMaxMetadata) + `"}}`
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	_, _, err := parseSafetensors(append(b, h...))
	wantErr(t, err, "__metadata__", "limit")
}
