package enrich

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/bendstream/bend/internal/activity"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// builtin is one enricher type.
type builtin struct {
	// build makes an enricher from a spec with its defaults applied. log is
	// already tagged with the enricher's name.
	build func(s Spec, log logrus.FieldLogger, reg metrics.Registry) (Enricher, error)
	// options returns the spec's options of this type, nil for a type without
	// options.
	options func(s *Spec) any
	// validate reports the invalid options of s (defaults applied), each
	// naming its key under key (e.g. "enrich.enrichers[0]"). Nil: nothing to check.
	validate func(s Spec, key string) []error
}

var builtins = map[string]builtin{
	"noop":  {build: func(Spec, logrus.FieldLogger, metrics.Registry) (Enricher, error) { return instantFunc(noop), nil }},
	"stats": {build: func(Spec, logrus.FieldLogger, metrics.Registry) (Enricher, error) { return instantFunc(stats), nil }},
	"lang": {
		build:    func(s Spec, _ logrus.FieldLogger, _ metrics.Registry) (Enricher, error) { return newLang(s.Lang) },
		options:  func(s *Spec) any { return &s.Lang },
		validate: func(s Spec, key string) []error { return s.Lang.validate(key + ".lang") },
	},
	"urls": {
		build: func(s Spec, _ logrus.FieldLogger, reg metrics.Registry) (Enricher, error) {
			return newURLs(s.Name, s.URLs, reg), nil
		},
		options:  func(s *Spec) any { return &s.URLs },
		validate: func(s Spec, key string) []error { return s.URLs.validate(key + ".urls") },
	},
	"lookup": {
		build: func(s Spec, _ logrus.FieldLogger, reg metrics.Registry) (Enricher, error) {
			return newLookup(s.Name, s.Lookup, reg)
		},
		options:  func(s *Spec) any { return &s.Lookup },
		validate: func(s Spec, key string) []error { return s.Lookup.validate(key + ".lookup") },
	},
	"table": {
		build: func(s Spec, log logrus.FieldLogger, reg metrics.Registry) (Enricher, error) {
			return newTable(s.Name, s.Table, log, reg)
		},
		options:  func(s *Spec) any { return &s.Table },
		validate: func(s Spec, key string) []error { return s.Table.validate(key + ".table") },
	},
}

func builtinNames() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// optionDefaults fills the zero options of the spec's own type.
func (s Spec) optionDefaults() Spec {
	switch s.Type {
	case "lang":
		s.Lang = s.Lang.withDefaults()
	case "urls":
		s.URLs = s.URLs.withDefaults()
	case "lookup":
		s.Lookup = s.Lookup.withDefaults()
	case "table":
		s.Table = s.Table.withDefaults()
	}
	return s
}

// validateOptions reports the invalid options of s, a spec of a known type
// with its defaults applied, and the options set for another type.
func (s Spec) validateOptions(key string) []error {
	var errs []error
	for _, name := range builtinNames() {
		b := builtins[name]
		if name == s.Type || b.options == nil {
			continue
		}
		if !reflect.ValueOf(b.options(&s)).Elem().IsZero() {
			errs = append(errs, fmt.Errorf("%s.%s: options of type %s, but the type is %s", key, name, name, s.Type))
		}
	}
	if v := builtins[s.Type].validate; v != nil {
		errs = append(errs, v(s, key)...)
	}
	return errs
}

// instantFunc is an EnricherFunc that never waits and finishes in
// microseconds (noop, stats): the pool runs it without a per-attempt
// deadline, whose timer would cost more than the enrichment itself.
type instantFunc EnricherFunc

// Enrich calls f.
func (f instantFunc) Enrich(ctx context.Context, a *activity.Fields) (json.RawMessage, error) {
	return f(ctx, a)
}

func noop(context.Context, *activity.Fields) (json.RawMessage, error) {
	return json.RawMessage(`{}`), nil
}

// stats counts words, links, hashtags and mentions in the text.
func stats(_ context.Context, a *activity.Fields) (json.RawMessage, error) {
	var words, tags, mentions int
	for w := range strings.FieldsSeq(a.Text) {
		words++
		switch w[0] {
		case '#':
			tags++
		case '@':
			mentions++
		}
	}
	b := make([]byte, 0, 64)
	b = append(b, `{"words":`...)
	b = strconv.AppendInt(b, int64(words), 10)
	b = append(b, `,"links":`...)
	b = strconv.AppendInt(b, int64(len(a.Links)), 10)
	b = append(b, `,"hashtags":`...)
	b = strconv.AppendInt(b, int64(tags), 10)
	b = append(b, `,"mentions":`...)
	b = strconv.AppendInt(b, int64(mentions), 10)
	b = append(b, '}')
	return b, nil
}

// keyOf returns the activity field named by a key_field option: "id" or
// "author.id".
func keyOf(a *activity.Fields, field string) string {
	if field == "id" {
		return a.ID
	}
	return a.Author.ID
}
