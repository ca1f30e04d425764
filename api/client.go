package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// Client speaks the management API. Errors the server reports come back
// as *tollgate.Error with Code, Field and Message as the server set them;
// a server that cannot be reached gives an EUNAVAILABLE *tollgate.Error.
type Client struct {
	// BaseURL is the server's root (https://registry.example.com); the
	// client adds /api/v1/.
	BaseURL string
	// Key is the admin key or an account API key. It is sent only as the
	// Authorization header, never put in an error.
	Key string
	// HTTP is the client to use; nil means one with a 30 s timeout.
	HTTP *http.Client
}

// MaxResponseSize caps how much of an answer the client reads.
const MaxResponseSize = 1 << 20

var defaultHTTP = &http.Client{Timeout: 30 * time.Second}

// Info returns what the server says about itself.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	var out Info
	if err := c.do(ctx, "GET", "info", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateAccount signs up an account; the answer holds its default token,
// secret included.
func (c *Client) CreateAccount(ctx context.Context, name string) (*Account, *Token, error) {
	var out CreateAccountResponse
	if err := c.do(ctx, "POST", "accounts", nil, CreateAccountRequest{Name: name}, &out); err != nil {
		return nil, nil, err
	}
	return &out.Account, &out.Token, nil
}

// ListAccounts returns every account, ordered by name (operator only).
func (c *Client) ListAccounts(ctx context.Context) ([]Account, error) {
	var out struct {
		Accounts []Account `json:"accounts"`
	}
	return out.Accounts, c.do(ctx, "GET", "accounts", nil, nil, &out)
}

// GetAccount returns one account.
func (c *Client) GetAccount(ctx context.Context, name string) (*Account, error) {
	return c.account(ctx, "GET", name, "", nil)
}

// SuspendAccount stops every token of the account (operator only).
func (c *Client) SuspendAccount(ctx context.Context, name string) (*Account, error) {
	return c.account(ctx, "POST", name, "suspend", nil)
}

// ResumeAccount lets a suspended account's tokens work again (operator only).
func (c *Client) ResumeAccount(ctx context.Context, name string) (*Account, error) {
	return c.account(ctx, "POST", name, "resume", nil)
}

// RequestPackages asks for package access for the account.
func (c *Client) RequestPackages(ctx context.Context, name string) (*Account, error) {
	return c.account(ctx, "POST", name, "request-packages", nil)
}

// GrantPackages grants the account package access (operator only).
func (c *Client) GrantPackages(ctx context.Context, name string) (*Account, error) {
	return c.account(ctx, "POST", name, "grant-packages", nil)
}

// DenyPackages denies or withdraws package access (operator only).
func (c *Client) DenyPackages(ctx context.Context, name string) (*Account, error) {
	return c.account(ctx, "POST", name, "deny-packages", nil)
}

// SetSubscription replaces the account's entitlements (operator only).
func (c *Client) SetSubscription(ctx context.Context, name string, images, packages []string) (*Account, error) {
	return c.account(ctx, "PUT", name, "subscription", Subscription{Images: nonNil(images), Packages: nonNil(packages)})
}

// SetAccountPolicy sets what every token of the account must meet.
func (c *Client) SetAccountPolicy(ctx context.Context, name string, p AccountPolicy) (*Account, error) {
	return c.account(ctx, "PUT", name, "policy", p)
}

func (c *Client) account(ctx context.Context, method, name, action string, body any) (*Account, error) {
	path := "accounts/" + url.PathEscape(name)
	if action != "" {
		path += "/" + action
	}
	var out Account
	if err := c.do(ctx, method, path, nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateAccountKey issues (or replaces) the account's API key and returns
// it; it is shown only this once (operator only).
func (c *Client) CreateAccountKey(ctx context.Context, name string) (string, error) {
	var out AccountKey
	err := c.do(ctx, "POST", "accounts/"+url.PathEscape(name)+"/keys", nil, nil, &out)
	return out.Key, err
}

// ListTokens returns the account's tokens, oldest first; status ("active",
// "expired", "revoked", "suspended") filters them, "" lists all.
func (c *Client) ListTokens(ctx context.Context, account, status string) (*TokenList, error) {
	q := url.Values{}
	if status != "" {
		q.Set("status", status)
	}
	var out TokenList
	if err := c.do(ctx, "GET", "accounts/"+url.PathEscape(account)+"/tokens", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListUnusedTokens lists the account's tokens unused for at least d (30d,
// 12h): never used and older, or last used before then.
func (c *Client) ListUnusedTokens(ctx context.Context, account, d string) (*TokenList, error) {
	return c.listTokens(ctx, account, url.Values{"unused_for": {d}})
}

// listTokens lists the account's tokens that pass the filters of q.
func (c *Client) listTokens(ctx context.Context, account string, q url.Values) (*TokenList, error) {
	var out TokenList
	if err := c.do(ctx, "GET", "accounts/"+url.PathEscape(account)+"/tokens", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateToken creates a token; the answer holds its secret.
func (c *Client) CreateToken(ctx context.Context, account string, in CreateTokenRequest) (*Token, error) {
	var out Token
	if err := c.do(ctx, "POST", "accounts/"+url.PathEscape(account)+"/tokens", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetToken returns a token; with reveal, its secret too (audited).
func (c *Client) GetToken(ctx context.Context, id string, reveal bool) (*Token, error) {
	var q url.Values
	if reveal {
		q = url.Values{"reveal": {"true"}}
	}
	return c.token(ctx, "GET", id, "", q, nil)
}

// EditToken changes the fields set in in.
func (c *Client) EditToken(ctx context.Context, id string, in EditTokenRequest) (*Token, error) {
	return c.token(ctx, "PATCH", id, "", nil, in)
}

// ExtendToken sets a new expiry: a future RFC 3339 time or date, or "never".
func (c *Client) ExtendToken(ctx context.Context, id, expires string) (*Token, error) {
	return c.token(ctx, "POST", id, "extend", nil, ExtendTokenRequest{ExpiresAt: expires})
}

// RevokeToken revokes a token for good.
func (c *Client) RevokeToken(ctx context.Context, id string) (*Token, error) {
	return c.token(ctx, "POST", id, "revoke", nil, nil)
}

// RevokeAllTokens revokes every token of the account; it returns how many.
func (c *Client) RevokeAllTokens(ctx context.Context, account string) (int, error) {
	return c.allTokens(ctx, account, "revoke-all")
}

// PauseAllTokens pauses every token of the account; it returns how many.
func (c *Client) PauseAllTokens(ctx context.Context, account string) (int, error) {
	return c.allTokens(ctx, account, "pause-all")
}

func (c *Client) allTokens(ctx context.Context, account, action string) (int, error) {
	var out struct {
		Changed int `json:"changed"`
	}
	err := c.do(ctx, "POST", "accounts/"+url.PathEscape(account)+"/tokens/"+action, nil, nil, &out)
	return out.Changed, err
}

// PauseToken stops a token until ResumeToken.
func (c *Client) PauseToken(ctx context.Context, id string) (*Token, error) {
	return c.token(ctx, "POST", id, "pause", nil, nil)
}

// ResumeToken lets a paused token work again.
func (c *Client) ResumeToken(ctx context.Context, id string) (*Token, error) {
	return c.token(ctx, "POST", id, "resume", nil, nil)
}

func (c *Client) token(ctx context.Context, method, id, action string, q url.Values, body any) (*Token, error) {
	path := "tokens/" + url.PathEscape(id)
	if action != "" {
		path += "/" + action
	}
	var out Token
	if err := c.do(ctx, method, path, q, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAudit returns a page of the account's audit log, newest first:
// events older than before (0: from the newest), at most limit of them
// (0: the server's default).
func (c *Client) ListAudit(ctx context.Context, account string, before int64, limit int) (*AuditPage, error) {
	q := url.Values{}
	if before > 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out AuditPage
	if err := c.do(ctx, "GET", "accounts/"+url.PathEscape(account)+"/audit", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// do sends one request to Prefix+path and decodes a 2xx answer into out.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	u, err := url.Parse(strings.TrimRight(c.BaseURL, "/") + Prefix + path)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return tollgate.FieldError("url", "%s is not an http(s) URL", redactURL(c.BaseURL))
	}
	u.RawQuery = q.Encode()
	shown := redact(u)

	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return tollgate.Internal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return tollgate.Internal(err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		// url.Error repeats the URL (userinfo included if any); keep
		// only the cause and name the URL ourselves.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &tollgate.Error{Code: tollgate.EUNAVAILABLE, Message: "cannot reach the tollgate API at " + shown, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseSize+1))
	if err != nil {
		return &tollgate.Error{Code: tollgate.EUNAVAILABLE, Message: "reading the answer of " + shown, Err: err}
	}
	if len(data) > MaxResponseSize {
		return tollgate.Errorf(tollgate.EINTERNAL, "the answer of %s is larger than %d MiB", shown, MaxResponseSize>>20)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return responseError(resp.StatusCode, data, shown)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &tollgate.Error{Code: tollgate.EINTERNAL, Message: "the answer of " + shown + " is not the expected JSON", Err: err}
	}
	return nil
}

// responseError restores the *tollgate.Error the server sent.
func responseError(status int, data []byte, shown string) error {
	var eb ErrorBody
	if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
		e := &tollgate.Error{Code: eb.Error.Code, Field: eb.Error.Field, Message: eb.Error.Message}
		// The message on the wire is prefixed with the field; Error()
		// adds it back.
		if e.Field != "" {
			e.Message = strings.TrimPrefix(e.Message, e.Field+": ")
		}
		return e
	}
	return tollgate.Errorf(codeOf(status), "%s answered %d %s", shown, status, http.StatusText(status))
}

// redact returns u as text without its userinfo or query.
func redact(u *url.URL) string {
	v := *u
	v.User = nil
	v.RawQuery = ""
	v.Fragment = ""
	return v.String()
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(an unparsable URL)"
	}
	return redact(u)
}
