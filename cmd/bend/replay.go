package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/config"
	"github.com/bendstream/bend/internal/localbroker"
	"github.com/spf13/cobra"
)

// errGroupActive is returned by replay while the consumer group has members.
var errGroupActive = errors.New("replay: the consumer group has active members")

// replayTarget is where `bend replay --to` moves the group's offsets.
type replayTarget struct {
	kind   string    // "earliest", "latest", "time" or "offset"
	at     time.Time // kind time: the first record at or after it
	offset int64     // kind offset
}

func (t replayTarget) String() string {
	switch t.kind {
	case "time":
		return t.at.Format(time.RFC3339Nano)
	case "offset":
		return "offset " + strconv.FormatInt(t.offset, 10)
	}
	return t.kind
}

// parseTarget parses --to: earliest, latest, an RFC 3339 time, a duration
// meaning that long before now ("15m"), or "offset N" (also offset=N,
// offset:N).
func parseTarget(s string, now time.Time) (replayTarget, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "earliest", "oldest", "beginning":
		return replayTarget{kind: "earliest"}, nil
	case "latest", "newest", "end":
		return replayTarget{kind: "latest"}, nil
	}
	if rest, ok := strings.CutPrefix(strings.ToLower(s), "offset"); ok {
		rest = strings.TrimLeft(rest, " =:")
		n, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || n < 0 {
			return replayTarget{}, fmt.Errorf("--to %q: want offset N with N a non-negative integer", s)
		}
		return replayTarget{kind: "offset", offset: n}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return replayTarget{kind: "time", at: t}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return replayTarget{}, fmt.Errorf("--to %q: a duration means that long ago and must be positive", s)
		}
		return replayTarget{kind: "time", at: now.Add(-d)}, nil
	}
	return replayTarget{}, fmt.Errorf("--to %q: want earliest, latest, an RFC 3339 time (2006-01-02T15:04:05Z), a duration ago (15m) or offset N", s)
}

// replayMove is one partition's planned offset change.
type replayMove struct {
	partition int32
	current   int64 // -1: nothing committed
	next      int64
}

// resolve returns the offset target means for a partition whose log spans
// [oldest, newest); byTime answers a time lookup (-1: no record that late).
func (t replayTarget) resolve(oldest, newest int64, byTime func(millis int64) (int64, error)) (int64, error) {
	switch t.kind {
	case "earliest":
		return oldest, nil
	case "latest":
		return newest, nil
	case "offset":
		return min(max(t.offset, oldest), newest), nil
	}
	off, err := byTime(t.at.UnixMilli())
	if err != nil {
		return 0, err
	}
	if off < 0 { // no record at or after the time
		return newest, nil
	}
	return min(max(off, oldest), newest), nil
}

// replayOptions are the inputs of replay.
type replayOptions struct {
	group, topic string
	to           replayTarget
	dryRun       bool
}

// replay moves the committed offsets of o.group on o.topic to o.to, after
// printing the plan to out. It refuses while the group has members: Kafka
// does not accept offset commits from outside an active group, and the
// members would overwrite the new offsets with their own next commit
// anyway. With o.dryRun it only prints the plan.
func replay(brokers []string, sc *sarama.Config, o replayOptions, out io.Writer) error {
	cc := *sc
	cc.Consumer.Offsets.AutoCommit.Enable = false
	cc.Consumer.Return.Errors = true
	client, err := sarama.NewClient(brokers, &cc)
	if err != nil {
		return fmt.Errorf("replay: connecting to %s: %w", strings.Join(brokers, ","), err)
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	// Closing admin would close client, which the deferred Close does.

	if err := refuseActive(admin, o.group); err != nil {
		return err
	}
	parts, err := client.Partitions(o.topic)
	if err != nil {
		return fmt.Errorf("replay: partitions of %s: %w", o.topic, err)
	}
	committed, err := admin.ListConsumerGroupOffsets(o.group, map[string][]int32{o.topic: parts})
	if err != nil {
		return fmt.Errorf("replay: offsets of group %s: %w", o.group, err)
	}
	var plan []replayMove
	for _, p := range parts {
		oldest, err := client.GetOffset(o.topic, p, sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("replay: %s/%d: %w", o.topic, p, err)
		}
		newest, err := client.GetOffset(o.topic, p, sarama.OffsetNewest)
		if err != nil {
			return fmt.Errorf("replay: %s/%d: %w", o.topic, p, err)
		}
		next, err := o.to.resolve(oldest, newest, func(ms int64) (int64, error) { return client.GetOffset(o.topic, p, ms) })
		if err != nil {
			return fmt.Errorf("replay: %s/%d: offset for %s: %w", o.topic, p, o.to, err)
		}
		cur := int64(-1)
		if b := committed.GetBlock(o.topic, p); b != nil && b.Err == sarama.ErrNoError {
			cur = b.Offset
		}
		plan = append(plan, replayMove{partition: p, current: cur, next: next})
	}
	printPlan(out, o, plan)
	if o.dryRun {
		fmt.Fprintln(out, "dry run: no offsets changed")
		return nil
	}
	if err := commitPlan(client, o, plan); err != nil {
		return err
	}
	// Check what the group now has, rather than trusting the commit.
	after, err := admin.ListConsumerGroupOffsets(o.group, map[string][]int32{o.topic: parts})
	if err != nil {
		return fmt.Errorf("replay: reading back the offsets: %w", err)
	}
	for _, m := range plan {
		if b := after.GetBlock(o.topic, m.partition); b == nil || b.Offset != m.next {
			got := int64(-1)
			if b != nil {
				got = b.Offset
			}
			return fmt.Errorf("replay: partition %d has offset %d after the commit, want %d (did a consumer join meanwhile?)", m.partition, got, m.next)
		}
	}
	fmt.Fprintf(out, "committed: group %s will consume %s from the new offsets when it starts\n", o.group, o.topic)
	return nil
}

// refuseActive returns errGroupActive, explained, while group has members.
func refuseActive(admin sarama.ClusterAdmin, group string) error {
	descs, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil {
		return fmt.Errorf("replay: describing group %s: %w", group, err)
	}
	for _, d := range descs {
		if len(d.Members) == 0 && (d.State == "" || d.State == "Empty" || d.State == "Dead") {
			continue
		}
		return fmt.Errorf("%w: group %s is %s with %d member(s). Stop every bend of the group first: "+
			"Kafka only accepts offset commits for an active group from its members, and the members would "+
			"overwrite the new offsets with their own next commit", errGroupActive, group, d.State, len(d.Members))
	}
	return nil
}

func printPlan(out io.Writer, o replayOptions, plan []replayMove) {
	fmt.Fprintf(out, "replay of group %s on topic %s to %s:\n", o.group, o.topic, o.to)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "partition\tcurrent\t\tnew\tchange\t")
	var total int64
	for _, m := range plan {
		cur, change := "none", "-"
		if m.current >= 0 {
			cur = strconv.FormatInt(m.current, 10)
			change = fmt.Sprintf("%+d", m.next-m.current)
			total += m.next - m.current
		}
		fmt.Fprintf(tw, "%d\t%s\t->\t%d\t%s\t\n", m.partition, cur, m.next, change)
	}
	_ = tw.Flush()
	switch {
	case total < 0:
		fmt.Fprintf(out, "%d records will be consumed again\n", -total)
	case total > 0:
		fmt.Fprintf(out, "%d records will be skipped\n", total)
	}
}

// commitPlan commits the planned offsets as a client outside the group.
func commitPlan(client sarama.Client, o replayOptions, plan []replayMove) error {
	om, err := sarama.NewOffsetManagerFromClient(o.group, client)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	var poms []sarama.PartitionOffsetManager
	defer func() {
		// Without auto-commit, Close neither flushes nor waits for the
		// partition managers: close them asynchronously, then the manager.
		for _, pom := range poms {
			pom.AsyncClose()
		}
		_ = om.Close()
	}()
	for _, m := range plan {
		pom, err := om.ManagePartition(o.topic, m.partition)
		if err != nil {
			return fmt.Errorf("replay: partition %d: %w", m.partition, err)
		}
		poms = append(poms, pom)
		// ResetOffset only moves back, MarkOffset only forward.
		pom.ResetOffset(m.next, "bend replay")
		pom.MarkOffset(m.next, "bend replay")
	}
	om.Commit()
	for _, pom := range poms {
		select {
		case err := <-pom.Errors():
			return fmt.Errorf("replay: committing: %w", err)
		default:
		}
	}
	return nil
}

func newReplayCmd(stdout io.Writer) *cobra.Command {
	var group, topic, to, token string
	var brokers, admins []string
	var dryRun, live bool
	var lease, timeout time.Duration
	cmd := &cobra.Command{
		Use:   "replay --to <time|duration|earliest|latest|offset N>",
		Short: "Move the consumer group's offsets: of a stopped group, or of a running one (--live)",
		Long: `Replay moves the consumer group's committed offsets on the input topic, so
that bend consumes again from there (or skips ahead). --to is earliest,
latest, an RFC 3339 time (the first record at or after it), a duration
meaning that long ago (15m), or "offset N" (clamped to the log).

A stopped group's offsets are committed directly. A running group must move
its own offsets (Kafka refuses commits from outside an active group): with
--live, or --admin, or when the group turns out to be active, replay talks
to the admin API of every running bend of the group (--admin, repeatable;
default admin.addr) with the admin token (--token, default admin.token /
BEND_ADMIN_TOKEN). Every instance pauses reading, drains and commits; the
plan is computed from those offsets and printed; each instance commits the
new offsets of its partitions, then rejoins the group and reads on from
them, without a restart. Any failure resumes every instance; a pause also
ends by itself when its --lease passes without word from this command.

--dry-run prints the plan (per partition: current -> new) and changes
nothing; with --live it also shows each instance's replay state. With the
embedded broker (kafka.brokers empty) a stopped group's data directory is
opened directly; a running one needs --brokers (its address is logged at
start).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Flag("config").Value.String())
			if err != nil {
				return fmt.Errorf("invalid configuration: %w", err)
			}
			target, err := parseTarget(to, time.Now())
			if err != nil {
				return err
			}
			if lease < timeout {
				return fmt.Errorf("--lease %s must be at least --timeout %s: an instance would resume while a phase may still run", lease, timeout)
			}
			o := replayOptions{group: group, topic: topic, to: target, dryRun: dryRun}
			if o.group == "" {
				o.group = cfg.Distributor.Group
			}
			if o.topic == "" {
				o.topic = cfg.Kafka.Topics.Input
			}
			live = live || len(admins) > 0
			if live && len(admins) == 0 {
				if cfg.Admin.Addr == "" {
					return errors.New("replay --live: admin.addr is off and no --admin is given: name every running bend with --admin URL")
				}
				admins = []string{cfg.Admin.Addr}
			}
			if token == "" {
				token = cfg.Admin.Token
			}
			if len(brokers) == 0 {
				brokers = cfg.Kafka.Brokers
			}
			if len(brokers) == 0 {
				if live {
					return errors.New("replay --live: kafka.brokers is empty: give the running bend's embedded broker with --brokers (logged at start)")
				}
				b, err := openEmbedded(cfg)
				if err != nil {
					return err
				}
				defer b.Close()
				brokers = b.Addrs()
			}
			sc, err := cfg.Kafka.Sarama(nil)
			if err != nil {
				return err
			}
			if !live {
				err := replay(brokers, sc, o, stdout)
				if !errors.Is(err, errGroupActive) || cfg.Admin.Addr == "" {
					return err
				}
				admins = []string{cfg.Admin.Addr}
				fmt.Fprintf(stdout, "group %s is active: replaying while it runs, through %s\n", o.group, adminURL(cfg.Admin.Addr))
			}
			return replayLive(cmd.Context(), brokers, sc, o, liveOptions{admins: admins, token: token, lease: lease, timeout: timeout}, stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&group, "group", "", "consumer group (default distributor.group)")
	f.StringVar(&topic, "topic", "", "topic (default kafka.topics.input)")
	f.StringVar(&to, "to", "", "earliest, latest, RFC 3339 time, duration ago (15m) or \"offset N\"")
	f.StringSliceVar(&brokers, "brokers", nil, "bootstrap brokers (default kafka.brokers; empty: the embedded broker's data directory)")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan, change nothing")
	f.BoolVar(&live, "live", false, "replay while the group runs, through its instances' admin API")
	f.StringArrayVar(&admins, "admin", nil, "admin server of a running bend of the group, http://host:port or host:port; repeat for every instance (implies --live; default admin.addr)")
	f.StringVar(&token, "token", "", "the instances' admin token (default admin.token, BEND_ADMIN_TOKEN)")
	f.DurationVar(&lease, "lease", time.Minute, "an instance resumes by itself when paused this long without word from the replay")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "bound of each phase's requests (a pause drains for up to distributor.drain_timeout)")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

// openEmbedded starts the embedded broker on its data directory, unless a
// bend daemon answers on admin.addr: the embedded broker is that daemon's,
// and two brokers must never share a data directory.
func openEmbedded(cfg config.Config) (*localbroker.Broker, error) {
	if cfg.Kafka.Embedded.DataDir == "" {
		return nil, errors.New("replay: kafka.brokers is empty and the embedded broker keeps no data directory: nothing to replay")
	}
	if cfg.Admin.Addr != "" {
		c := http.Client{Timeout: time.Second}
		if res, err := c.Get(adminURL(cfg.Admin.Addr) + "/healthz"); err == nil {
			res.Body.Close()
			return nil, fmt.Errorf("%w: a bend daemon answers on %s and owns the embedded broker's data directory; stop it first",
				errGroupActive, cfg.Admin.Addr)
		}
	}
	return localbroker.Start(cfg.Kafka.Embedded)
}

// adminURL turns an admin.addr (host:port, maybe with an empty or
// wildcard host) into a base URL to reach it locally.
func adminURL(addr string) string {
	if strings.Contains(addr, "://") {
		return strings.TrimRight(addr, "/")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
