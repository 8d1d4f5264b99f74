package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// WebhookConfig is the "sink.webhook" section of config.yaml.
type WebhookConfig struct {
	// URL receives batches of enriched events as NDJSON POSTs
	// (Content-Type application/x-ndjson). Empty disables the output. Default "".
	URL string `mapstructure:"url"`
	// BatchRecords and BatchBytes bound one POST. Defaults 500 and 1 MiB.
	BatchRecords int `mapstructure:"batch_records"`
	BatchBytes   int `mapstructure:"batch_bytes"`
	// Linger is how long a batch waits to fill. Default 50ms.
	Linger time.Duration `mapstructure:"linger"`
	// Timeout bounds one POST. Default 10s.
	Timeout time.Duration `mapstructure:"timeout"`
	// RetryBackoff is the first wait before re-sending a batch the endpoint
	// did not accept (any non-2xx answer or a network error); it doubles up
	// to 30s, and a Retry-After header is honoured. Batches are retried
	// until accepted: while the endpoint is down, intake stops. Default 250ms.
	RetryBackoff time.Duration `mapstructure:"retry_backoff"`
	// Token, or the contents of TokenFile, is sent as a bearer token. Default "".
	Token     string `mapstructure:"token"`
	TokenFile string `mapstructure:"token_file"`
	// CloseTimeout bounds the retries of the last batches when bend stops;
	// records not accepted by then are nacked. Default 30s.
	CloseTimeout time.Duration `mapstructure:"close_timeout"`
}

// DefaultWebhookConfig returns the documented defaults.
func DefaultWebhookConfig() WebhookConfig {
	return WebhookConfig{BatchRecords: 500, BatchBytes: 1 << 20, Linger: 50 * time.Millisecond,
		Timeout: 10 * time.Second, RetryBackoff: 250 * time.Millisecond, CloseTimeout: 30 * time.Second}
}

// Validate reports every invalid field by its config.yaml key.
func (c WebhookConfig) Validate() error {
	if c.URL == "" {
		return nil
	}
	var errs []error
	if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		errs = append(errs, fmt.Errorf("sink.webhook.url: want an http:// or https:// URL, got %q", c.URL))
	}
	if c.BatchRecords < 1 {
		errs = append(errs, fmt.Errorf("sink.webhook.batch_records: must be at least 1, got %d", c.BatchRecords))
	}
	if c.BatchBytes < 1024 {
		errs = append(errs, fmt.Errorf("sink.webhook.batch_bytes: must be at least 1024, got %d", c.BatchBytes))
	}
	if c.Linger < 0 {
		errs = append(errs, errors.New("sink.webhook.linger: must not be negative"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("sink.webhook.timeout: must be positive"))
	}
	if c.RetryBackoff <= 0 {
		errs = append(errs, errors.New("sink.webhook.retry_backoff: must be positive"))
	}
	if c.CloseTimeout <= 0 {
		errs = append(errs, errors.New("sink.webhook.close_timeout: must be positive"))
	}
	if c.Token != "" && c.TokenFile != "" {
		errs = append(errs, errors.New("sink.webhook.token_file: set token or token_file, not both"))
	}
	return errors.Join(errs...)
}

// webhookOutput batches records into NDJSON POSTs and acknowledges a batch's
// records once the endpoint answered 2xx.
type webhookOutput struct {
	cfg     WebhookConfig
	client  *http.Client
	token   string
	log     logrus.FieldLogger
	posts   metrics.Timer
	retries metrics.Counter

	in      chan *Record
	done    chan struct{}
	giveUp  chan struct{}
	closeMu sync.Once
}

func newWebhookOutput(cfg WebhookConfig, log logrus.FieldLogger, reg metrics.Registry) (*webhookOutput, error) {
	token := cfg.Token
	if cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("sink.webhook.token_file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	o := &webhookOutput{cfg: cfg, client: &http.Client{Timeout: cfg.Timeout}, token: token, log: log,
		posts:   metrics.GetOrRegisterTimer(metricnames.SinkWebhookPosts, reg),
		retries: metrics.GetOrRegisterCounter(metricnames.SinkWebhookRetries, reg),
		in:      make(chan *Record, cfg.BatchRecords), done: make(chan struct{}), giveUp: make(chan struct{})}
	go o.loop()
	return o, nil
}

// Send queues r, blocking while a batch's worth of records waits (which is
// how an endpoint outage stops intake).
func (o *webhookOutput) Send(ctx context.Context, r *Record) error {
	select {
	case o.in <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (o *webhookOutput) loop() {
	defer close(o.done)
	var body bytes.Buffer
	for {
		r, ok := <-o.in
		if !ok {
			return
		}
		batch := []*Record{r}
		body.Reset()
		body.Write(r.Value)
		body.WriteByte('\n')
		timer := time.NewTimer(o.cfg.Linger)
	fill:
		for len(batch) < o.cfg.BatchRecords && body.Len() < o.cfg.BatchBytes {
			select {
			case r, ok := <-o.in:
				if !ok {
					break fill
				}
				batch = append(batch, r)
				body.Write(r.Value)
				body.WriteByte('\n')
			case <-timer.C:
				break fill
			}
		}
		timer.Stop()
		err := o.deliver(body.Bytes())
		for _, r := range batch {
			r.done(err)
		}
	}
}

// deliver POSTs body until the endpoint accepts it, or Close gives up.
func (o *webhookOutput) deliver(body []byte) error {
	backoff := o.cfg.RetryBackoff
	for {
		start := time.Now()
		wait, err := o.post(body)
		if err == nil {
			o.posts.UpdateSince(start)
			return nil
		}
		o.retries.Inc(1)
		if wait <= 0 {
			wait = backoff
			backoff = min(2*backoff, 30*time.Second)
		}
		o.log.WithError(err).Warnf("webhook sink: batch not accepted, retrying in %s (intake stops while it is down)", wait)
		select {
		case <-time.After(wait):
		case <-o.giveUp:
			return fmt.Errorf("webhook sink closed before the endpoint accepted the batch: %w", err)
		}
	}
}

// post sends body once. It returns the wait the endpoint asked for
// (Retry-After), if any.
func (o *webhookOutput) post(body []byte) (time.Duration, error) {
	req, err := http.NewRequest(http.MethodPost, o.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, nil
	}
	var wait time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		wait = min(time.Duration(s)*time.Second, 5*time.Minute)
	}
	return wait, fmt.Errorf("endpoint answered %s", resp.Status)
}

// Close delivers what is queued, retrying up to CloseTimeout, then nacks
// the rest.
func (o *webhookOutput) Close() error {
	o.closeMu.Do(func() {
		close(o.in)
		t := time.AfterFunc(o.cfg.CloseTimeout, func() { close(o.giveUp) })
		<-o.done
		t.Stop()
	})
	return nil
}
