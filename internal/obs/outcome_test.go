package obs

import (
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testenv"
)

// TestEveryRequestIsLogged: a handler that aborts, panics or sends less
// than it declared still gets its access line, with the bytes it sent and
// why it ended; one that completes says so.
func TestEveryRequestIsLogged(t *testing.T) {
	for _, tc := range []struct {
		name    string
		h       http.HandlerFunc
		outcome string
		status  float64
		bytes   float64
	}{
		{"Complete", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }, OutcomeComplete, 200, 5},
		{"AbortedMidBody", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "half")
			panic(http.ErrAbortHandler)
		}, OutcomeAborted, 200, 4},
		{"AbortedBeforeHeaders", func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) }, OutcomeAborted, 0, 0},
		{"Truncated", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "half")
		}, OutcomeTruncated, 200, 4},
		{"Panic", func(w http.ResponseWriter, r *http.Request) { panic("bug") }, OutcomePanic, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs testenv.Buffer
			o := &Observer{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Metrics: NewMetrics()}
			srv := httptest.NewUnstartedServer(o.Wrap(tc.h))
			srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the panics net/http reports
			srv.Start()
			defer srv.Close()
			if resp, err := http.Get(srv.URL + "/v2/x/blobs/y"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			var rec map[string]any
			for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if line := strings.TrimSpace(logs.String()); line != "" {
					if err := json.Unmarshal([]byte(line), &rec); err != nil {
						t.Fatalf("%v: %s", err, line)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no access line")
				}
			}
			if rec["outcome"] != tc.outcome || rec["status"] != tc.status || rec["bytes"] != tc.bytes {
				t.Fatalf("line %v; want outcome %s status %v bytes %v", rec, tc.outcome, tc.status, tc.bytes)
			}
		})
	}
}
