package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/plural"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Every asset is in the binary: the console loads nothing from elsewhere,
// and its Content-Security-Policy would refuse it if it tried.
//
//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pages holds one template set per page, each the layout plus the page.
type pages struct {
	byName map[string]*template.Template
	shared *template.Template // the layout's fragments, for live updates
}

var pageNames = []string{"login", "problem", "overview", "approvals", "decision", "chain", "search", "integrity"}

func loadPages() (*pages, error) {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	p := &pages{byName: map[string]*template.Template{}, shared: base}
	for _, name := range pageNames {
		t, err := base.Clone()
		if err != nil {
			return nil, fmt.Errorf("console: templates: %w", err)
		}
		if t, err = t.ParseFS(templateFS, "templates/"+name+".html"); err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		p.byName[name] = t
	}
	return p, nil
}

// render writes page name in the layout. It renders to a buffer first, so
// that a template error is a 500, never half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, v *view) {
	var buf bytes.Buffer
	if err := s.pages.byName[name].ExecuteTemplate(&buf, "layout.html", v); err != nil {
		s.logger.Error("console: render", "page", name, "err", err)
		http.Error(w, "console: cannot render this page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

// fragment renders one of the layout's named fragments.
func (p *pages) fragment(w io.Writer, name string, v *view) error {
	return p.shared.ExecuteTemplate(w, name, v)
}

func staticHandler() http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	fsrv := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=300")
		if strings.HasSuffix(r.URL.Path, "/") || r.URL.Path == "" {
			http.NotFound(w, r) // no directory listings
			return
		}
		fsrv.ServeHTTP(w, r)
	})
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"hhmm":    func(t time.Time) string { return t.UTC().Format("15:04") },
	"left": func(until, now time.Time) string {
		d := until.Sub(now).Round(time.Second)
		if d <= 0 {
			return "expired"
		}
		return fmt.Sprintf("%d:%02d left", int(d.Minutes()), int(d.Seconds())%60)
	},
	"dur": func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	"ns":  func(n int64) string { return time.Duration(n).String() },
	"json": func(v any) string {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err.Error()
		}
		return string(b)
	},
	"kind": func(k decisionlog.Kind) string { return string(k) },
	"reasons": func(rs []wire.Reason) string {
		var ids []string
		for _, r := range rs {
			ids = append(ids, r.Policy)
		}
		if len(ids) == 0 {
			return "default deny"
		}
		return strings.Join(ids, ", ")
	},
	"answer": func(d any) string { // a wire.Verdict, or a string from a query
		switch wire.Verdict(fmt.Sprint(d)) {
		case wire.Allow:
			return "allow"
		case wire.Deny:
			return "deny"
		case wire.StepUp:
			return "step_up"
		}
		return "other"
	},
	"sorted": sortedKeys[int64],
	"add":    func(a, b int) int { return a + b },
	// plural n one many: the word a count n takes ("1 row", "2 rows").
	"plural": pluralWord,
	"pct": func(n, total int64) string {
		if total == 0 {
			return "0%"
		}
		return fmt.Sprintf("%.1f%%", float64(n)*100/float64(total))
	},
	"deref": func(b *bool) bool { return b != nil && *b },
	"mod6":  func(i int) int { return i % 6 },
	"answerForm": func(id, csrf string) answerFormData {
		return answerFormData{ID: id, CSRF: csrf}
	},
}

// answerFormData is what the approve/reject form needs.
type answerFormData struct{ ID, CSRF string }

// chart is a stacked bar chart of decisions per hour, drawn as SVG by the
// template: server-rendered, so no charting library and no script.
type chart struct {
	Width, Height int
	Bars          []chartBar
	Max           int64
	Ticks         []chartTick
}

type chartBar struct {
	X, W     int
	Start    time.Time
	Segments []chartSeg
	Total    int64
	Label    string // for screen readers and tooltips
}

type chartSeg struct {
	Y, H  int
	Class string
}

type chartTick struct {
	Y     int
	Label string
}

const (
	chartW, chartH = 960, 220
	chartLeft      = 40 // room for the axis labels
	chartBottom    = 20
)

var answers = []string{string(wire.Allow), string(wire.StepUp), string(wire.Deny)}

func timelineChart(tl []decisionlog.Bucket) *chart {
	c := &chart{Width: chartW, Height: chartH}
	for _, b := range tl {
		var n int64
		for _, v := range b.Counts {
			n += v
		}
		c.Max = max(c.Max, n)
	}
	top := niceCeil(c.Max)
	plotH := chartH - chartBottom - 10
	for i := 0; i <= 4; i++ {
		v := top * int64(i) / 4
		c.Ticks = append(c.Ticks, chartTick{Y: chartH - chartBottom - int(v*int64(plotH)/top), Label: fmt.Sprint(v)})
	}
	if len(tl) == 0 {
		return c
	}
	step := (chartW - chartLeft) / len(tl)
	for i, b := range tl {
		bar := chartBar{X: chartLeft + i*step + 1, W: max(step-2, 1), Start: b.Start}
		y := chartH - chartBottom
		var parts []string
		for _, a := range answers {
			n := b.Counts[a]
			if n == 0 {
				continue
			}
			h := max(int(n*int64(plotH)/top), 1)
			y -= h
			bar.Segments = append(bar.Segments, chartSeg{Y: y, H: h, Class: a})
			bar.Total += n
			parts = append(parts, fmt.Sprintf("%d %s", n, a))
		}
		bar.Label = b.Start.UTC().Format("15:04") + ": " + strings.Join(parts, ", ")
		if len(parts) == 0 {
			bar.Label = b.Start.UTC().Format("15:04") + ": none"
		}
		c.Bars = append(c.Bars, bar)
	}
	return c
}

// niceCeil returns the chart's top: four ticks of a step of 1, 2 or 5
// times a power of ten, at least n.
func niceCeil(n int64) int64 {
	need := max((n+3)/4, 1)
	for p := int64(1); ; p *= 10 {
		for _, m := range []int64{1, 2, 5} {
			if m*p >= need {
				return 4 * m * p
			}
		}
	}
}

// pluralWord is one when n, an integer of any kind, is 1, else many.
func pluralWord(n any, one, many string) string {
	v := reflect.ValueOf(n)
	switch {
	case v.CanInt():
		return plural.Word(v.Int(), one, many)
	case v.CanUint():
		return plural.Word(v.Uint(), one, many)
	}
	return many
}
