package enrich

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/activity"
	metrics "github.com/rcrowley/go-metrics"
)

// writeAtomically replaces path by renaming a complete file into place.
func writeAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestTable(t *testing.T) {
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "authors.csv")
	writeAtomically(t, csvPath, "\ufeffauthor,score,note\nu1,3,\"gold, \"\"top\"\"\"\nu2,5,\nu1,4,later wins\n")
	jsonPath := filepath.Join(dir, "acts.json")
	writeAtomically(t, jsonPath, "{\n  \"act-1\": {\n    \"topic\": \"sports\"\n  },\n  \"act-2\": [1, 2],\n  \"act-3\": null\n}\n")
	keyed := filepath.Join(dir, "keyed.data")
	writeAtomically(t, keyed, "score,author\n3,u1\n")

	for _, tc := range []struct {
		name string
		opts TableOptions
		a    *activity.Fields
		want string
	}{
		{"csv row", TableOptions{Path: csvPath}, byAuthor("u2"), `{"author":"u2","score":"5","note":""}`},
		{"csv later row wins, quoting", TableOptions{Path: csvPath}, byAuthor("u1"), `{"author":"u1","score":"4","note":"later wins"}`},
		{"csv missing key", TableOptions{Path: csvPath}, byAuthor("u9"), `null`},
		{"csv empty key", TableOptions{Path: csvPath}, byAuthor(""), `null`},
		{"csv key_column, format", TableOptions{Path: keyed, Format: "csv", KeyColumn: "author"}, byAuthor("u1"), `{"score":"3","author":"u1"}`},
		{"json by id", TableOptions{Path: jsonPath, KeyField: "id"}, &activity.Fields{ID: "act-1"}, `{"topic":"sports"}`},
		{"json array value", TableOptions{Path: jsonPath, KeyField: "id"}, &activity.Fields{ID: "act-2"}, `[1,2]`},
		{"json null value", TableOptions{Path: jsonPath, KeyField: "id"}, &activity.Fields{ID: "act-3"}, `null`},
		{"json missing", TableOptions{Path: jsonPath, KeyField: "id"}, &activity.Fields{ID: "act-4"}, `null`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := build(t, Spec{Name: "t", Type: "table", Table: tc.opts}, nil)
			got, err := enrichWithin(e, time.Second, tc.a)
			if err != nil || string(got) != tc.want {
				t.Errorf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestTableBadFiles(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, file, content, keyColumn, wantErr string
	}{
		{"missing file", "none.csv", "", "", "no such file"},
		{"empty csv", "empty.csv", "", "", "header row"},
		{"ragged csv", "ragged.csv", "a,b\n1,2\n3\n", "", "wrong number of fields"},
		{"unknown key_column", "k.csv", "a,b\n1,2\n", "c", `no key_column "c"`},
		{"json array", "arr.json", "[1,2]", "", "want one JSON object"},
		{"json null", "null.json", "null", "", "got null"},
		{"bad json", "bad.json", "{", "", "want one JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.file)
			if tc.content != "" || tc.name != "missing file" {
				writeAtomically(t, path, tc.content)
			}
			_, err := newTable("t", TableOptions{Path: path, KeyColumn: tc.keyColumn}.withDefaults(), nil, metrics.NewRegistry())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestTableReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiers.json")
	writeAtomically(t, path, `{"u1":"bronze"}`)
	reg := metrics.NewRegistry()
	e := build(t, Spec{Name: "tiers", Type: "table", Table: TableOptions{Path: path, ReloadInterval: 10 * time.Millisecond}}, reg)
	get := func() string {
		res, err := enrichWithin(e, time.Second, byAuthor("u1"))
		if err != nil {
			t.Fatal(err)
		}
		return string(res)
	}
	if got := get(); got != `"bronze"` {
		t.Fatalf("got %s, want \"bronze\"", got)
	}

	// Readers keep going while the file changes under them.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					_ = get()
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()

	writeAtomically(t, path, `{"u1":"silver"}`)
	eventually(t, 2*time.Second, "the new version", func() bool { return get() == `"silver"` })
	if got := count(reg, "enrich.tiers.reloads"); got != 1 {
		t.Errorf("reloads: got %d, want 1", got)
	}

	writeAtomically(t, path, `{"u1":`) // broken: the previous version stays
	eventually(t, 2*time.Second, "the failed reload", func() bool { return count(reg, "enrich.tiers.reload_errors") == 1 })
	time.Sleep(50 * time.Millisecond) // several more checks
	if got := get(); got != `"silver"` {
		t.Errorf("after a broken file: got %s, want the previous \"silver\"", got)
	}
	if got := count(reg, "enrich.tiers.reload_errors"); got != 1 {
		t.Errorf("reload_errors: got %d, want 1 (each failure counted once)", got)
	}

	// Rewritten in place, then again with the same size: the modification
	// time tells.
	if err := os.WriteFile(path, []byte(`{"u1":"gold"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the version written in place", func() bool { return get() == `"gold"` })
	if err := os.WriteFile(path, []byte(`{"u1":"jade"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(path, future, future); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the same-size version", func() bool { return get() == `"jade"` })
}
