package benchkit

import "testing"

func TestFields(t *testing.T) {
	for _, tc := range []struct {
		name, in, wantID, wantCreated string
	}{
		{"enriched", `{"id":"act-7","author":{"id":"u1"},"created_at":"2026-11-22T08:00:00.1Z","enrichments":{}}`, "act-7", "2026-11-22T08:00:00.1Z"},
		{"no created_at", `{"id":"act-1"}`, "act-1", ""},
		{"not an activity", `[]`, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, created := Fields([]byte(tc.in))
			if id != tc.wantID || created != tc.wantCreated {
				t.Errorf("Fields(%s) = %q, %q, want %q, %q", tc.in, id, created, tc.wantID, tc.wantCreated)
			}
		})
	}
}

func TestFieldsID(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"id":"act-12","text":"x"}`, "act-12"},
		{`{"text":"x","id":"act-12"}`, ""}, // bend's synthetic events carry id first
		{`{"id":"act-7`, ""},
		{``, ""},
	} {
		if got, _ := Fields([]byte(tc.in)); got != tc.want {
			t.Errorf("Fields(%s) id = %q, want %q", tc.in, got, tc.want)
		}
	}
}
