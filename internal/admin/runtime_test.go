package admin

import (
	"runtime"
	"runtime/debug"
	"testing"

	gometrics "github.com/rcrowley/go-metrics"
)

func TestRegisterRuntime(t *testing.T) {
	reg := gometrics.NewRegistry()
	RegisterRuntime(reg)
	value := func(name string) int64 {
		g, ok := reg.Get(name).(gometrics.Gauge)
		if !ok {
			t.Fatalf("%s: not registered as a gauge", name)
		}
		return g.Value()
	}
	if runtime.GOOS == "linux" {
		if rss := value("process.resident_memory_bytes"); rss < 1<<20 {
			t.Errorf("process.resident_memory_bytes = %d, want at least 1 MiB", rss)
		}
	}
	if n := value("go.goroutines"); n < 1 {
		t.Errorf("go.goroutines = %d", n)
	}
	heap, total := value("go.heap_objects_bytes"), value("go.total_bytes")
	if heap <= 0 || total < heap {
		t.Errorf("go.heap_objects_bytes = %d, go.total_bytes = %d; want 0 < heap <= total", heap, total)
	}
	old := debug.SetMemoryLimit(256 << 20)
	defer debug.SetMemoryLimit(old)
	if got := value("go.memory_limit_bytes"); got != 256<<20 {
		t.Errorf("go.memory_limit_bytes = %d after SetMemoryLimit(256 MiB)", got)
	}
}
