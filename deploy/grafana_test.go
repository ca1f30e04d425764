package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// metricLabels is the metrics contract between the code (internal/obs,
// and cmd/tollgate/metrics.go for the token cache) and the dashboard: each
// metric, its labels and, where the set is closed, their values.
var metricLabels = map[string]map[string][]string{
	"tollgate_http_requests_total":           {"route": routes, "code": nil},
	"tollgate_http_request_duration_seconds": {"route": routes},
	"tollgate_http_responses_cut_total":      {"route": routes, "outcome": {"client_gone", "aborted", "truncated", "panic"}},
	"tollgate_auth_decisions_total": {"result": {"ok", "denied"}, "reason": {
		"ok", "bad_credentials", "expired", "revoked", "suspended", "wrong_scope", "not_entitled", "rate_limited"}},
	"tollgate_token_issue_duration_seconds":        {},
	"tollgate_authorization_duration_seconds":      {},
	"tollgate_cache_lookups_total":                 {"layer": {"l1", "l2", "store", "negative"}, "result": {"hit", "miss", "error"}},
	"tollgate_upstream_request_duration_seconds":   {"upstream": nil},
	"tollgate_upstream_errors_total":               {"upstream": nil},
	"tollgate_bytes_streamed_total":                {"kind": {"image", "apt", "apk"}},
	"tollgate_inflight_streams":                    {},
	"tollgate_cache_invalidations_received_total":  {},
	"tollgate_usage_writes_total":                  {},
	"tollgate_redis_up":                            {},
	"tollgate_rate_limited_total":                  {"route": routes},
	"tollgate_cache_stale_answers_total":           {},
	"tollgate_cache_unavailable_total":             {},
	"tollgate_cache_mode":                          {"mode": {"normal", "revalidating", "stale"}},
	"tollgate_cache_invalidations_replayed_total":  {},
	"tollgate_cache_invalidations_pending":         {},
	"tollgate_cache_redis_repairs_total":           {},
	"tollgate_cache_l2_ignored_total":              {},
	"tollgate_cache_invalidation_log_seq":          {},
	"tollgate_cache_invalidation_log_lag_seconds":  {},
	"tollgate_cache_invalidation_log_reads_total":  {"result": {"ok", "error"}},
	"tollgate_cache_invalidation_log_pruned_total": {},
	"tollgate_cache_pruned_behind_total":           {},
	"tollgate_background_jobs_total":               {"task": {"auto_pause", "sweep_ephemeral"}, "outcome": {"ran", "failed", "not_due"}},
}

var routes = []string{"v2", "token", "apt", "apk", "api", "console", "other"}

// histograms are the metrics of metricLabels that are histograms: the
// dashboard reads their _bucket series.
var histograms = []string{
	"tollgate_http_request_duration_seconds", "tollgate_token_issue_duration_seconds",
	"tollgate_authorization_duration_seconds", "tollgate_upstream_request_duration_seconds",
}

// targetLabels are added by Prometheus, not by tollgate.
var targetLabels = []string{"job", "instance"}

type dashboardT struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panelT `json:"panels"`
}

type panelT struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) *dashboardT {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboardT
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return &d
}

// TestMetricsContract: every metric of the contract is one the code
// registers (internal/obs, and cmd/tollgate/metrics.go for the token cache), under that name.
func TestMetricsContract(t *testing.T) {
	var src []byte
	for _, f := range []string{"../internal/obs/metrics.go", "../cmd/tollgate/metrics.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, b...)
	}
	for name := range metricLabels {
		if !strings.Contains(string(src), `"`+name+`"`) {
			t.Errorf("%s is not registered in internal/obs or cmd/tollgate/metrics.go", name)
		}
	}
	for _, m := range regexp.MustCompile(`"(tollgate_[a-z_]+)"`).FindAllSubmatch(src, -1) {
		if _, ok := metricLabels[string(m[1])]; !ok {
			t.Errorf("the code registers %s, which the contract here (and the dashboard) lacks", m[1])
		}
	}
}

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("uid %q, title %q, schemaVersion %d: all required", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "query" {
			var q struct{ Query string }
			if err := json.Unmarshal(v.Query, &q); err != nil {
				t.Fatalf("variable %s: %v", v.Name, err)
			}
			// Grafana's label_values(METRIC, LABEL), not PromQL.
			m := regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`).FindStringSubmatch(q.Query)
			if m == nil {
				t.Errorf("variable %s: query %q, want label_values(METRIC, LABEL)", v.Name, q.Query)
			} else if _, ok := metricLabels[m[1]][m[2]]; !ok && !slices.Contains(targetLabels, m[2]) {
				t.Errorf("variable %s: %s has no label %s", v.Name, m[1], m[2])
			}
		}
	}
	if vars["datasource"] != "datasource" {
		t.Error("no datasource variable: the dashboard would be tied to one Prometheus")
	}

	ids := map[int]bool{}
	used := map[string]bool{}
	var cells [][2]int
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24 columns", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if slices.Contains(cells, [2]int{x, y}) {
					t.Errorf("panel %q overlaps another at %d,%d", p.Title, x, y)
					y, x = g.Y+g.H, g.X+g.W
				}
				cells = append(cells, [2]int{x, y})
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want prometheus ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			checkPromQL(t, fmt.Sprintf("panel %q %s", p.Title, tg.RefID), tg.Expr, used)
		}
	}
	// Every metric is on the dashboard (a histogram through its buckets).
	for name := range metricLabels {
		if slices.Contains(histograms, name) {
			name += "_bucket"
		}
		if !used[name] {
			t.Errorf("%s is on no panel", name)
		}
	}
}

// TestPromQLChecker shows checkPromQL catches what it is for.
func TestPromQLChecker(t *testing.T) {
	for _, bad := range []string{
		`rate(tollgate_http_request_total[5m])`, // misspelt
		`sum(tollgate_http_requests_total)`,     // counter without rate
		`histogram_quantile(0.9, sum by (route) (rate(tollgate_http_request_duration_seconds_bucket[5m])))`, // no le
		`rate(tollgate_http_request_duration_seconds_bucket[5m])`,                                           // buckets without a quantile
		`sum by (reason) (rate(tollgate_auth_decisions_total{result="deny"}[5m]))`,                          // no such value
		`sum by (account) (rate(tollgate_auth_decisions_total[5m]))`,                                        // no such label
		`sum(rate(tollgate_usage_writes_total[5m])`,                                                         // unbalanced
		`up`, // not tollgate's
	} {
		ft := &fakeT{}
		checkPromQL(ft, "bad", bad, map[string]bool{})
		if !ft.failed {
			t.Errorf("accepted %s", bad)
		}
		t.Logf("%s: %s", bad, ft.msg)
	}
	ft := &fakeT{}
	checkPromQL(ft, "good", `histogram_quantile(0.99, sum by (le, route) (rate(tollgate_http_request_duration_seconds_bucket{job=~"$job",route!="other"}[$__rate_interval])))`, map[string]bool{})
	if ft.failed {
		t.Errorf("refused a good query: %s", ft.msg)
	}
}

type fakeT struct {
	failed bool
	msg    string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Errorf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
}

// errorer is the part of testing.T checkPromQL uses.
type errorer interface {
	Helper()
	Errorf(format string, args ...any)
}

// promToken is a PromQL token: an identifier, a string, a number or one
// punctuation character (or comparison operator).
type promToken struct {
	kind byte // 'i' identifier, 's' string, 'n' number, 'p' punctuation
	text string
}

func lexPromQL(expr string) ([]promToken, error) {
	var toks []promToken
	r := []rune(expr)
	for i := 0; i < len(r); {
		c := r[i]
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(r) && r[j] != c {
				if r[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(r) {
				return nil, fmt.Errorf("unterminated string")
			}
			toks = append(toks, promToken{'s', string(r[i+1 : j])})
			i = j + 1
		case c == '[':
			// A range or subquery duration: [5m], [$__rate_interval].
			j := i
			for j < len(r) && r[j] != ']' {
				j++
			}
			if j >= len(r) {
				return nil, fmt.Errorf("unterminated [")
			}
			i = j + 1
		case c == '_' || c == ':' || unicode.IsLetter(c):
			j := i
			for j < len(r) && (r[j] == '_' || r[j] == ':' || unicode.IsLetter(r[j]) || unicode.IsDigit(r[j])) {
				j++
			}
			toks = append(toks, promToken{'i', string(r[i:j])})
			i = j
		case unicode.IsDigit(c) || c == '.':
			j := i
			for j < len(r) && (unicode.IsDigit(r[j]) || r[j] == '.' || r[j] == 'e') {
				j++
			}
			toks = append(toks, promToken{'n', string(r[i:j])})
			i = j
		default:
			op := string(c)
			if i+1 < len(r) && strings.ContainsRune("=!<>", c) && strings.ContainsRune("=~", r[i+1]) {
				op += string(r[i+1])
			}
			toks = append(toks, promToken{'p', op})
			i += len([]rune(op))
		}
	}
	return toks, nil
}

var (
	promAggregations = []string{"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "group"}
	promFunctions    = []string{"rate", "irate", "increase", "histogram_quantile", "label_values", "clamp_min", "max_over_time", "min_over_time", "avg_over_time", "abs", "vector"}
	promKeywords     = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
)

// checkPromQL checks one query: it parses (balanced brackets, known
// functions), names only metrics of the contract (recorded in used),
// groups and matches only by their labels and values, takes counters
// through rate or increase, and reads histogram buckets only through
// histogram_quantile grouped by le.
func checkPromQL(t errorer, where, expr string, used map[string]bool) {
	t.Helper()
	toks, err := lexPromQL(expr)
	if err != nil {
		t.Errorf("%s: %v: %s", where, err, expr)
		return
	}
	var stack []string // enclosing calls ("" for plain parentheses)
	var metrics []string
	var grouped []string // labels in by (...)
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		next := func(k int) promToken {
			if i+k < len(toks) {
				return toks[i+k]
			}
			return promToken{}
		}
		switch {
		case tk.kind == 'p' && tk.text == "(":
			stack = append(stack, "")
		case tk.kind == 'p' && tk.text == ")":
			if len(stack) == 0 {
				t.Errorf("%s: unbalanced ): %s", where, expr)
				return
			}
			stack = stack[:len(stack)-1]
		case tk.kind == 'i' && (tk.text == "by" || tk.text == "without" || tk.text == "on" || tk.text == "ignoring"):
			if next(1).text != "(" {
				t.Errorf("%s: %s without a label list", where, tk.text)
				return
			}
			i += 2
			for ; i < len(toks) && toks[i].text != ")"; i++ {
				if toks[i].kind == 'i' {
					grouped = append(grouped, toks[i].text)
				}
			}
		case tk.kind == 'i' && (slices.Contains(promAggregations, tk.text) || slices.Contains(promFunctions, tk.text)):
			// An aggregation may put its by clause before its argument.
			if next(1).text == "by" || next(1).text == "without" {
				continue
			}
			if next(1).text != "(" {
				t.Errorf("%s: %s without arguments", where, tk.text)
				return
			}
			stack = append(stack, tk.text)
			i++
		case tk.kind == 'i' && slices.Contains(promKeywords, tk.text):
		case tk.kind == 'i':
			if next(1).text == "(" {
				t.Errorf("%s: unknown function %s", where, tk.text)
				return
			}
			name := tk.text
			base := strings.TrimSuffix(name, "_bucket")
			labels, ok := metricLabels[base]
			if !ok || (base != name && !slices.Contains(histograms, base)) || (base == name && slices.Contains(histograms, base)) {
				t.Errorf("%s: %s is not a metric of the contract", where, name)
				if next(1).text == "{" {
					for i < len(toks) && toks[i].text != "}" {
						i++ // skip its matchers
					}
				}
				continue
			}
			used[name] = true
			metrics = append(metrics, base)
			switch {
			case strings.HasSuffix(name, "_total") && !inCall(stack, "rate", "irate", "increase"):
				t.Errorf("%s: counter %s outside rate/increase", where, name)
			case base != name && (!inCall(stack, "rate", "increase") || !inCall(stack, "histogram_quantile")):
				t.Errorf("%s: %s outside histogram_quantile(rate(...))", where, name)
			}
			if next(1).text == "{" {
				i += 2
				for ; i < len(toks) && toks[i].text != "}"; i++ {
					if toks[i].kind != 'i' {
						continue
					}
					label, op, val := toks[i].text, next(1), next(2)
					i += 2
					if slices.Contains(targetLabels, label) {
						continue
					}
					allowed, ok := labels[label]
					if !ok {
						t.Errorf("%s: %s has no label %s", where, name, label)
						continue
					}
					if (op.text == "=" || op.text == "!=") && allowed != nil && !slices.Contains(allowed, val.text) {
						t.Errorf("%s: %s{%s} is never %q", where, name, label, val.text)
					}
				}
			}
		}
	}
	if len(stack) != 0 {
		t.Errorf("%s: unbalanced (: %s", where, expr)
	}
	if len(metrics) == 0 {
		t.Errorf("%s: names no metric: %s", where, expr)
	}
	for _, l := range grouped {
		if l == "le" || slices.Contains(targetLabels, l) {
			continue
		}
		for _, m := range metrics {
			if _, ok := metricLabels[m][l]; !ok {
				t.Errorf("%s: groups by %s, which %s does not have", where, l, m)
			}
		}
	}
	if inExpr := strings.Contains(expr, "_bucket"); inExpr && !slices.Contains(grouped, "le") {
		t.Errorf("%s: histogram_quantile over buckets not grouped by le", where)
	}
}

func inCall(stack []string, names ...string) bool {
	for _, s := range stack {
		if slices.Contains(names, s) {
			return true
		}
	}
	return false
}
