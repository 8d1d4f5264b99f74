package deploy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/admin"
	"github.com/bendstream/bend/internal/config"
	"go.yaml.in/yaml/v3"
)

// helmBinary returns the helm to run: $BEND_HELM, else helm on PATH; the
// test is skipped, saying why, when there is neither. CI builds one from the
// module proxy (go install helm.sh/helm/v3/cmd/helm@v3.22.0) and sets
// BEND_HELM.
func helmBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("BEND_HELM"); p != "" {
		return p
	}
	p, err := exec.LookPath("helm")
	if err != nil {
		t.Skip("no helm (set BEND_HELM, or: GOBIN=$PWD/.cache/bin go install helm.sh/helm/v3/cmd/helm@v3.22.0); chart not rendered")
	}
	return p
}

func helm(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// helm keeps caches and repositories under $HOME: a temporary one.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	err := cmd.Run()
	return out.String(), err
}

// TestHelmChart lints the chart and renders it: N replicas of one
// Deployment, a ConfigMap whose config.yaml bend loads with the release's
// consumer group and the given brokers, a Service for the admin port, a
// ServiceMonitor on /metrics and a PodDisruptionBudget. Without
// kafka.brokers rendering fails, naming the key.
func TestHelmChart(t *testing.T) {
	bin := helmBinary(t)
	set := []string{"--set", "kafka.brokers={kafka-0:9092,kafka-1:9092}", "--set", "replicaCount=4",
		"--set", "config.enrich.workers=8", "--set", "admin.tokenSecret.name=bend-admin"}
	if out, err := helm(t, bin, append([]string{"lint", "--strict", "helm/bend"}, set...)...); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	out, err := helm(t, bin, append([]string{"template", "orders", "helm/bend"}, set...)...)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	kinds := map[string]map[string]any{}
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, out)
		}
		if doc == nil {
			continue
		}
		kinds[doc["kind"].(string)] = doc
	}
	for _, k := range []string{"Deployment", "ConfigMap", "Service", "ServiceMonitor", "PodDisruptionBudget"} {
		if kinds[k] == nil {
			t.Errorf("no %s rendered", k)
		}
	}
	if kinds["HorizontalPodAutoscaler"] != nil {
		t.Errorf("HorizontalPodAutoscaler rendered with autoscaling off (the default)")
	}
	if t.Failed() {
		t.FailNow()
	}
	get := func(doc map[string]any, path ...string) any {
		var v any = doc
		for _, p := range path {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[p]
		}
		return v
	}
	if r := get(kinds["Deployment"], "spec", "replicas"); r != 4 {
		t.Errorf("Deployment replicas = %v, want 4", r)
	}
	if p := get(kinds["ServiceMonitor"], "spec", "endpoints"); !strings.Contains(strings.TrimSpace(yamlString(p)), "path: /metrics") {
		t.Errorf("ServiceMonitor endpoints %v: want /metrics", p)
	}
	if s := yamlString(kinds["Deployment"]); !strings.Contains(s, "path: /readyz") || !strings.Contains(s, "BEND_ADMIN_TOKEN") {
		t.Errorf("Deployment lacks the /readyz probe or the admin token from the Secret:\n%s", s)
	}
	cfgYAML, _ := get(kinds["ConfigMap"], "data", "config.yaml").(string)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("bend rejects the chart's config.yaml: %v\n%s", err, cfgYAML)
	}
	if cfg.Distributor.Group != "orders" || strings.Join(cfg.Kafka.Brokers, ",") != "kafka-0:9092,kafka-1:9092" || cfg.Enrich.Workers != 8 {
		t.Errorf("config: group %q brokers %v workers %d, want orders, the two brokers, 8", cfg.Distributor.Group, cfg.Kafka.Brokers, cfg.Enrich.Workers)
	}

	testHelmAutoscaling(t, bin, set)

	out, err = helm(t, bin, "template", "orders", "helm/bend")
	if err == nil || !strings.Contains(out, "kafka.brokers is required") {
		t.Errorf("helm template without kafka.brokers: err %v, output %q; want a failure naming kafka.brokers", err, out)
	}
}

func yamlString(v any) string {
	b, _ := yaml.Marshal(v)
	return string(b)
}

// testHelmAutoscaling renders the chart with autoscaling on: an HPA on
// bend's desired-instances metric, and a Deployment without a replica
// count for it to own.
func testHelmAutoscaling(t *testing.T, bin string, set []string) {
	t.Helper()
	set = append(slices.Clone(set), "--set", "autoscaling.enabled=true", "--set", "autoscaling.maxReplicas=6")
	if out, err := helm(t, bin, append([]string{"lint", "--strict", "helm/bend"}, set...)...); err != nil {
		t.Fatalf("helm lint with autoscaling: %v\n%s", err, out)
	}
	out, err := helm(t, bin, append([]string{"template", "orders", "helm/bend"}, set...)...)
	if err != nil {
		t.Fatalf("helm template with autoscaling: %v\n%s", err, out)
	}
	var hpa, dep map[string]any
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, out)
		}
		switch doc["kind"] {
		case "HorizontalPodAutoscaler":
			hpa = doc
		case "Deployment":
			dep = doc
		}
	}
	if hpa == nil || dep == nil {
		t.Fatalf("autoscaling on: HPA %v, Deployment %v; want both rendered", hpa != nil, dep != nil)
	}
	if r, ok := dep["spec"].(map[string]any)["replicas"]; ok {
		t.Errorf("autoscaling on: Deployment replicas = %v, want none (the HPA owns it)", r)
	}
	s := yamlString(hpa)
	for _, want := range []string{"name: " + admin.FamilyDesiredInstances, "maxReplicas: 6", "name: orders", "type: AverageValue"} {
		if !strings.Contains(s, want) {
			t.Errorf("HPA lacks %q:\n%s", want, s)
		}
	}
}
