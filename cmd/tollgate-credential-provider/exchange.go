package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// The RFC 8693 names tollgate's exchange speaks.
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeJWT       = "urn:ietf:params:oauth:token-type:jwt"
	tokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"

	maxResponseBytes    = 64 << 10
	maxDescriptionChars = 300
)

// credential is what the exchange returned: a tollgate credential and
// how long it lives (0 when tollgate did not say).
type credential struct {
	token    string
	lifetime time.Duration
}

// exchange trades subject (a JWT) for a tollgate credential at
// POST {url}/oauth2/token, within o.timeout.
func exchange(ctx context.Context, o *options, subject string) (*credential, error) {
	client, err := httpClient(o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	endpoint := o.url.JoinPath("oauth2", "token")
	form := url.Values{
		"grant_type":         {grantTokenExchange},
		"subject_token":      {subject},
		"subject_token_type": {tokenTypeJWT},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", name)
	resp, err := client.Do(req)
	if err != nil {
		return nil, transportError(endpoint, err, o.timeout)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, transportError(endpoint, err, o.timeout)
	}
	if len(body) > maxResponseBytes {
		return nil, fmt.Errorf("tollgate at %s answered %d with more than %d bytes", endpoint, resp.StatusCode, maxResponseBytes)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, refusal(endpoint, resp, body, subject)
	}
	return parseCredential(endpoint, body)
}

// httpClient verifies TLS (the system's roots plus --ca-file) and follows
// no redirect: the identity token goes to the address configured or
// nowhere.
func httpClient(o *options) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file %s: %w", o.caFile, errors.Unwrap(err))
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", o.caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// transportError says why tollgate could not be asked, with a hint where
// there is an obvious one.
func transportError(endpoint *url.URL, err error, timeout time.Duration) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("tollgate at %s did not answer within %s (--timeout)", endpoint, timeout)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("tollgate at %s: its TLS certificate is signed by an unknown authority (give the CA with --ca-file)", endpoint)
	case errors.As(err, &hostErr):
		return fmt.Errorf("tollgate at %s: its TLS certificate is not for %s", endpoint, endpoint.Hostname())
	}
	return fmt.Errorf("tollgate at %s is unreachable: %v", endpoint, err)
}

// oauthError is RFC 6749 §5.2's error response.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// refusal turns a non-200 answer into an error a person can act on.
func refusal(endpoint *url.URL, resp *http.Response, body []byte, subject string) error {
	status := fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 {
		if to, err := endpoint.Parse(loc); err == nil {
			loc = (&url.URL{Scheme: to.Scheme, Host: to.Host, Path: to.Path}).String()
		}
		return fmt.Errorf("tollgate at %s answered %s to %s: set --url to tollgate's own address (redirects are not followed)", endpoint, status, clean(loc, subject))
	}
	var oe oauthError
	if json.Unmarshal(body, &oe) != nil || oe.Error == "" {
		if resp.StatusCode >= 500 {
			return fmt.Errorf("tollgate at %s answered %s; try again later", endpoint, status)
		}
		return fmt.Errorf("tollgate at %s answered %s, not an OAuth token response: is --url tollgate's address?", endpoint, status)
	}
	msg := fmt.Sprintf("tollgate refused the token exchange (%d %s)", resp.StatusCode, clean(oe.Error, subject))
	if d := clean(oe.Description, subject); d != "" {
		msg += ": " + d
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		msg += "; rate limited"
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			msg += ", retry after " + clean(ra, subject) + "s"
		}
	}
	return errors.New(msg)
}

// clean makes text from the server safe for kubelet's log: one line,
// bounded, and never the token we sent even if a server echoed it.
func clean(s, subject string) string {
	if subject != "" {
		s = strings.ReplaceAll(s, subject, "[token]")
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = oneLine(s)
	if r := []rune(s); len(r) > maxDescriptionChars {
		s = string(r[:maxDescriptionChars]) + "…"
	}
	return s
}

// parseCredential checks a 200 answer is the token exchange response.
func parseCredential(endpoint *url.URL, body []byte) (*credential, error) {
	var tr struct {
		AccessToken     string  `json:"access_token"`
		IssuedTokenType string  `json:"issued_token_type"`
		ExpiresIn       float64 `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return nil, fmt.Errorf("tollgate at %s answered 200 with no token exchange response: is --url tollgate's address?", endpoint)
	}
	if tr.AccessToken == "" || strings.IndexFunc(tr.AccessToken, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return nil, fmt.Errorf("tollgate at %s answered 200 without a usable access_token", endpoint)
	}
	if tr.IssuedTokenType != tokenTypeAccess {
		return nil, fmt.Errorf("tollgate at %s issued a token of type %q, want %s", endpoint, clean(tr.IssuedTokenType, ""), tokenTypeAccess)
	}
	lifetime := time.Duration(0)
	if tr.ExpiresIn > 0 {
		lifetime = time.Duration(min(tr.ExpiresIn, float64(24*time.Hour/time.Second))) * time.Second
	}
	return &credential{token: tr.AccessToken, lifetime: lifetime}, nil
}
