package load

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// wrk's report read back: the rate, the percentiles, and answers outside
// 2xx as errors (a stream of refusals never passes for throughput).
func TestRunWrk(t *testing.T) {
	wrk := WrkPath()
	if wrk == "" {
		if os.Getenv("TOLLGATE_TEST_REQUIRE_SERVICES") == "1" {
			t.Fatal("wrk is not installed")
		}
		t.Skip("wrk is not installed")
	}
	var heads atomic.Int64
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.Header.Get("Authorization") == "Bearer x" {
			heads.Add(1)
		}
		w.Write([]byte("ok"))
	}))
	defer ok.Close()
	refused := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer refused.Close()

	req, _ := http.NewRequest(http.MethodPost, ok.URL+"/v2/", nil)
	req.Header.Set("Authorization", "Bearer x")
	res, err := RunWrk(context.Background(), wrk, 1, time.Second, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Errors != 0 || res.Rate() <= 0 || res.P50 <= 0 || res.P99 < res.P50 {
		t.Errorf("against a server that answers 200: %+v", res)
	}
	if heads.Load() == 0 {
		t.Error("wrk sent no POST with the header")
	}
	bad, _ := http.NewRequest(http.MethodGet, refused.URL+"/", nil)
	res, err = RunWrk(context.Background(), wrk, 1, time.Second, bad)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || res.Errors != res.Requests || res.Rate() != 0 {
		t.Errorf("against a server that answers 403: %+v, rate %.0f", res, res.Rate())
	}
}

func TestParseWrkDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"812.00us": 812 * time.Microsecond, "1.99ms": 1990 * time.Microsecond, "1.50s": 1500 * time.Millisecond, "2.00m": 2 * time.Minute,
	} {
		if got, err := parseWrkDuration(in); err != nil || got.Round(time.Microsecond) != want {
			t.Errorf("%s: %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseWrkDuration("fast"); err == nil {
		t.Error("no error for \"fast\"")
	}
}
