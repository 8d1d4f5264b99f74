package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/synth"
)

type langResult struct {
	Lang       string   `json:"lang"`
	Confidence *float64 `json:"confidence"`
}

func detectLang(t testing.TB, e Enricher, text string) langResult {
	t.Helper()
	res, err := enrichWithin(e, time.Second, &activity.Fields{ID: "a", Text: text})
	if err != nil {
		t.Fatalf("Enrich(%q): %v", text, err)
	}
	var r langResult
	if err := json.Unmarshal(res, &r); err != nil || r.Confidence == nil {
		t.Fatalf("Enrich(%q) = %s: not {lang, confidence} (%v)", text, res, err)
	}
	return r
}

func TestLangDetectsSentences(t *testing.T) {
	e := build(t, Spec{Name: "lang"}, nil)
	for _, tc := range []struct{ text, want string }{
		{"The weather is lovely today, so I am going to the park with my friends.", "en"},
		{"Can't believe the game last night, what a comeback! https://t.example/x1", "en"},
		{"Hoy hace muy buen tiempo y voy a ir al parque con mis amigos.", "es"},
		{"¿Alguien sabe a qué hora empieza el partido esta noche?", "es"},
		{"Il fait très beau aujourd'hui, je vais au parc avec mes amis.", "fr"},
		{"@paul_12 Je ne sais pas encore si je viens ce soir, on verra.", "fr"},
		{"Heute ist das Wetter sehr schön und ich gehe mit meinen Freunden in den Park.", "de"},
		{"Weiß jemand, wann der Zug nach München heute Abend fährt?", "de"},
		{"Hoje o tempo está muito bom e vou ao parque com os meus amigos.", "pt"},
		{"Alguém sabe a que horas começa o jogo hoje à noite? Não quero perder.", "pt"},
		{"今日はとても天気が良いので、友達と公園に行きます。", "ja"},
		{"明日の会議は午後三時からです。", "ja"},
	} {
		t.Run(tc.want+"/"+tc.text[:12], func(t *testing.T) {
			got := detectLang(t, e, tc.text)
			if got.Lang != tc.want {
				t.Errorf("got %s (%.2f), want %s", got.Lang, *got.Confidence, tc.want)
			}
			if *got.Confidence <= 0 || *got.Confidence > 1 {
				t.Errorf("confidence %v out of (0, 1]", *got.Confidence)
			}
		})
	}
}

func TestLangUndetermined(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts LangOptions
		text string
	}{
		{"empty", LangOptions{}, ""},
		{"no letters", LangOptions{}, "12345 !!! 678"},
		{"only markup", LangOptions{}, "@maria_42 https://news.example/abc"},
		{"chinese is no candidate", LangOptions{}, "我们明天去北京看长城吧"},
		{"below min_confidence", LangOptions{MinConfidence: 0.999}, "hola amigo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := build(t, Spec{Name: "lang", Lang: tc.opts}, nil)
			if got := detectLang(t, e, tc.text); got.Lang != "und" {
				t.Errorf("got %s (%.3f), want und", got.Lang, *got.Confidence)
			}
		})
	}
}

func TestLangHonoursCtx(t *testing.T) {
	e := build(t, Spec{Name: "lang"}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Enrich(ctx, &activity.Fields{Text: "hello there"}); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestLangConcurrentUse(t *testing.T) {
	e := build(t, Spec{Name: "lang"}, nil)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for range 20 {
				if got := detectLang(t, e, "Heute ist das Wetter sehr schön und ich gehe in den Park."); got.Lang != "de" {
					t.Errorf("goroutine %d: got %s, want de", i, got.Lang)
					return
				}
			}
		})
	}
	wg.Wait()
}

// synthTexts returns n texts of the synthetic firehose in language code.
func synthTexts(t testing.TB, code string, n int) []string {
	t.Helper()
	cfg := synth.DefaultConfig()
	cfg.Languages = []string{code}
	cfg.Seed = 42
	g := synth.NewGenerator(cfg)
	out := make([]string, 0, n)
	var buf []byte
	for range n {
		buf, _, _ = g.Append(buf[:0])
		a, err := activity.Parse(buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a.Text)
	}
	return out
}

// TestLangAccuracyOnSynth runs the synthetic firehose's posts through the
// default lang enricher and requires 90% right per language.
func TestLangAccuracyOnSynth(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 60
	}
	e := build(t, Spec{Name: "lang"}, nil)
	for _, code := range defaultLanguages {
		t.Run(code, func(t *testing.T) {
			right, und := 0, 0
			for _, text := range synthTexts(t, code, n) {
				switch got := detectLang(t, e, text); got.Lang {
				case code:
					right++
				case "und":
					und++
				default:
					if testing.Verbose() {
						t.Logf("%s as %s (%.2f): %q", code, got.Lang, *got.Confidence, text)
					}
				}
			}
			acc := float64(right) / float64(n)
			t.Logf("%s: %.1f%% right, %d und, of %d posts", code, 100*acc, und, n)
			if acc < 0.9 {
				t.Errorf("%s: accuracy %.1f%%, want at least 90%%", code, 100*acc)
			}
		})
	}
}

func TestProse(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain words here", "plain words here"},
		{"@bob hello  there https://x.example/y www.z.example", "hello there"},
		{"", ""},
	} {
		if got := prose(tc.in); got != tc.want {
			t.Errorf("prose(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

// BenchmarkLang measures one post of the synthetic firehose (all default
// languages, mixed).
func BenchmarkLang(b *testing.B) {
	e := build(b, Spec{Name: "lang"}, nil)
	var texts []string
	for _, code := range defaultLanguages {
		texts = append(texts, synthTexts(b, code, 50)...)
	}
	ctx := context.Background()
	a := &activity.Fields{}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		a.Text = texts[i%len(texts)]
		i++
		if _, err := e.Enrich(ctx, a); err != nil {
			b.Fatal(err)
		}
	}
}

func TestLangReportsThePublishersTag(t *testing.T) {
	e := build(t, Spec{Name: "lang"}, nil)
	for _, tc := range []struct{ hint, want string }{
		{"", `{"lang":"en","confidence":`},
		{"en", `"hint":"en"}`},
		{"x\ay", `"hint":"x\u0007y"}`},
	} {
		res, err := enrichWithin(e, time.Second, &activity.Fields{ID: "a", Text: "The weather is lovely today, so I am going to the park.", Lang: tc.hint})
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(res) || !strings.Contains(string(res), tc.want) || (tc.hint == "" && strings.Contains(string(res), "hint")) {
			t.Errorf("hint %q: %s, want it to contain %s", tc.hint, res, tc.want)
		}
	}
}
