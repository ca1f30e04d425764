package proxy

import (
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"testing"
)

// The token answer is built by hand for speed; clients parse it as JSON,
// so it must be byte for byte what encoding/json writes, headers included,
// whatever the fields hold.
func TestTokenAnswerIsWhatJSONMarshalWrites(t *testing.T) {
	jwt := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ0b2tfMSJ9.c2lnbmF0dXJlLV8"
	for _, r := range []tokenResponse{
		{Token: jwt, AccessToken: jwt, ExpiresIn: 300, IssuedAt: "2026-11-29T06:00:00Z"},
		{Token: jwt, AccessToken: jwt, ExpiresIn: 0, IssuedAt: "2026-11-29T06:00:00Z"},
		{Token: `a"b\c`, AccessToken: "<&>", ExpiresIn: -1, IssuedAt: "é\n"},
		{},
	} {
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		r.write(rec)
		if got := rec.Body.String(); got != string(want) {
			t.Errorf("answer %s, want %s", got, want)
		}
		var back tokenResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &back); err != nil || back != r {
			t.Errorf("answer %s reads back as %+v (%v)", rec.Body, back, err)
		}
		if ct, cl := rec.Header().Get("Content-Type"), rec.Header().Get("Content-Length"); ct != "application/json" || cl != strconv.Itoa(len(want)) {
			t.Errorf("headers Content-Type %q Content-Length %q for %d bytes", ct, cl, len(want))
		}
		if rec.Code != 200 {
			t.Errorf("status %d", rec.Code)
		}
	}
}
