package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agnivade/levenshtein"
	"github.com/go-viper/mapstructure/v2"
	"go.yaml.in/yaml/v3"
)

var durationType = reflect.TypeFor[time.Duration]()

// durationHook decodes a time.Duration from a string with a unit ("30s").
// A bare number, from the file (shutdown_timeout: 30) or the environment
// (BEND_SHUTDOWN_TIMEOUT=30), is an error that shows the fix: it would
// otherwise read as nanoseconds.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType || from == durationType {
		return data, nil
	}
	switch from.Kind() {
	case reflect.String:
		s := strings.TrimSpace(data.(string))
		if _, err := strconv.ParseFloat(s, 64); err == nil && s != "0" {
			return nil, fmt.Errorf("%s is a bare number; durations need a unit: write %ss (or ms, m, h)", s, s)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration; write one with a unit, such as 30s, 500ms or 2m", s)
		}
		return d, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		if reflect.ValueOf(data).IsZero() {
			return time.Duration(0), nil // 0 needs no unit
		}
		return nil, fmt.Errorf("%v is a bare number; durations need a unit: write %vs (or ms, m, h)", data, data)
	}
	return data, nil
}

// sources says where each key's value came from.
type sources struct {
	env   map[string]string // BEND_ variable -> value
	file  string
	lines map[string]position // key -> position in file
}

type position struct {
	line  int
	value string
}

// envName is the BEND_ variable that overrides key.
func envName(key string) string {
	return "BEND_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// of describes where key's value came from, with the value: the BEND_
// variable (it overrides the file), the file and line, or "" (the default).
func (s sources) of(key string) string {
	if v, ok := s.env[envName(key)]; ok {
		return fmt.Sprintf("from %s=%q", envName(key), v)
	}
	if p, ok := s.lines[key]; ok {
		if p.value != "" {
			return fmt.Sprintf("value %q at %s:%d", p.value, s.file, p.line)
		}
		return fmt.Sprintf("at %s:%d", s.file, p.line)
	}
	return ""
}

// envOf returns the BEND_ variables of environ.
func envOf(environ []string) map[string]string {
	m := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "BEND_") {
			m[k] = v
		}
	}
	return m
}

// yamlPositions maps every key of a YAML document (dotted, with [i] for
// list elements, as mapstructure names them) to its line and scalar value.
// A document that does not parse yields nothing: viper reports that.
func yamlPositions(data []byte) map[string]position {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return nil
	}
	out := map[string]position{}
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, val := n.Content[i], n.Content[i+1]
				key := k.Value
				if prefix != "" {
					key = prefix + "." + key
				}
				p := position{line: k.Line}
				if val.Kind == yaml.ScalarNode {
					p.value = val.Value
				}
				out[key] = p
				walk(key, val)
			}
		case yaml.SequenceNode:
			for i, el := range n.Content {
				key := fmt.Sprintf("%s[%d]", prefix, i)
				p := position{line: el.Line}
				if el.Kind == yaml.ScalarNode {
					p.value = el.Value
				}
				out[key] = p
				walk(key, el)
			}
		}
	}
	walk("", doc.Content[0])
	return out
}

// nearest returns the candidate closest to word if it is close enough to
// be a typo of it, else "".
func nearest(word string, candidates []string) string {
	best, bestD := "", len(word)/2+2
	for _, c := range candidates {
		if d := levenshtein.ComputeDistance(word, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// suggestKey returns the known key nearest to the unknown key, among its
// siblings (the known keys of the same section), or "".
func suggestKey(key string, known map[string]any) string {
	parent, last := "", key
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		parent, last = key[:i], key[i+1:]
	}
	var sib []string
	seen := map[string]bool{}
	for k := range known {
		rest := k
		if parent != "" {
			if !strings.HasPrefix(k, parent+".") {
				continue
			}
			rest = k[len(parent)+1:]
		}
		name, _, _ := strings.Cut(rest, ".")
		if !seen[name] {
			seen[name] = true
			sib = append(sib, name)
		}
	}
	slices.Sort(sib) // deterministic among equally near keys
	if n := nearest(last, sib); n != "" {
		if parent != "" {
			return parent + "." + n
		}
		return n
	}
	return ""
}

// toolEnv reports whether k is a variable of bend's test and broker
// tooling (BEND_TEST_*, scripts/kafka's BEND_KAFKA_* settings), which shares
// the prefix but is not configuration.
func toolEnv(k string) bool {
	if strings.HasPrefix(k, "BEND_TEST_") {
		return true
	}
	switch k {
	case "BEND_KAFKA_CACHE", "BEND_KAFKA_STATE", "BEND_KAFKA_HEAP_OPTS", "BEND_KAFKA_JVM_OPTS",
		"BEND_KAFKA_EXTRA_CONFIG", "BEND_KAFKA_START_TIMEOUT", "BEND_KAFKA_SECURITY",
		"BEND_KAFKA_PROXY_PORT", "BEND_KAFKA_SCRIPT":
		return true
	}
	return false
}

// unknownEnv warns about BEND_ variables that set no key.
func unknownEnv(environ []string, known map[string]any) []string {
	names := map[string]bool{}
	var all []string
	for k := range known {
		names[envName(k)] = true
		all = append(all, envName(k))
	}
	slices.Sort(all)
	var warns []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "BEND_") || names[k] || toolEnv(k) {
			continue
		}
		w := fmt.Sprintf("%s is set but names no configuration key; it is ignored", k)
		if n := nearest(k, all); n != "" {
			w += fmt.Sprintf(" (did you mean %s?)", n)
		}
		warns = append(warns, w)
	}
	slices.Sort(warns)
	return warns
}

// leaves flattens joined errors.
func leaves(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	if w := errors.Unwrap(err); w != nil && strings.HasPrefix(err.Error(), "decoding failed") {
		return leaves(w)
	}
	return []error{err}
}

// keyError is one configuration problem, by key.
type keyError struct {
	key, msg, where string
}

func (e keyError) Error() string {
	s := e.key + ": " + e.msg
	if e.where != "" {
		s += " (" + e.where + ")"
	}
	return s
}

// report joins every problem: decoding errors, unknown keys (with the
// nearest known key) and validation errors, each with where its value came
// from. A key that failed to decode is not also reported by validation,
// which saw the default in its place.
func report(decodeErr error, unused []string, validateErr error, known map[string]any, src sources) error {
	var out []error
	bad := map[string]bool{}
	for _, e := range leaves(decodeErr) {
		var de *mapstructure.DecodeError
		if errors.As(e, &de) {
			bad[de.Name()] = true
			out = append(out, keyError{key: de.Name(), msg: de.Unwrap().Error(), where: src.of(de.Name())})
			continue
		}
		out = append(out, e)
	}
	slices.Sort(unused)
	for _, k := range unused {
		msg := "unknown key"
		if n := suggestKey(k, known); n != "" {
			msg += fmt.Sprintf("; did you mean %s?", n)
		}
		out = append(out, keyError{key: k, msg: msg, where: src.of(k)})
	}
	for _, e := range leaves(validateErr) {
		key, msg, ok := strings.Cut(e.Error(), ": ")
		if !ok || strings.ContainsAny(key, " ") {
			out = append(out, e)
			continue
		}
		if bad[key] {
			continue
		}
		out = append(out, keyError{key: key, msg: msg, where: src.of(key)})
	}
	return errors.Join(out...)
}
