package deploy

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct{ cmd, args string }

func readDockerfile(t *testing.T) []instruction {
	t.Helper()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur string
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur += strings.TrimSuffix(trimmed, `\`) + " "
			continue
		}
		cur += trimmed
		cmd, args, _ := strings.Cut(cur, " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur = ""
	}
	return out
}

// TestDockerfile checks the image's properties without a Docker engine:
// the builder is go.mod's Go version, the final stage is non-root with a
// health check on readiness, OCI labels, a volume for the embedded broker's
// data directory, and no admin token baked in.
func TestDockerfile(t *testing.T) {
	ins := readDockerfile(t)
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	// The toolchain line, when there is one, names the Go that builds bend.
	goVersion := ""
	for _, re := range []string{`(?m)^go (\S+)$`, `(?m)^toolchain go(\S+)$`} {
		if m := regexp.MustCompile(re).FindSubmatch(gomod); m != nil {
			goVersion = string(m[1])
		}
	}
	if goVersion == "" {
		t.Fatal("go.mod has no go line")
	}

	var froms []string
	final := map[string][]string{} // instructions of the last stage
	for _, in := range ins {
		if in.cmd == "FROM" {
			froms = append(froms, in.args)
			final = map[string][]string{}
			continue
		}
		final[in.cmd] = append(final[in.cmd], in.args)
	}
	if len(froms) < 2 {
		t.Fatalf("FROM lines %q: want a build stage and a final stage", froms)
	}
	if m := regexp.MustCompile(`^golang:([0-9.]+)-\S+ AS build$`).FindStringSubmatch(froms[0]); m == nil || m[1] != goVersion {
		t.Errorf("builder %q: want golang:%s-<variant> AS build (go.mod's Go version, exact)", froms[0], goVersion)
	}

	hc := strings.Join(final["HEALTHCHECK"], " ")
	if !strings.Contains(hc, `"healthcheck"`) || strings.Contains(hc, "--live") {
		t.Errorf("HEALTHCHECK %q: want bend healthcheck (which asks /readyz)", hc)
	}
	labels := strings.Join(final["LABEL"], " ")
	for _, l := range []string{"title", "description", "source", "licenses", "version", "revision"} {
		if !strings.Contains(labels, "org.opencontainers.image."+l+"=") {
			t.Errorf("no OCI label org.opencontainers.image.%s", l)
		}
	}
	workdir := final["WORKDIR"]
	vol := strings.Join(final["VOLUME"], " ")
	if len(workdir) == 0 || !strings.Contains(vol, `"`+workdir[len(workdir)-1]+`/data"`) {
		t.Errorf("VOLUME %q: want the data directory %s/data (kafka.embedded.data_dir ./data under WORKDIR)", vol, workdir)
	}
	cfg, err := os.ReadFile("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^\s+data_dir: \./data\b`).Match(cfg) {
		t.Error("config.yaml's kafka.embedded.data_dir is not ./data; the image's VOLUME must follow it")
	}
	if u := final["USER"]; len(u) == 0 || strings.HasPrefix(u[len(u)-1], "root") || strings.HasPrefix(u[len(u)-1], "0") {
		t.Errorf("USER %q: want a non-root user", u)
	}
	for _, e := range append(final["ENV"], final["ARG"]...) {
		if strings.Contains(e, "BEND_ADMIN_TOKEN") {
			t.Errorf("the image sets %q: a token baked into an image is no secret", e)
		}
	}
	// The admin server listens beyond loopback in the container, where the
	// admin actions need a token (internal/admin's
	// TestActionsOffBeyondLoopbackWithoutToken); the health check asks it on
	// loopback.
	if env := strings.Join(final["ENV"], " "); !strings.Contains(env, "BEND_ADMIN_ADDR=:9180") {
		t.Errorf("ENV %q: want BEND_ADMIN_ADDR=:9180 (published port, actions guarded)", env)
	}
	if !strings.Contains(hc, "127.0.0.1:9180") {
		t.Errorf("HEALTHCHECK %q: want it to ask 127.0.0.1:9180", hc)
	}
}
