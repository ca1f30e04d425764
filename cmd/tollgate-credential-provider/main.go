// Command tollgate-credential-provider is a kubelet image credential
// provider (the exec plugin API credentialprovider.kubelet.k8s.io/v1):
// kubelet runs it for each image its CredentialProviderConfig matches,
// writes a CredentialProviderRequest on its standard input and reads a
// CredentialProviderResponse from its standard output.
//
// It holds no secret of its own. It trades a Kubernetes-issued JWT for a
// short-lived tollgate credential at tollgate's RFC 8693 token exchange
// (POST /oauth2/token) and hands that credential to kubelet as the
// password for the configured registry:
//
//   - service-account-token mode (the default, KEP-4412): the JWT is the
//     pod's service-account token that kubelet puts in the request when
//     the provider's config has tokenAttributes;
//   - node mode (--mode node --token-file PATH): the JWT is read from a
//     file on every run, e.g. a node identity token that something else
//     keeps fresh.
//
// kubelet may cache the answer: cacheDuration is the credential's
// lifetime less a margin, so kubelet asks again before tollgate would
// refuse it. On any failure it prints one line on stderr (kubelet logs
// it) and exits non-zero; no token ever reaches stdout, stderr or an
// error. It imports nothing of the server, so it stays a small binary to
// copy onto nodes.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	credentialprovider "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
)

const (
	name = "tollgate-credential-provider"

	// The only request this provider answers, and the version it answers
	// in: kubelet requires the response in the request's apiVersion.
	apiVersion   = "credentialprovider.kubelet.k8s.io/v1"
	requestKind  = "CredentialProviderRequest"
	responseKind = "CredentialProviderResponse"

	modeServiceAccount = "service-account-token"
	modeNode           = "node"

	// username is what kubelet passes with the credential; tollgate
	// accepts any user name with a token as the password.
	username = "tollgate"

	maxRequestBytes = 1 << 20  // a request is an image name and a JWT
	maxTokenBytes   = 16 << 10 // no sane identity token is larger
	defaultTimeout  = 10 * time.Second
	maxTimeout      = 2 * time.Minute
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

// run answers one kubelet request and returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	opts, err := parseFlags(args, lookup, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil {
		var resp *credentialprovider.CredentialProviderResponse
		if resp, err = provide(ctx, opts, stdin); err == nil {
			err = json.NewEncoder(stdout).Encode(resp)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, name+": "+oneLine(err.Error()))
		return 1
	}
	return 0
}

// options is the provider's configuration: flags, each with an
// environment variable kubelet can set through the config's env list.
type options struct {
	url          *url.URL
	registries   []string
	caFile       string
	cacheKeyType credentialprovider.PluginCacheKeyType
	mode         string
	tokenFile    string
	timeout      time.Duration
}

// flagEnv names the environment variable that sets a flag's default.
func flagEnv(flagName string) string {
	return "TOLLGATE_PROVIDER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func parseFlags(args []string, lookup func(string) (string, bool), stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// Parse errors come back as one line; usage is printed for -h only.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	usage := func() {
		fmt.Fprintf(stderr, "Usage: %s --url https://TOLLGATE [flags] < CredentialProviderRequest\n\n", name)
		fmt.Fprintf(stderr, "A kubelet image credential provider (%s). Every flag may also be set by the\nenvironment variable shown.\n\n", apiVersion)
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(stderr, "  --%s, $%s\n    \t%s%s\n", f.Name, flagEnv(f.Name), f.Usage, def)
		})
	}
	str := func(flagName, def, usage string) *string {
		if v, ok := lookup(flagEnv(flagName)); ok && v != "" {
			def = v
		}
		return fs.String(flagName, def, usage)
	}
	rawURL := str("url", "", "tollgate's address, https://HOST[:PORT] (plain http only for a loopback address)")
	registry := str("registry", "", "comma-separated registry hosts or matchImages patterns the credential is for (default: the host of --url)")
	caFile := str("ca-file", "", "PEM file of CA certificates to trust for tollgate, besides the system's")
	cacheKey := str("cache-key-type", string(credentialprovider.RegistryPluginCacheKeyType), "how kubelet caches the credential: Image, Registry or Global")
	mode := str("mode", modeServiceAccount, "service-account-token (exchange the pod's token kubelet sends) or node (exchange the token in --token-file)")
	tokenFile := str("token-file", "", "node mode: the file holding the JWT to exchange, read on every run")
	timeout := str("timeout", defaultTimeout.String(), "the longest the exchange may take, at most "+maxTimeout.String())
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage()
			return nil, err
		}
		return nil, fmt.Errorf("arguments: %w", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("arguments: unexpected %q (the request is read from standard input)", fs.Arg(0))
	}

	o := &options{caFile: *caFile, mode: *mode, tokenFile: *tokenFile}
	var err error
	if o.url, err = parseTollgateURL(*rawURL); err != nil {
		return nil, err
	}
	for _, r := range strings.Split(*registry, ",") {
		if r = strings.TrimSpace(r); r != "" {
			if strings.Contains(r, "://") || strings.ContainsAny(r, " \t@") {
				return nil, fmt.Errorf("--registry %q: want a host[:port][/path] or matchImages pattern, without a scheme", r)
			}
			o.registries = append(o.registries, r)
		}
	}
	if len(o.registries) == 0 {
		o.registries = []string{o.url.Host}
	}
	switch k := credentialprovider.PluginCacheKeyType(*cacheKey); k {
	case credentialprovider.ImagePluginCacheKeyType, credentialprovider.RegistryPluginCacheKeyType, credentialprovider.GlobalPluginCacheKeyType:
		o.cacheKeyType = k
	default:
		return nil, fmt.Errorf("--cache-key-type %q: want Image, Registry or Global", *cacheKey)
	}
	switch o.mode {
	case modeServiceAccount:
		if o.tokenFile != "" {
			return nil, fmt.Errorf("--token-file is for --mode node; in %s mode the token comes from kubelet's request", modeServiceAccount)
		}
	case modeNode:
		if o.tokenFile == "" {
			return nil, errors.New("--mode node needs --token-file PATH")
		}
	default:
		return nil, fmt.Errorf("--mode %q: want %s or %s", o.mode, modeServiceAccount, modeNode)
	}
	if o.timeout, err = time.ParseDuration(*timeout); err != nil || o.timeout <= 0 || o.timeout > maxTimeout {
		return nil, fmt.Errorf("--timeout %q: want a duration above 0 and at most %s, e.g. 10s", *timeout, maxTimeout)
	}
	return o, nil
}

// parseTollgateURL accepts tollgate's base address. Plain http would send
// identity tokens in the clear, so it is refused but for loopback.
func parseTollgateURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("--url is required: tollgate's address, e.g. https://registry.example.com")
	}
	u, err := url.Parse(raw)
	if strings.Contains(raw, "@") || err == nil && u.User != nil {
		// Not quoted: it may hold a password.
		return nil, errors.New("--url: want https://HOST[:PORT] with no user or password in it")
	}
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--url %q: want https://HOST[:PORT] with no user, query or fragment", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if ip := net.ParseIP(u.Hostname()); (ip == nil || !ip.IsLoopback()) && u.Hostname() != "localhost" {
			return nil, fmt.Errorf("--url %q: plain http would send identity tokens in the clear; use https", raw)
		}
	default:
		return nil, fmt.Errorf("--url %q: want an https:// address", raw)
	}
	return u, nil
}

// provide reads kubelet's request, exchanges the identity token and
// builds the response.
func provide(ctx context.Context, o *options, stdin io.Reader) (*credentialprovider.CredentialProviderResponse, error) {
	req, err := readRequest(stdin)
	if err != nil {
		return nil, err
	}
	var subject string
	switch o.mode {
	case modeServiceAccount:
		if req.ServiceAccountToken == "" {
			return nil, errors.New("the request has no serviceAccountToken: give the provider tokenAttributes (serviceAccountTokenAudience, cacheType, requireServiceAccount: true) in kubelet's CredentialProviderConfig, or run it with --mode node --token-file PATH")
		}
		subject, err = checkJWT(req.ServiceAccountToken, "serviceAccountToken")
	case modeNode:
		subject, err = readTokenFile(o.tokenFile)
	}
	if err != nil {
		return nil, err
	}
	cred, err := exchange(ctx, o, subject)
	if err != nil {
		return nil, err
	}
	auth := map[string]credentialprovider.AuthConfig{}
	for _, r := range o.registries {
		auth[r] = credentialprovider.AuthConfig{Username: username, Password: cred.token}
	}
	return &credentialprovider.CredentialProviderResponse{
		TypeMeta:      metav1.TypeMeta{APIVersion: apiVersion, Kind: responseKind},
		CacheKeyType:  o.cacheKeyType,
		CacheDuration: &metav1.Duration{Duration: cacheDuration(cred.lifetime)},
		Auth:          auth,
	}, nil
}

// readRequest decodes kubelet's request. Unknown fields are allowed (a
// newer kubelet may send more); the version and kind are not negotiable.
func readRequest(stdin io.Reader) (*credentialprovider.CredentialProviderRequest, error) {
	b, err := io.ReadAll(io.LimitReader(stdin, maxRequestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the request from standard input: %w", err)
	}
	if len(b) > maxRequestBytes {
		return nil, fmt.Errorf("the request on standard input is larger than %d bytes", maxRequestBytes)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil, fmt.Errorf("no request on standard input: kubelet sends a %s as JSON", requestKind)
	}
	var req credentialprovider.CredentialProviderRequest
	if err := json.Unmarshal(b, &req); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return nil, fmt.Errorf("the request's %s: want a %s", typeErr.Field, typeErr.Type)
		}
		return nil, fmt.Errorf("the request on standard input is not a JSON %s", requestKind)
	}
	if req.APIVersion != apiVersion || req.Kind != requestKind {
		return nil, fmt.Errorf("the request is %q %q: this provider answers apiVersion %q kind %q (set apiVersion: %s in kubelet's CredentialProviderConfig)", req.APIVersion, req.Kind, apiVersion, requestKind, apiVersion)
	}
	if req.Image == "" {
		return nil, errors.New("the request's image is empty")
	}
	return &req, nil
}

// readTokenFile reads node mode's token; the file is read on every run,
// so whatever rotates it needs no signal.
func readTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--token-file %s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenBytes+1))
	if err != nil {
		return "", fmt.Errorf("--token-file %s: %w", path, errors.Unwrap(err))
	}
	return checkJWT(strings.TrimSpace(string(b)), "--token-file "+path)
}

// checkJWT refuses what cannot be a compact JWS before it is sent
// anywhere. It names where the token came from, never the token.
func checkJWT(tok, from string) (string, error) {
	switch {
	case tok == "":
		return "", fmt.Errorf("%s is empty", from)
	case len(tok) > maxTokenBytes:
		return "", fmt.Errorf("%s is larger than %d bytes", from, maxTokenBytes)
	case strings.Count(tok, ".") != 2 || strings.IndexFunc(tok, notBase64URL) >= 0:
		return "", fmt.Errorf("%s is not a JWT (three base64url parts joined by dots)", from)
	}
	return tok, nil
}

func notBase64URL(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
}

// cacheDuration is how long kubelet may reuse a credential that lives
// for lifetime: a tenth of it earlier, and at least a minute earlier,
// than tollgate would refuse it; never negative (0 tells kubelet not to
// cache at all).
func cacheDuration(lifetime time.Duration) time.Duration {
	margin := max(lifetime/10, time.Minute)
	return max(lifetime-margin, 0).Truncate(time.Second)
}

// oneLine keeps an error on the one line kubelet logs.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
