package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/obs"
	"github.com/tollgate/tollgate/internal/ratelimit"
)

// Server serves the management API. Every write goes through Service,
// which enforces the rules; Server decides who may ask for what.
//
// Two kinds of callers authenticate with "Authorization: Bearer KEY":
//
//   - the operator, with AdminKey, who may do everything (actor "operator");
//   - an account, with its API key (tgk_...), which may read itself, manage
//     its own tokens, request package access and read its own audit log
//     (actor "account:NAME"). Anything about another account, or another
//     account's token, answers 404 exactly as if it did not exist.
type Server struct {
	Service *tollgate.Service
	// AdminKey is the operator's key. Empty disables operator access.
	AdminKey string
	// PublicURL is the base URL clients use (https://registry.example.com).
	PublicURL string
	// RegistryService is the service name of the registry's Bearer
	// challenges, reported by /api/v1/info.
	RegistryService string
	// PackageRepos are the configured package repositories, reported by
	// /api/v1/info for the set-up commands.
	PackageRepos []tollgate.PackageRepo
	// Logger receives the causes of internal errors (the request line is
	// obs.Observer's); nil discards.
	Logger *slog.Logger
	// Limiter, if set, limits failed authentications per client address
	// (obs.ClientIP), shared with the registry routes. Only a presented
	// key that does not authenticate is charged, and only such a key is
	// refused (429 with Retry-After) once the address's bucket is empty:
	// a request with a valid key always passes, whoever else fails.
	Limiter *ratelimit.Limiter
	// Metrics, if set, counts refusals of the limiter.
	Metrics *obs.Metrics
}

// ActorOperator is the audit actor of the admin key.
const ActorOperator = "operator"

// actor is who is calling: the operator (account nil) or one account.
type actor struct {
	name    string
	account *tollgate.Account
}

func (a *actor) operator() bool { return a.account == nil }

// handler serves one authenticated route. It returns the status and body
// of a success, or an error for the envelope.
type handler func(r *http.Request, who *actor) (int, any, error)

type route struct {
	method, path string
	operatorOnly bool
	h            handler
}

// Handler returns the API's HTTP handler, which serves /api/v1/ and answers
// every other path with a JSON 404.
func (s *Server) Handler() http.Handler {
	const p = "/api/v1"
	routes := []route{
		{"GET", p + "/info", false, s.info},
		{"POST", p + "/accounts", true, s.createAccount},
		{"GET", p + "/accounts", true, s.listAccounts},
		{"GET", p + "/accounts/{name}", false, s.getAccount},
		{"POST", p + "/accounts/{name}/suspend", true, s.accountAction((*tollgate.Service).SuspendAccount)},
		{"POST", p + "/accounts/{name}/resume", true, s.accountAction((*tollgate.Service).ResumeAccount)},
		{"POST", p + "/accounts/{name}/grant-packages", true, s.accountAction((*tollgate.Service).GrantPackages)},
		{"POST", p + "/accounts/{name}/deny-packages", true, s.accountAction((*tollgate.Service).DenyPackages)},
		{"POST", p + "/accounts/{name}/request-packages", false, s.accountAction((*tollgate.Service).RequestPackages)},
		{"PUT", p + "/accounts/{name}/subscription", true, s.setSubscription},
		{"PUT", p + "/accounts/{name}/policy", true, s.setAccountPolicy},
		{"POST", p + "/accounts/{name}/keys", true, s.createAccountKey},
		{"GET", p + "/accounts/{name}/tokens", false, s.listTokens},
		{"POST", p + "/accounts/{name}/tokens", false, s.createToken},
		{"GET", p + "/accounts/{name}/audit", false, s.listAudit},
		{"GET", p + "/tokens/{id}", false, s.getToken},
		{"PATCH", p + "/tokens/{id}", false, s.editToken},
		{"DELETE", p + "/tokens/{id}", false, s.revokeToken},
		{"POST", p + "/tokens/{id}/extend", false, s.extendToken},
		{"POST", p + "/tokens/{id}/revoke", false, s.revokeToken},
		{"POST", p + "/tokens/{id}/pause", false, s.pauseToken},
		{"GET", p + "/tokens/{id}/refusals", false, s.tokenRefusals}, // policy.go
		{"POST", p + "/accounts/{name}/tokens/revoke-all", false, s.revokeAllTokens},
		{"POST", p + "/accounts/{name}/tokens/pause-all", false, s.pauseAllTokens},
		{"POST", p + "/tokens/{id}/resume", false, s.resumeToken},
		{"POST", p + "/tokens/{id}/rotate", false, s.rotateToken}, // rotation.go
	}
	routes = append(routes, s.userRoutes()...)
	routes = append(routes, s.usageRoutes()...)
	routes = append(routes, s.webhookRoutes()...) // webhooks.go
	routes = append(routes, s.trustRoutes()...)   // trust.go
	mux := http.NewServeMux()
	allowed := map[string][]string{}
	var paths []string
	for _, rt := range routes {
		mux.Handle(rt.method+" "+rt.path, s.serve(rt))
		if _, ok := allowed[rt.path]; !ok {
			paths = append(paths, rt.path)
		}
		allowed[rt.path] = append(allowed[rt.path], rt.method)
		if rt.method == "GET" {
			allowed[rt.path] = append(allowed[rt.path], "HEAD")
		}
	}
	// A method-less pattern is less specific than the method ones, so it
	// only catches the methods a path does not serve.
	for _, path := range paths {
		allow := strings.Join(allowed[path], ", ")
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeJSON(w, http.StatusMethodNotAllowed, ErrorBody{Error: ErrorDetail{
				Code: tollgate.EINVALID, Message: "method " + r.Method + " not allowed; use " + allow}})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, ErrorBody{Error: ErrorDetail{
			Code: tollgate.ENOTFOUND, Message: "no such API endpoint"}})
	})
	return mux
}

// serve wraps a route: authenticate, check operator-only routes, run the
// handler, write its answer. The request's one access log line is
// obs.Observer's; serve adds the actor to it.
func (s *Server) serve(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, body, err := func() (int, any, error) {
			who, err := s.authenticate(r)
			if err != nil {
				if r.Header.Get("Authorization") != "" && tollgate.ErrorCode(err) == tollgate.EUNAUTHORIZED {
					return s.failed(w, r, err)
				}
				return 0, nil, err
			}
			obs.FromContext(r.Context()).Actor = who.name
			if rt.operatorOnly && !who.operator() {
				return 0, nil, tollgate.Errorf(tollgate.EFORBIDDEN, "only the operator may do this")
			}
			return rt.h(r, who)
		}()
		if err != nil {
			s.writeError(w, r, err)
		} else {
			writeJSON(w, status, body)
		}
	})
}

// failed charges a presented key that did not authenticate to the
// client's address, and refuses it with 429 once the address has no
// failures left; err is the 401 it gets otherwise.
func (s *Server) failed(w http.ResponseWriter, r *http.Request, err error) (int, any, error) {
	info := obs.FromContext(r.Context())
	info.Reason = "bad_credentials"
	if blocked, retry := s.Limiter.Take(r.Context(), obs.ClientIP(r)); blocked {
		info.Reason = "rate_limited"
		s.Metrics.RateLimited(info.Route)
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(retry/time.Second))))
		return http.StatusTooManyRequests, ErrorBody{Error: ErrorDetail{
			Code: tollgate.ELIMIT, Message: "too many failed authentications, retry later"}}, nil
	}
	return 0, nil, err
}

// logPath is r's path for the logs, through the one redactor: someone
// will paste a token where its id belongs.
func logPath(r *http.Request) string { return obs.RedactPath(r.URL.Path) }

func (s *Server) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) now() time.Time {
	if s.Service.Now != nil {
		return s.Service.Now()
	}
	return time.Now()
}

// authenticate finds who is calling from the Bearer key.
func (s *Server) authenticate(r *http.Request) (*actor, error) {
	unauthorized := tollgate.Errorf(tollgate.EUNAUTHORIZED, "missing or invalid API key")
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	key = strings.TrimSpace(key)
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return nil, unauthorized
	}
	if s.AdminKey != "" {
		// Hashing first makes the comparison constant-time in the length too.
		a, b := sha256.Sum256([]byte(key)), sha256.Sum256([]byte(s.AdminKey))
		if subtle.ConstantTimeCompare(a[:], b[:]) == 1 {
			return &actor{name: ActorOperator}, nil
		}
	}
	if !strings.HasPrefix(key, tollgate.AccountKeyPrefix) {
		return nil, unauthorized
	}
	acct, err := s.Service.AccountForKey(r.Context(), key)
	if err != nil {
		if tollgate.ErrorCode(err) == tollgate.EUNAUTHORIZED {
			return nil, unauthorized
		}
		return nil, err
	}
	return &actor{name: tollgate.AccountActor(acct.Name), account: acct}, nil
}

// account checks that who may see the named account. To an account key,
// every other account answers exactly like one that does not exist.
func account(who *actor, name string) error {
	if who.operator() || who.account.Name == name {
		return nil
	}
	return tollgate.Errorf(tollgate.ENOTFOUND, "account %s not found", name)
}

// token loads a token and its account, if who may see it; another
// account's token answers exactly like one that does not exist.
func (s *Server) token(ctx context.Context, who *actor, id string) (*tollgate.Token, *tollgate.Account, error) {
	t, a, err := s.Service.Token(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if !who.operator() && t.AccountID != who.account.ID {
		return nil, nil, tollgate.Errorf(tollgate.ENOTFOUND, "token %s not found", id)
	}
	return t, a, nil
}

func (s *Server) info(r *http.Request, _ *actor) (int, any, error) {
	var host string
	if u, err := url.Parse(s.PublicURL); err == nil {
		host = u.Host
	}
	repos := make([]PackageRepository, 0, len(s.PackageRepos))
	for _, r := range s.PackageRepos {
		pr := PackageRepository{Name: r.Name, Format: string(r.Format), Suite: r.Suite, Component: r.Component}
		if r.KeyFile != "" {
			pr.KeyURL = strings.TrimSuffix(s.PublicURL, "/") + tollgate.PackageKeyPath(r.Format, r.Name, r.KeyFile)
		}
		repos = append(repos, pr)
	}
	cmds := []SetupCommand{}
	for _, c := range tollgate.SetupCommands(s.PublicURL, "<TOKEN>", tollgate.ScopeImages|tollgate.ScopePackages, s.PackageRepos) {
		cmds = append(cmds, SetupCommand{Title: c.Title, Text: c.Text})
	}
	return http.StatusOK, Info{PublicURL: s.PublicURL, Service: s.RegistryService, RegistryHost: host, PackageRepositories: repos, SetupCommands: cmds}, nil
}

func (s *Server) createAccount(r *http.Request, who *actor) (int, any, error) {
	var in CreateAccountRequest
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	var out CreateAccountResponse
	ctx := tollgate.BeforeCommit(r.Context(), func(t *tollgate.Token, a *tollgate.Account) error {
		out = CreateAccountResponse{Account: fromAccount(a), Token: fromToken(t, a, s.now())}
		return encodable(out)
	})
	_, _, secret, err := s.Service.CreateAccount(ctx, who.name, in.Name)
	if err != nil {
		return 0, nil, err
	}
	out.Token.Secret = secret.Reveal() // shown once, to the operator who signed the account up
	return http.StatusCreated, out, nil
}

func (s *Server) listAccounts(r *http.Request, _ *actor) (int, any, error) {
	as, err := s.Service.ListAccounts(r.Context())
	if err != nil {
		return 0, nil, err
	}
	out := struct {
		Accounts []Account `json:"accounts"`
	}{Accounts: make([]Account, 0, len(as))}
	for _, a := range as {
		out.Accounts = append(out.Accounts, fromAccount(a))
	}
	return http.StatusOK, out, nil
}

func (s *Server) getAccount(r *http.Request, who *actor) (int, any, error) {
	name := r.PathValue("name")
	if err := account(who, name); err != nil {
		return 0, nil, err
	}
	a, err := s.Service.Account(r.Context(), name)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, fromAccount(a), nil
}

// accountAction serves the bodyless POSTs that change an account's state.
func (s *Server) accountAction(fn func(*tollgate.Service, context.Context, string, string) (*tollgate.Account, error)) handler {
	return func(r *http.Request, who *actor) (int, any, error) {
		name := r.PathValue("name")
		if err := account(who, name); err != nil {
			return 0, nil, err
		}
		a, err := fn(s.Service, r.Context(), who.name, name)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, fromAccount(a), nil
	}
}

func (s *Server) setSubscription(r *http.Request, who *actor) (int, any, error) {
	var in Subscription
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	a, err := s.Service.SetSubscription(r.Context(), who.name, r.PathValue("name"),
		tollgate.Subscription{Images: in.Images, Packages: in.Packages})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, fromAccount(a), nil
}

func (s *Server) setAccountPolicy(r *http.Request, who *actor) (int, any, error) {
	var in AccountPolicy
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	p, err := in.ToAccountPolicy()
	if err != nil {
		return 0, nil, err
	}
	a, err := s.Service.SetAccountPolicy(r.Context(), who.name, r.PathValue("name"), p)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, fromAccount(a), nil
}

func (s *Server) createAccountKey(r *http.Request, who *actor) (int, any, error) {
	key, err := s.Service.CreateAccountKey(r.Context(), who.name, r.PathValue("name"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, AccountKey{Key: key.Reveal()}, nil
}

func (s *Server) listTokens(r *http.Request, who *actor) (int, any, error) {
	name := r.PathValue("name")
	if err := account(who, name); err != nil {
		return 0, nil, err
	}
	expiring, err := expiringFilter(r) // rotation.go
	if err != nil {
		return 0, nil, err
	}
	unused, err := durationParam(r, "unused_for")
	if err != nil {
		return 0, nil, err
	}
	stale, err := staleFilter(r, s.Service, name) // policy.go
	if err != nil {
		return 0, nil, err
	}
	status := tollgate.TokenStatus(r.URL.Query().Get("status"))
	switch status {
	case "", tollgate.TokenActive, tollgate.TokenExpired, tollgate.TokenRevoked, tollgate.TokenSuspended, tollgate.TokenPaused, tollgate.TokenScheduled:
	default:
		return 0, nil, tollgate.FieldError("status", "must be one of active, expired, revoked, suspended, paused, scheduled")
	}
	// All of them: the active count is over every token, whatever the filter.
	toks, a, err := s.Service.ListTokens(r.Context(), name, "")
	if err != nil {
		return 0, nil, err
	}
	now := s.now()
	out := TokenList{Tokens: []Token{}, Limit: tollgate.MaxActiveTokens}
	for _, t := range toks {
		if t.RevokedAt == nil && !t.Ephemeral() {
			out.Active++
		}
		if expiring > 0 && !t.ExpiringWithin(now, expiring) {
			continue
		}
		if unused > 0 && !t.UnusedFor(now, unused) {
			continue
		}
		if !stale(t) {
			continue
		}
		if status == "" || t.Status(a, now) == status {
			out.Tokens = append(out.Tokens, fromToken(t, a, now))
		}
	}
	return http.StatusOK, out, nil
}

// createTokenBody is what POST .../tokens accepts; pointers tell absent
// and null from empty.
type createTokenBody struct {
	Name             string    `json:"name"`
	Description      string    `json:"description"`
	Scope            *[]string `json:"scope"`
	ExpiresAt        *string   `json:"expires_at"`
	RestrictImages   []string  `json:"restrict_images"`
	RestrictPackages []string  `json:"restrict_packages"`
	Networks         []string  `json:"networks"`
	ValidFrom        *string   `json:"valid_from"`
	MaxPulls         int64     `json:"max_pulls"`
	MaxBytes         int64     `json:"max_bytes"`
}

func (s *Server) createToken(r *http.Request, who *actor) (int, any, error) {
	name := r.PathValue("name")
	if err := account(who, name); err != nil {
		return 0, nil, err
	}
	var in createTokenBody
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	tc := tollgate.TokenCreate{Account: name, Name: in.Name, Description: in.Description,
		Scope: tollgate.ScopeImages, Expiry: tollgate.Expiry{Never: true}}
	if in.Scope != nil {
		sc, err := tollgate.ParseScopeNames(*in.Scope)
		if err != nil {
			return 0, nil, err
		}
		tc.Scope = sc
	}
	if in.ExpiresAt != nil {
		e, err := tollgate.ParseExpiry(*in.ExpiresAt)
		if err != nil {
			return 0, nil, err
		}
		tc.Expiry = e
	}
	tc.Policy.Images, tc.Policy.Packages = in.RestrictImages, in.RestrictPackages
	tc.Policy.MaxPulls, tc.Policy.MaxBytes = in.MaxPulls, in.MaxBytes
	var err error
	if tc.Policy.Networks, err = tollgate.ParseNetworks("networks", in.Networks); err != nil {
		return 0, nil, err
	}
	if in.ValidFrom != nil && *in.ValidFrom != "" {
		from, err := ParseValidFrom(*in.ValidFrom)
		if err != nil {
			return 0, nil, err
		}
		tc.Policy.ValidFrom = &from
	}
	ctx, out := s.tokenAnswer(r.Context())
	_, secret, err := s.Service.CreateToken(ctx, who.name, tc)
	if err != nil {
		return 0, nil, err
	}
	out.Secret = secret.Reveal() // shown once, to whoever created it
	return http.StatusCreated, out, nil
}

func (s *Server) getToken(r *http.Request, who *actor) (int, any, error) {
	id := r.PathValue("id")
	reveal := false
	if v := r.URL.Query().Get("reveal"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return 0, nil, tollgate.FieldError("reveal", "must be true or false")
		}
		reveal = b
	}
	t, a, err := s.token(r.Context(), who, id)
	if err != nil {
		return 0, nil, err
	}
	out := fromToken(t, a, s.now())
	if reveal {
		secret, err := s.Service.RevealToken(r.Context(), who.name, id)
		if err != nil {
			return 0, nil, err
		}
		out.Secret = secret.Reveal() // explicitly asked for, and audited
	}
	return http.StatusOK, out, nil
}

// editTokenBody is what PATCH accepts: raw values, so that an absent key
// (nil) differs from null.
type editTokenBody struct {
	Name             json.RawMessage `json:"name"`
	Description      json.RawMessage `json:"description"`
	Scope            json.RawMessage `json:"scope"`
	ExpiresAt        json.RawMessage `json:"expires_at"`
	RestrictImages   json.RawMessage `json:"restrict_images"`
	RestrictPackages json.RawMessage `json:"restrict_packages"`
	Networks         json.RawMessage `json:"networks"`
	ValidFrom        json.RawMessage `json:"valid_from"`
	MaxPulls         json.RawMessage `json:"max_pulls"`
	MaxBytes         json.RawMessage `json:"max_bytes"`
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

func (s *Server) editToken(r *http.Request, who *actor) (int, any, error) {
	id := r.PathValue("id")
	if _, _, err := s.token(r.Context(), who, id); err != nil {
		return 0, nil, err
	}
	var in editTokenBody
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	var edit tollgate.TokenEdit
	str := func(field string, raw json.RawMessage) (*string, error) {
		if raw == nil {
			return nil, nil
		}
		if isNull(raw) {
			return nil, tollgate.FieldError(field, "must be a string, not null")
		}
		var v string
		if err := decodeField(field, raw, &v); err != nil {
			return nil, err
		}
		return &v, nil
	}
	var err error
	if edit.Name, err = str("name", in.Name); err != nil {
		return 0, nil, err
	}
	if edit.Description, err = str("description", in.Description); err != nil {
		return 0, nil, err
	}
	if in.Scope != nil {
		if isNull(in.Scope) {
			return 0, nil, tollgate.FieldError("scope", "must be an array of strings, not null")
		}
		var names []string
		if err := decodeField("scope", in.Scope, &names); err != nil {
			return 0, nil, err
		}
		sc, err := tollgate.ParseScopeNames(names)
		if err != nil {
			return 0, nil, err
		}
		edit.Scope = &sc
	}
	if in.ExpiresAt != nil {
		e := tollgate.Expiry{Never: true} // null
		if !isNull(in.ExpiresAt) {
			var v string
			if err := decodeField("expires_at", in.ExpiresAt, &v); err != nil {
				return 0, nil, err
			}
			if e, err = tollgate.ParseExpiry(v); err != nil {
				return 0, nil, err
			}
		}
		edit.Expiry = &e
	}
	list := func(field string, raw json.RawMessage) (*[]string, error) {
		if raw == nil {
			return nil, nil
		}
		var v []string // null clears, as [] does
		if !isNull(raw) {
			if err := decodeField(field, raw, &v); err != nil {
				return nil, err
			}
		}
		return &v, nil
	}
	if edit.RestrictImages, err = list("restrict_images", in.RestrictImages); err != nil {
		return 0, nil, err
	}
	if edit.RestrictPackages, err = list("restrict_packages", in.RestrictPackages); err != nil {
		return 0, nil, err
	}
	nets, err := list("networks", in.Networks)
	if err != nil {
		return 0, nil, err
	}
	if nets != nil {
		ns, err := tollgate.ParseNetworks("networks", *nets)
		if err != nil {
			return 0, nil, err
		}
		edit.Networks = &ns
	}
	for field, pair := range map[string]struct {
		raw json.RawMessage
		dst **int64
	}{"max_pulls": {in.MaxPulls, &edit.MaxPulls}, "max_bytes": {in.MaxBytes, &edit.MaxBytes}} {
		if pair.raw == nil {
			continue
		}
		var v int64 // null: no cap
		if !isNull(pair.raw) {
			if err := decodeField(field, pair.raw, &v); err != nil {
				return 0, nil, err
			}
		}
		*pair.dst = &v
	}
	if in.ValidFrom != nil {
		from := time.Time{} // null or "": no date
		v, err := str("valid_from", in.ValidFrom)
		if isNull(in.ValidFrom) {
			v, err = nil, nil
		}
		if err != nil {
			return 0, nil, err
		}
		if v != nil && *v != "" {
			if from, err = ParseValidFrom(*v); err != nil {
				return 0, nil, err
			}
		}
		edit.ValidFrom = &from
	}
	ctx, out := s.tokenAnswer(r.Context())
	if _, err := s.Service.EditToken(ctx, who.name, id, edit); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, out, nil
}

func (s *Server) extendToken(r *http.Request, who *actor) (int, any, error) {
	id := r.PathValue("id")
	if _, _, err := s.token(r.Context(), who, id); err != nil {
		return 0, nil, err
	}
	var in struct {
		ExpiresAt json.RawMessage `json:"expires_at"`
	}
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	var e tollgate.Expiry
	switch {
	case in.ExpiresAt == nil:
		_, err := tollgate.ParseExpiry("") // the error that says what to send
		return 0, nil, err
	case isNull(in.ExpiresAt):
		e.Never = true
	default:
		var v string
		if err := decodeField("expires_at", in.ExpiresAt, &v); err != nil {
			return 0, nil, err
		}
		var err error
		if e, err = tollgate.ParseExpiry(v); err != nil {
			return 0, nil, err
		}
	}
	ctx, out := s.tokenAnswer(r.Context())
	if _, err := s.Service.ExtendToken(ctx, who.name, id, e); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, out, nil
}

// AllTokensResult answers revoke-all and pause-all: how many tokens changed.
type allTokensResult struct {
	Changed int `json:"changed"`
}

func (s *Server) revokeAllTokens(r *http.Request, who *actor) (int, any, error) {
	return s.allTokens(r, who, s.Service.RevokeAllTokens)
}

func (s *Server) pauseAllTokens(r *http.Request, who *actor) (int, any, error) {
	return s.allTokens(r, who, s.Service.PauseAllTokens)
}

func (s *Server) allTokens(r *http.Request, who *actor, do func(ctx context.Context, actor, account string) (int, error)) (int, any, error) {
	name := r.PathValue("name")
	if err := account(who, name); err != nil {
		return 0, nil, err
	}
	n, err := do(r.Context(), who.name, name)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, allTokensResult{Changed: n}, nil
}

func (s *Server) pauseToken(r *http.Request, who *actor) (int, any, error) {
	return s.tokenAction(r, who, s.Service.PauseToken)
}

func (s *Server) resumeToken(r *http.Request, who *actor) (int, any, error) {
	return s.tokenAction(r, who, s.Service.ResumeToken)
}

// tokenAction runs a body-less write on the token named in the path.
func (s *Server) tokenAction(r *http.Request, who *actor, do func(ctx context.Context, actor, id string) (*tollgate.Token, error)) (int, any, error) {
	id := r.PathValue("id")
	if _, _, err := s.token(r.Context(), who, id); err != nil {
		return 0, nil, err
	}
	ctx, out := s.tokenAnswer(r.Context())
	if _, err := do(ctx, who.name, id); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, out, nil
}

func (s *Server) revokeToken(r *http.Request, who *actor) (int, any, error) {
	return s.tokenAction(r, who, s.Service.RevokeToken)
}

// tokenAnswer returns ctx set to render the answer of a token write into
// out inside the write's transaction (tollgate.BeforeCommit): with its
// account as the write leaves it, read nowhere after the commit, and
// encoded before the commit, so that an answer that cannot be made rolls
// the write back instead of answering 500 over a committed change.
func (s *Server) tokenAnswer(ctx context.Context) (context.Context, *Token) {
	out := new(Token)
	return tollgate.BeforeCommit(ctx, func(t *tollgate.Token, a *tollgate.Account) error {
		*out = fromToken(t, a, s.now())
		return encodable(out)
	}), out
}

// encodable checks that v, an answer, encodes; the error is internal.
func encodable(v any) error {
	if _, err := json.Marshal(v); err != nil {
		return tollgate.Internal(fmt.Errorf("api: answer does not encode: %w", err))
	}
	return nil
}

func (s *Server) listAudit(r *http.Request, who *actor) (int, any, error) {
	name := r.PathValue("name")
	if err := account(who, name); err != nil {
		return 0, nil, err
	}
	q := r.URL.Query()
	var page tollgate.AuditPage
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, nil, tollgate.FieldError("before", "must be an event id (an integer)")
		}
		page.Before = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, nil, tollgate.FieldError("limit", "must be an integer")
		}
		if n < 1 {
			return 0, nil, tollgate.FieldError("limit", "must be at least 1")
		}
		page.Limit = n
	}
	if page.Limit == 0 {
		page.Limit = DefaultAuditLimit
	}
	// Ask for one more than the page to know whether there is a next one.
	limit := page.Limit
	if limit < tollgate.MaxAuditPage {
		page.Limit++
	}
	evs, err := s.Service.ListAudit(r.Context(), name, page)
	if err != nil {
		return 0, nil, err
	}
	out := AuditPage{Events: make([]AuditEvent, 0, min(len(evs), limit))}
	for _, e := range evs[:min(len(evs), limit)] {
		out.Events = append(out.Events, fromAuditEvent(e))
	}
	if len(evs) > limit || (len(evs) == limit && limit == tollgate.MaxAuditPage) {
		next := out.Events[len(out.Events)-1].ID
		out.NextBefore = &next
	}
	return http.StatusOK, out, nil
}

// DefaultAuditLimit is the page size of the audit log when none is asked.
const DefaultAuditLimit = 50
