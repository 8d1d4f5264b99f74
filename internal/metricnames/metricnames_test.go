package metricnames

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range append(Table(), Sarama()...) {
		if seen[e.Pattern] {
			t.Errorf("%s listed twice", e.Pattern)
		}
		seen[e.Pattern] = true
		if len(e.Help) < 10 || strings.Contains(e.Help, e.Pattern) || !strings.HasSuffix(e.Help, ".") {
			t.Errorf("%s: help %q: want a sentence that says more than the name", e.Pattern, e.Help)
		}
	}
}

func TestBuilders(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Enricher("lang", EnricherLatency), "enrich.lang.latency"},
		{Source("http", SourceEvents), "ingest.http.events"},
		{Partition("bend.activities", 3) + PartitionLag, "distributor.partition.bend.activities.3.lag"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	// Every per-enricher, per-source and per-partition suffix has a row.
	for _, p := range []string{"enrich." + EnricherLatency, "enrich." + EnricherCacheMisses, "ingest.source." + SourceBytes,
		PartitionPrefix + PartitionBuffered, DistributorLag, GoMemoryLimitBytes} {
		if _, ok := Lookup(p); !ok {
			t.Errorf("Lookup(%q): no row", p)
		}
	}
	if _, ok := Lookup("no.such.metric"); ok {
		t.Error("Lookup of an unknown name succeeded")
	}
}

// TestEveryConstantHasARow: each full name declared in this package (a
// constant with a dot) has a row in Table, so its family gets a help text.
func TestEveryConstantHasARow(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "metricnames.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, e := range Table() {
		rows[e.Pattern] = true
	}
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		vs, ok := node.(*ast.ValueSpec)
		if !ok || len(vs.Values) != 1 {
			return true
		}
		lit, ok := vs.Values[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		v, _ := strconv.Unquote(lit.Value)
		if !strings.Contains(v, ".") || strings.HasSuffix(v, ".") {
			return true
		}
		n++
		if !rows[v] {
			t.Errorf("%s = %q has no row in Table", vs.Names[0].Name, v)
		}
		return true
	})
	if n < 50 {
		t.Errorf("found %d name constants; the parser missed some", n)
	}
}
