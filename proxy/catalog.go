package proxy

import (
	"encoding/json"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// maxCatalogPages bounds how far the upstream catalog is walked (100
// names a page: distribution's largest).
const maxCatalogPages = 10000

// catalog lists the repositories the caller may pull: the upstream
// catalog, mapped to public names, filtered, then paged with n and last.
func (reg *Registry) catalog(w http.ResponseWriter, r *http.Request, c caller) (any, error) {
	n := 100
	if v := r.URL.Query().Get("n"); v != "" {
		i, err := strconv.Atoi(v)
		if err != nil || i < 0 {
			return nil, &refusal{code: errcode.ErrorCodePaginationNumberInvalid, message: "n must be a non-negative integer"}
		}
		n = min(i, 1000)
	}
	if reg.upstream == nil {
		return map[string][]string{"repositories": {}}, nil
	}
	last := r.URL.Query().Get("last")
	names, err := reg.upstream.catalog(r)
	if err != nil {
		return nil, &refusal{code: errcode.ErrorCodeUnavailable, status: http.StatusBadGateway, message: "upstream registry unavailable", err: err}
	}
	visible := []string{}
	for _, up := range names {
		if pub, ok := reg.upstream.FromUpstream(up); ok && pub > last && reg.may(r, c, pub) {
			visible = append(visible, pub)
		}
	}
	sort.Strings(visible)
	if len(visible) > n {
		visible = visible[:n]
		if n > 0 {
			w.Header().Set("Link", `</v2/_catalog?last=`+url.QueryEscape(visible[n-1])+`&n=`+strconv.Itoa(n)+`>; rel="next"`)
		}
	}
	return map[string][]string{"repositories": visible}, nil
}

// catalog walks the upstream's whole catalog.
func (u *Upstream) catalog(r *http.Request) ([]string, error) {
	var all []string
	next := strings.TrimSuffix(u.base.Path, "/") + "/v2/_catalog?n=100"
	for page := 0; next != "" && page < maxCatalogPages; page++ {
		ref, err := url.Parse(next)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.base.ResolveReference(ref).String(), nil)
		if err != nil {
			return nil, err
		}
		resp, err := u.client.Do(req)
		if err != nil {
			return nil, err
		}
		var body struct {
			Repositories []string `json:"repositories"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, &url.Error{Op: "GET", URL: req.URL.Redacted(), Err: errStatus(resp.StatusCode)}
		}
		if err != nil {
			return nil, err
		}
		all = append(all, body.Repositories...)
		next = ""
		if link := resp.Header.Get("Link"); strings.HasPrefix(link, "<") {
			if i := strings.Index(link, ">"); i > 0 {
				next = link[1:i]
			}
		}
	}
	return all, nil
}

type errStatus int

func (e errStatus) Error() string { return "status " + strconv.Itoa(int(e)) }
