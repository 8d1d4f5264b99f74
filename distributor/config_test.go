package distributor

import (
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// TestGroupTimers: the heartbeat interval and session timeout reach
// sarama's group settings, zero means their defaults, and a heartbeat
// interval above a third of the session timeout is rejected by its key.
func TestGroupTimers(t *testing.T) {
	tests := []struct {
		name          string
		hb, session   time.Duration
		wantHB        time.Duration
		wantSession   time.Duration
		wantErrSubstr string
	}{
		{name: "defaults", wantHB: 500 * time.Millisecond, wantSession: 10 * time.Second},
		{name: "set", hb: time.Second, session: 30 * time.Second, wantHB: time.Second, wantSession: 30 * time.Second},
		{name: "a third", hb: 2 * time.Second, session: 6 * time.Second, wantHB: 2 * time.Second, wantSession: 6 * time.Second},
		{name: "above a third", hb: 4 * time.Second, session: 10 * time.Second, wantErrSubstr: "distributor.heartbeat_interval: 4s is more than a third"},
		{name: "heartbeat default against a short session", session: time.Second, wantErrSubstr: "distributor.heartbeat_interval"},
		{name: "negative session", session: -time.Second, wantErrSubstr: "distributor.session_timeout"},
		{name: "negative heartbeat", hb: -time.Second, wantErrSubstr: "distributor.heartbeat_interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.HeartbeatInterval, c.SessionTimeout = tt.hb, tt.session
			err := c.Validate()
			if tt.wantErrSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrSubstr) {
					t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErrSubstr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			cc := c.consumerConfig(sarama.NewConfig())
			if cc.Consumer.Group.Heartbeat.Interval != tt.wantHB || cc.Consumer.Group.Session.Timeout != tt.wantSession {
				t.Errorf("heartbeat %s, session %s; want %s, %s", cc.Consumer.Group.Heartbeat.Interval, cc.Consumer.Group.Session.Timeout, tt.wantHB, tt.wantSession)
			}
			if err := cc.Validate(); err != nil {
				t.Errorf("sarama rejects the config: %v", err)
			}
		})
	}
}
