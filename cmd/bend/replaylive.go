package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/admin"
	rp "github.com/bendstream/bend/internal/replay"
)

// liveOptions are the inputs of a replay while running.
type liveOptions struct {
	admins  []string      // base URLs of every running instance's admin server
	token   string        // admin.token of the instances
	lease   time.Duration // how long an instance stays paused without hearing from us
	timeout time.Duration // bound of each phase's requests
}

// instance is one running bend as the replay sees it.
type instance struct {
	url    string
	paused bool
	answer rp.PauseAnswer
}

// replayLive replays o.topic for the running group o.group in three
// phases, through the admin API of every instance in lo.admins:
//
//  1. pause: every instance stops reading, drains (every record read is
//     acknowledged) and commits, and answers the partitions it owns;
//  2. apply: the plan is computed from the committed offsets and printed;
//     every partition of the topic must be owned by exactly one of the
//     instances, and every member of the group must be one of them; each
//     instance commits the targets of its partitions, and the committed
//     offsets are read back;
//  3. resume: each instance ends its group session and rejoins, so every
//     claim starts from the reset offsets.
//
// Any failure resumes every paused instance (a failure after some resets
// says which). With o.dryRun it prints the plan from the current committed
// offsets and each instance's replay state, and pauses nothing.
func replayLive(ctx context.Context, brokers []string, sc *sarama.Config, o replayOptions, lo liveOptions, out io.Writer) error {
	if len(lo.admins) == 0 {
		return errors.New("replay: no instance to talk to: name every running bend with --admin URL")
	}
	cc := *sc
	cc.Consumer.Offsets.AutoCommit.Enable = false
	client, err := sarama.NewClient(brokers, &cc)
	if err != nil {
		return fmt.Errorf("replay: connecting to %s: %w", strings.Join(brokers, ","), err)
	}
	defer client.Close()
	adm, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	parts, err := client.Partitions(o.topic)
	if err != nil {
		return fmt.Errorf("replay: partitions of %s: %w", o.topic, err)
	}
	insts := make([]*instance, len(lo.admins))
	for i, u := range lo.admins {
		insts[i] = &instance{url: adminURL(u)}
	}
	hc := &http.Client{Timeout: lo.timeout}

	if o.dryRun {
		plan, err := livePlan(client, adm, o, parts)
		if err != nil {
			return err
		}
		printPlan(out, o, plan)
		for _, in := range insts {
			var st rp.Status
			if err := call(ctx, hc, lo.token, http.MethodGet, in.url, "/admin/replay", nil, &st); err != nil {
				return err
			}
			state := "reading"
			if st.Paused {
				state = "paused by replay " + st.ID
			}
			fmt.Fprintf(out, "instance %s: %s\n", in.url, state)
		}
		fmt.Fprintf(out, "dry run: nothing paused, no offsets changed (the current offsets move while the group runs; a replay pauses %d instance(s) and plans from the offsets they commit)\n", len(insts))
		return nil
	}

	var idb [8]byte
	_, _ = rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	start := time.Now()
	resumeAll := func(cause error) error {
		var errs []error
		for _, in := range insts {
			if !in.paused {
				continue
			}
			var a rp.ResumeAnswer
			// Resume with a fresh context: the caller's may be what ended.
			rctx, cancel := context.WithTimeout(context.Background(), lo.timeout)
			err := call(rctx, hc, lo.token, http.MethodPost, in.url, "/admin/replay/resume", rp.ResumeRequest{ID: id}, &a)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("%w (its pause ends when its lease of %s passes)", err, lo.lease))
				continue
			}
			in.paused = false
		}
		if cause != nil {
			errs = append([]error{cause}, errs...)
		}
		return joinLine(errs)
	}

	// Phase 1: pause every instance, in parallel (each drains for up to
	// its distributor.drain_timeout). A group in the middle of a rebalance
	// (one just ended, an instance starting) has partitions nobody claims
	// yet: the pause is asked again, with the same id (it renews), until
	// the instances cover the group or --timeout passes. The rebalance
	// goes on while they are paused; the new claims wait at the gate.
	pauseAll := func() error {
		var wg sync.WaitGroup
		errs := make([]error, len(insts))
		for i, in := range insts {
			wg.Go(func() {
				req := rp.PauseRequest{ID: id, LeaseMillis: lo.lease.Milliseconds()}
				var a rp.PauseAnswer
				err := call(ctx, hc, lo.token, http.MethodPost, in.url, "/admin/replay/pause", req, &a)
				if err == nil {
					in.paused, in.answer = true, a
				}
				errs[i] = err
			})
		}
		wg.Wait()
		return joinLine(errs)
	}
	deadline := time.Now().Add(lo.timeout)
	for {
		if err := pauseAll(); err != nil {
			return resumeAll(fmt.Errorf("replay: pausing: %w; every paused instance resumed, nothing changed", err))
		}
		settling, err := checkCoverage(adm, o, parts, insts)
		if err == nil {
			break
		}
		if !settling || time.Now().After(deadline) {
			return resumeAll(fmt.Errorf("%w; every instance resumed, nothing changed", err))
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return resumeAll(fmt.Errorf("replay: %w; every instance resumed, nothing changed", ctx.Err()))
		}
	}

	// Phase 2: plan from what the paused instances committed, then apply.
	plan, err := livePlan(client, adm, o, parts)
	if err != nil {
		return resumeAll(fmt.Errorf("%w; every instance resumed, nothing changed", err))
	}
	printPlan(out, o, plan)
	next := map[int32]int64{}
	for _, m := range plan {
		next[m.partition] = m.next
	}
	var reset []string
	for _, in := range insts {
		var req rp.ResetRequest
		req.ID = id
		for _, p := range in.answer.Partitions {
			if p.Topic == o.topic {
				req.Offsets = append(req.Offsets, rp.Partition{Topic: p.Topic, Partition: p.Partition, Offset: next[p.Partition]})
			}
		}
		if len(req.Offsets) == 0 {
			continue
		}
		var a rp.ResetAnswer
		if err := call(ctx, hc, lo.token, http.MethodPost, in.url, "/admin/replay/reset", req, &a); err != nil {
			return resumeAll(fmt.Errorf("replay: resetting: %w; every instance resumed (reset before the failure: %s)", err, orNone(reset)))
		}
		for _, p := range a.Reset {
			reset = append(reset, fmt.Sprint(p.Partition))
		}
	}
	if err := verifyPlan(adm, o, parts, plan); err != nil {
		return resumeAll(fmt.Errorf("%w; every instance resumed", err))
	}

	// Phase 3: resume; the instances that reset offsets rejoin the group.
	if err := resumeAll(nil); err != nil {
		return fmt.Errorf("replay: offsets reset, but resuming failed: %w", err)
	}
	fmt.Fprintf(out, "replayed: group %s paused for %s (%d instance(s)); it reads %s again from the new offsets\n",
		o.group, time.Since(start).Round(time.Millisecond), len(insts), o.topic)
	return nil
}

// livePlan reads the group's committed offsets and resolves the target
// of every partition.
func livePlan(client sarama.Client, adm sarama.ClusterAdmin, o replayOptions, parts []int32) ([]replayMove, error) {
	committed, err := adm.ListConsumerGroupOffsets(o.group, map[string][]int32{o.topic: parts})
	if err != nil {
		return nil, fmt.Errorf("replay: offsets of group %s: %w", o.group, err)
	}
	var plan []replayMove
	for _, p := range parts {
		oldest, err := client.GetOffset(o.topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, fmt.Errorf("replay: %s/%d: %w", o.topic, p, err)
		}
		newest, err := client.GetOffset(o.topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, fmt.Errorf("replay: %s/%d: %w", o.topic, p, err)
		}
		next, err := o.to.resolve(oldest, newest, func(ms int64) (int64, error) { return client.GetOffset(o.topic, p, ms) })
		if err != nil {
			return nil, fmt.Errorf("replay: %s/%d: offset for %s: %w", o.topic, p, o.to, err)
		}
		cur := int64(-1)
		if b := committed.GetBlock(o.topic, p); b != nil && b.Err == sarama.ErrNoError {
			cur = b.Offset
		}
		plan = append(plan, replayMove{partition: p, current: cur, next: next})
	}
	return plan, nil
}

// checkCoverage checks that the paused instances are the whole group:
// every partition of the topic is owned by exactly one of them, and every
// member of the group is one of them. settling reports whether waiting may
// mend it: the group is rebalancing, or only partitions are amiss (claims
// not started yet), not members.
func checkCoverage(adm sarama.ClusterAdmin, o replayOptions, parts []int32, insts []*instance) (settling bool, err error) {
	owner := map[int32][]string{}
	members := map[string]bool{}
	for _, in := range insts {
		if in.answer.MemberID != "" {
			members[in.answer.MemberID] = true
		}
		for _, p := range in.answer.Partitions {
			if p.Topic == o.topic {
				owner[p.Partition] = append(owner[p.Partition], in.url)
			}
		}
	}
	var problems []string
	for _, p := range parts {
		switch n := len(owner[p]); {
		case n == 0:
			problems = append(problems, fmt.Sprintf("partition %d is owned by none of them", p))
		case n > 1:
			problems = append(problems, fmt.Sprintf("partition %d is owned by %d of them (%s)", p, n, strings.Join(owner[p], ", ")))
		}
	}
	descs, err := adm.DescribeConsumerGroups([]string{o.group})
	if err != nil {
		return false, fmt.Errorf("replay: describing group %s: %w", o.group, err)
	}
	settling = true
	for _, d := range descs {
		if d.State != "Stable" {
			continue
		}
		for mid, m := range d.Members {
			if !members[mid] {
				problems = append(problems, fmt.Sprintf("member %s (%s) is not one of them", mid, m.ClientHost))
				settling = false
			}
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return settling, fmt.Errorf("replay: the %d instance(s) named are not the whole group %s: %s; name every running bend with --admin",
			len(insts), o.group, strings.Join(problems, "; "))
	}
	return false, nil
}

// verifyPlan reads the committed offsets back and compares them with plan.
func verifyPlan(adm sarama.ClusterAdmin, o replayOptions, parts []int32, plan []replayMove) error {
	after, err := adm.ListConsumerGroupOffsets(o.group, map[string][]int32{o.topic: parts})
	if err != nil {
		return fmt.Errorf("replay: reading back the offsets: %w", err)
	}
	for _, m := range plan {
		got := int64(-1)
		if b := after.GetBlock(o.topic, m.partition); b != nil {
			got = b.Offset
		}
		if got != m.next {
			return fmt.Errorf("replay: partition %d has offset %d after the reset, want %d", m.partition, got, m.next)
		}
	}
	return nil
}

// joinLine joins the non-nil errors on one line, so that the CLI prints
// one error line however many instances failed.
func joinLine(errs []error) error {
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return "partitions " + strings.Join(s, ", ")
}

// call sends req as JSON (nil: no body) to base+path with the admin token
// and decodes the answer into resp. An error answer is returned as an
// error naming the instance, with the instance's own message.
func call(ctx context.Context, hc *http.Client, token, method, base, path string, req, resp any) error {
	var body io.Reader
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	r, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if req != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := hc.Do(r)
	if err != nil {
		return fmt.Errorf("replay: %s: is bend running there? %w", base, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("replay: %s%s: reading the answer: %w", base, path, err)
	}
	switch res.StatusCode {
	case http.StatusOK:
		if err := json.Unmarshal(raw, resp); err != nil {
			return fmt.Errorf("replay: %s%s: decoding the answer: %w", base, path, err)
		}
		return nil
	case http.StatusUnauthorized:
		return fmt.Errorf("replay: %s refused the admin token (%s): set --token or BEND_ADMIN_TOKEN to the instances' admin.token", base, res.Status)
	case http.StatusForbidden:
		return fmt.Errorf("replay: %s refused (%s): its admin.addr is not a loopback address and it has no admin.token", base, res.Status)
	}
	var e admin.ReplayError
	if json.Unmarshal(raw, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(raw))
	}
	return fmt.Errorf("replay: %s%s answered %s: %s", base, path, res.Status, e.Error)
}
