package api

import (
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/tollgate/tollgate"
)

// TestAPIStatusCannotDriftFromTheOneTable: the API kept its own map from
// codes to statuses next to tollgate.HTTPStatus; a code added to one and
// not the other answered differently on the API and everywhere else.
func TestAPIStatusCannotDriftFromTheOneTable(t *testing.T) {
	s := &Server{}
	for _, code := range []string{tollgate.EINVALID, tollgate.ENOTFOUND, tollgate.EUNAUTHORIZED, tollgate.EFORBIDDEN,
		tollgate.ECONFLICT, tollgate.ELIMIT, tollgate.EUNAVAILABLE, tollgate.EINTERNAL, "no-such-code"} {
		w := httptest.NewRecorder()
		got := s.writeError(w, httptest.NewRequest("GET", "/api/v1/x", nil), &tollgate.Error{Code: code, Message: "m"})
		if want := tollgate.HTTPStatus(code); got != want || w.Code != want {
			t.Errorf("%s: status %d (written %d), want %d", code, got, w.Code, want)
		}
	}
	if got := s.writeError(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), errors.New("plain")); got != 500 {
		t.Errorf("a plain error: %d", got)
	}
}
