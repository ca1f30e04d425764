package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/tollgate/tollgate"
)

// packageKeys serves the package repositories' public signing keys
// (packages.repositories[].key_file) at tollgate.PackageKeyPath, without
// authentication: they are public, and a client installs them before it
// has any credentials configured. The files are read once, at start.
type packageKeys struct {
	files   map[string][]byte // by path
	modTime time.Time
}

func (m *Main) packageKeys() (*packageKeys, error) {
	k := &packageKeys{files: map[string][]byte{}, modTime: time.Now()}
	for i, r := range m.Config.Packages.Repositories {
		if r.KeyFile == "" {
			continue
		}
		b, err := os.ReadFile(r.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("packages.repositories[%s].key_file: %w", strconv.Itoa(i), err)
		}
		k.files[tollgate.PackageKeyPath(r.Format, r.Name, r.PublishedKeyName())] = b
	}
	return k, nil
}

// ServeHTTP answers GET and HEAD for a published key; anything else under
// /keys/ is not found.
func (k *packageKeys) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, ok := k.files[r.URL.Path]
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	http.ServeContent(w, r, "", k.modTime, bytes.NewReader(b))
}
