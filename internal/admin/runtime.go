package admin

import (
	"bytes"
	"math"
	"os"
	"runtime/metrics"
	"strconv"

	"github.com/bendstream/bend/internal/metricnames"
	gometrics "github.com/rcrowley/go-metrics"
)

// runtimeGauges name the Go runtime figures RegisterRuntime exposes, each
// with its runtime/metrics source.
var runtimeGauges = map[string]string{
	metricnames.GoHeapObjectsBytes: "/memory/classes/heap/objects:bytes", // live and not yet swept heap objects
	metricnames.GoTotalBytes:       "/memory/classes/total:bytes",        // all memory the Go runtime mapped
	metricnames.GoMemoryLimitBytes: "/gc/gomemlimit:bytes",               // memory_limit / GOMEMLIMIT
	metricnames.GoGoroutines:       "/sched/goroutines:goroutines",
}

// RegisterRuntime adds gauges of the process's resident memory
// (process.resident_memory_bytes, Linux only: 0 elsewhere) and of the Go
// runtime (go.heap_objects_bytes, go.total_bytes, go.memory_limit_bytes,
// go.goroutines) to reg. They are read when the registry is (a scrape), so
// they cost nothing in between.
func RegisterRuntime(reg gometrics.Registry) {
	_ = reg.Register(metricnames.ProcessResidentBytes, gometrics.NewFunctionalGauge(residentBytes))
	for name, src := range runtimeGauges {
		_ = reg.Register(name, gometrics.NewFunctionalGauge(func() int64 {
			s := []metrics.Sample{{Name: src}}
			metrics.Read(s)
			if s[0].Value.Kind() != metrics.KindUint64 {
				return 0
			}
			return int64(min(s[0].Value.Uint64(), math.MaxInt64)) // no limit reads as MaxInt64
		}))
	}
}

// residentBytes is the process's resident set from /proc/self/statm
// (its second field, in pages), or 0 where that file does not exist.
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}
