// Package deploy holds bend's deployment files: the Grafana dashboard
// (grafana/bend.json), the Prometheus alerting rules (prometheus/alerts.yml
// and their promtool unit tests), the Helm chart (helm/bend) and the systemd
// unit. Its Go code reads the metric names the dashboard and the rules use,
// so that tests can check each against what bend exposes.
package deploy

import (
	"embed"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"

	"go.yaml.in/yaml/v3"
)

//go:embed grafana/bend.json prometheus/alerts.yml
var files embed.FS

// Dashboard is the part of a Grafana dashboard JSON model the checks read.
type Dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []Panel `json:"panels"`
}

// Panel is one dashboard panel.
type Panel struct {
	ID      int                       `json:"id"`
	Type    string                    `json:"type"`
	Title   string                    `json:"title"`
	GridPos *struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// Rules is a Prometheus rule file.
type Rules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert string `yaml:"alert"`
			Expr  string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// ReadDashboard decodes grafana/bend.json, rejecting unknown trailing data.
func ReadDashboard() (Dashboard, error) {
	var d Dashboard
	b, err := files.ReadFile("grafana/bend.json")
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("grafana/bend.json: %w", err)
	}
	return d, nil
}

// ReadRules decodes prometheus/alerts.yml.
func ReadRules() (Rules, error) {
	var r Rules
	b, err := files.ReadFile("prometheus/alerts.yml")
	if err != nil {
		return r, err
	}
	if err := yaml.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("prometheus/alerts.yml: %w", err)
	}
	return r, nil
}

// Exprs returns every PromQL expression of the dashboard and the rules,
// each with where it is ("grafana/bend.json: Lag/B").
func Exprs() (map[string]string, error) {
	d, err := ReadDashboard()
	if err != nil {
		return nil, err
	}
	r, err := ReadRules()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out[fmt.Sprintf("grafana/bend.json: %s/%s", p.Title, t.RefID)] = t.Expr
		}
	}
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			out["prometheus/alerts.yml: "+rule.Alert] = rule.Expr
		}
	}
	return out, nil
}

var metricRe = regexp.MustCompile(`\b(bend|go|process)_[a-z0-9_]+\b`)

// Metrics returns the metric names (bend_*, go_*, process_*) expr
// references, sorted, each once.
func Metrics(expr string) []string {
	ms := metricRe.FindAllString(expr, -1)
	slices.Sort(ms)
	return slices.Compact(ms)
}

// Referenced returns every metric name the dashboard and the rules use,
// with the places that use it.
func Referenced() (map[string][]string, error) {
	exprs, err := Exprs()
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for where, e := range exprs {
		for _, m := range Metrics(e) {
			out[m] = append(out[m], where)
		}
	}
	for _, w := range out {
		slices.Sort(w)
	}
	return out, nil
}
