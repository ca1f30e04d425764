// Package pkgrepo builds small, real apt and apk repositories on disk for
// `tollgate dev` and for tests: .deb and .apk packages, apt's Packages
// and Release signed with OpenPGP (InRelease, Release.gpg), and apk's
// APKINDEX.tar.gz signed with RSA the way apk-tools expects. It also
// serves a directory over HTTP the way a static upstream would (Range,
// If-Modified-Since, ETag).
//
// It owns nothing tollgate decides: it is the thing behind the proxy.
package pkgrepo

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Package is a package to build, as a .deb or as an .apk.
type Package struct {
	Name        string // a-z, 0-9, '+', '-', '.'
	Version     string // deb: 1.0.0; apk: 1.0.0-r0
	Description string // one line
	// Arch is the package's architecture: "all" or a Debian architecture
	// for a .deb, an apk architecture (x86_64, aarch64) for an .apk.
	// Empty: "all" for a .deb, the repository's arch for an .apk.
	Arch string
	// Files it installs, by path without a leading '/'. Directories are
	// added as needed.
	Files map[string][]byte
	// ModTime of every entry; zero: the Unix epoch (reproducible).
	ModTime time.Time
	// Store writes the payload uncompressed (large test packages).
	Store bool
}

func (p Package) modTime() time.Time {
	if p.ModTime.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return p.ModTime.UTC()
}

func (p Package) installedSize() int64 {
	var n int64
	for _, d := range p.Files {
		n += int64(len(d))
	}
	return n
}

func (p Package) validate() error {
	if p.Name == "" || strings.Trim(p.Name, "abcdefghijklmnopqrstuvwxyz0123456789+-.") != "" {
		return fmt.Errorf("pkgrepo: bad package name %q", p.Name)
	}
	if p.Version == "" || strings.ContainsAny(p.Version, " \t\n/_") {
		return fmt.Errorf("pkgrepo: bad version %q of %s", p.Version, p.Name)
	}
	for f := range p.Files {
		if f == "" || strings.HasPrefix(f, "/") || path.Clean(f) != f || strings.HasPrefix(f, "../") {
			return fmt.Errorf("pkgrepo: bad file path %q in %s", f, p.Name)
		}
	}
	return nil
}

// sortedFiles returns the file paths and the directories leading to them,
// parents first.
func sortedFiles(files map[string][]byte) (dirs, names []string) {
	seen := map[string]bool{}
	for f := range files {
		names = append(names, f)
		for d := path.Dir(f); d != "." && !seen[d]; d = path.Dir(d) {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs) // a parent sorts before its children
	sort.Strings(names)
	return dirs, names
}

// gzipBytes compresses data as one gzip stream.
func gzipBytes(data []byte, level int) ([]byte, error) {
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, level)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// tarEntry is one member of a tar built by buildTar.
type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

// buildTar writes the entries; cut leaves out the end-of-archive blocks
// (an apk "tar segment", meant to be followed by more tar data).
func buildTar(entries []tarEntry, cut bool) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		if err := tw.WriteHeader(e.hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	var err error
	if cut {
		err = tw.Flush()
	} else {
		err = tw.Close()
	}
	return b.Bytes(), err
}

// writeFile writes data to dir/rel, creating directories, atomically.
func writeFile(dir, rel string, data []byte, mtime time.Time) error {
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(tmp, mtime, mtime); err != nil {
			return err
		}
	}
	return os.Rename(tmp, p)
}
