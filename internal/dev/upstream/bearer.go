package upstream

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// bearerGate makes the registry behave like one behind the Docker token
// protocol: /v2/ requests need a bearer token for their repository, which
// its own /auth/token endpoint hands out against the Basic credentials.
// That is what tollgate must do on its side as an upstream client.
type bearerGate struct {
	creds  BasicAuth
	realm  string
	mu     sync.Mutex
	tokens map[string]string // token → repository
	issued atomic.Int64
}

func (bg *bearerGate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/auth/token" {
			bg.serveToken(w, r)
			return
		}
		repo := repoOf(r.URL.Path)
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		bg.mu.Lock()
		granted, known := bg.tokens[tok]
		bg.mu.Unlock()
		if !ok || !known || (repo != "" && granted != repo) {
			ch := `Bearer realm="` + bg.realm + `",service="upstream"`
			if repo != "" {
				ch += `,scope="repository:` + repo + `:pull"`
			}
			w.Header().Set("WWW-Authenticate", ch)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`+"\n")
			return
		}
		r.Header.Del("Authorization")
		next.ServeHTTP(w, r)
	})
}

func (bg *bearerGate) serveToken(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(user), []byte(bg.creds.User)) != 1 ||
		subtle.ConstantTimeCompare([]byte(pass), []byte(bg.creds.Password)) != 1 {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	repo := ""
	if s := r.URL.Query().Get("scope"); strings.HasPrefix(s, "repository:") {
		repo = strings.TrimPrefix(s, "repository:")
		repo = repo[:strings.LastIndex(repo, ":")]
	}
	b := make([]byte, 16)
	rand.Read(b)
	tok := hex.EncodeToString(b)
	bg.mu.Lock()
	bg.tokens[tok] = repo
	bg.mu.Unlock()
	bg.issued.Add(1)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"token": tok, "expires_in": 300})
}

// repoOf is the repository of a /v2/NAME/{manifests,blobs,tags}/... path.
func repoOf(p string) string {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return ""
	}
	for _, s := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.LastIndex(rest, s); i > 0 {
			return rest[:i]
		}
	}
	return ""
}

// TokensIssued counts the bearer tokens the registry's token endpoint
// handed out (0 unless Options.Bearer).
func (r *Registry) TokensIssued() int64 {
	if r.bearer == nil {
		return 0
	}
	return r.bearer.issued.Load()
}
