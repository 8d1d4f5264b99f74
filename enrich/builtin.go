package enrich

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/bendstream/bend/internal/activity"
)

var builtins = map[string]func() Enricher{
	"noop":  func() Enricher { return EnricherFunc(noop) },
	"stats": func() Enricher { return EnricherFunc(stats) },
}

func builtinNames() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
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
