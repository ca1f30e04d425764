package pkgrepo

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// BuildDeb returns p as a .deb: an ar archive of debian-binary,
// control.tar.gz and data.tar.gz, as dpkg-deb builds it.
func BuildDeb(p Package) ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	mt := p.modTime()
	dirHdr := func(name string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: mt, Uname: "root", Gname: "root", Format: tar.FormatGNU}
	}
	fileHdr := func(name string, size int, mode int64) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(size), ModTime: mt, Uname: "root", Gname: "root", Format: tar.FormatGNU}
	}

	control := []byte(debControl(p))
	var md5sums strings.Builder
	dirs, names := sortedFiles(p.Files)
	data := []tarEntry{{hdr: dirHdr("./")}}
	for _, d := range dirs {
		data = append(data, tarEntry{hdr: dirHdr("./" + d + "/")})
	}
	for _, n := range names {
		data = append(data, tarEntry{hdr: fileHdr("./"+n, len(p.Files[n]), 0o644), data: p.Files[n]})
		sum := md5.Sum(p.Files[n])
		fmt.Fprintf(&md5sums, "%x  %s\n", sum, n)
	}
	ctl := []tarEntry{
		{hdr: dirHdr("./")},
		{hdr: fileHdr("./control", len(control), 0o644), data: control},
		{hdr: fileHdr("./md5sums", md5sums.Len(), 0o644), data: []byte(md5sums.String())},
	}
	level := gzip.BestCompression
	if p.Store {
		level = gzip.NoCompression
	}
	ctlTar, err := buildTar(ctl, false)
	if err != nil {
		return nil, err
	}
	dataTar, err := buildTar(data, false)
	if err != nil {
		return nil, err
	}
	ctlGz, err := gzipBytes(ctlTar, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	dataGz, err := gzipBytes(dataTar, level)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	for _, m := range []struct {
		name string
		data []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.gz", ctlGz}, {"data.tar.gz", dataGz}} {
		fmt.Fprintf(&b, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, mt.Unix(), 0, 0, "100644", len(m.data))
		b.Write(m.data)
		if len(m.data)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes(), nil
}

func (p Package) debArch() string {
	if p.Arch == "" {
		return "all"
	}
	return p.Arch
}

// debControl is the package's control file.
func debControl(p Package) string {
	desc := p.Description
	if desc == "" {
		desc = p.Name
	}
	return fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: tollgate dev <dev@tollgate.invalid>\nInstalled-Size: %d\nSection: misc\nPriority: optional\nDescription: %s\n",
		p.Name, p.Version, p.debArch(), (p.installedSize()+1023)/1024, desc)
}

// AptOptions configures WriteApt.
type AptOptions struct {
	Suite     string   // default "stable"
	Component string   // default "main"
	Archs     []string // Debian architectures; default amd64, arm64
	// Signer signs InRelease and Release.gpg; nil leaves the repository
	// unsigned (clients then need [trusted=yes]).
	Signer *openpgp.Entity
	// Date of the Release file; zero: now. apt refuses a Release dated
	// in the future.
	Date time.Time
	// ByHash also writes the index files under by-hash/SHA256/ and
	// announces Acquire-By-Hash (as Debian's archive does).
	ByHash bool
}

func (o *AptOptions) defaults() {
	if o.Suite == "" {
		o.Suite = "stable"
	}
	if o.Component == "" {
		o.Component = "main"
	}
	if len(o.Archs) == 0 {
		o.Archs = []string{"amd64", "arm64"}
	}
	if o.Date.IsZero() {
		o.Date = time.Now()
	}
}

// PoolPath is where a .deb of p lies in the repository.
func PoolPath(component string, p Package) string {
	prefix := p.Name[:1]
	if strings.HasPrefix(p.Name, "lib") && len(p.Name) > 3 {
		prefix = p.Name[:4]
	}
	return "pool/" + component + "/" + prefix + "/" + p.Name + "/" + p.Name + "_" + p.Version + "_" + p.debArch() + ".deb"
}

// WriteApt writes an apt repository of pkgs below dir: pool/ with the
// .deb files, dists/SUITE/ with Release, InRelease and Release.gpg (when
// signed) and COMPONENT/binary-ARCH/Packages and Packages.gz. A package
// of Architecture all is listed for every arch.
func WriteApt(dir string, pkgs []Package, o AptOptions) error {
	o.defaults()
	type built struct {
		p    Package
		path string
		deb  []byte
	}
	var debs []built
	for _, p := range pkgs {
		deb, err := BuildDeb(p)
		if err != nil {
			return err
		}
		b := built{p: p, path: PoolPath(o.Component, p), deb: deb}
		if err := writeFile(dir, b.path, deb, p.modTime()); err != nil {
			return err
		}
		debs = append(debs, b)
	}
	dist := "dists/" + o.Suite + "/"
	index := map[string][]byte{} // relative to dist
	for _, arch := range o.Archs {
		var pk strings.Builder
		for _, b := range debs {
			if a := b.p.debArch(); a != "all" && a != arch {
				continue
			}
			md := md5.Sum(b.deb)
			sh := sha256.Sum256(b.deb)
			ctl := strings.Replace(debControl(b.p), "Section:", fmt.Sprintf("Filename: %s\nSize: %d\nMD5sum: %x\nSHA256: %x\nSection:", b.path, len(b.deb), md, sh), 1)
			pk.WriteString(ctl + "\n")
		}
		rel := o.Component + "/binary-" + arch + "/"
		index[rel+"Packages"] = []byte(pk.String())
		gz, err := gzipBytes([]byte(pk.String()), gzip.BestCompression)
		if err != nil {
			return err
		}
		index[rel+"Packages.gz"] = gz
	}
	names := make([]string, 0, len(index))
	for n := range index {
		names = append(names, n)
	}
	sort.Strings(names)
	var release strings.Builder
	fmt.Fprintf(&release, "Origin: tollgate\nLabel: tollgate\nSuite: %s\nCodename: %s\nDate: %s\nArchitectures: %s\nComponents: %s\nDescription: tollgate test repository\n",
		o.Suite, o.Suite, o.Date.UTC().Format(time.RFC1123), strings.Join(o.Archs, " "), o.Component)
	if o.ByHash {
		release.WriteString("Acquire-By-Hash: yes\n")
	}
	for _, sum := range []struct {
		field string
		h     func([]byte) string
	}{
		{"MD5Sum", func(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }},
		{"SHA256", func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }},
	} {
		release.WriteString(sum.field + ":\n")
		for _, n := range names {
			fmt.Fprintf(&release, " %s %16d %s\n", sum.h(index[n]), len(index[n]), n)
		}
	}
	for _, n := range names {
		if err := writeFile(dir, dist+n, index[n], time.Time{}); err != nil {
			return err
		}
		if o.ByHash {
			sh := sha256.Sum256(index[n])
			if err := writeFile(dir, dist+filepath.ToSlash(filepath.Dir(n))+"/by-hash/SHA256/"+hex.EncodeToString(sh[:]), index[n], time.Time{}); err != nil {
				return err
			}
		}
	}
	rel := []byte(release.String())
	if err := writeFile(dir, dist+"Release", rel, time.Time{}); err != nil {
		return err
	}
	if o.Signer == nil {
		for _, n := range []string{"InRelease", "Release.gpg"} {
			if err := os.Remove(filepath.Join(dir, filepath.FromSlash(dist+n))); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
		return nil
	}
	inRelease, detached, err := SignRelease(o.Signer, rel)
	if err != nil {
		return err
	}
	if err := writeFile(dir, dist+"InRelease", inRelease, time.Time{}); err != nil {
		return err
	}
	return writeFile(dir, dist+"Release.gpg", detached, time.Time{})
}

// signConfig: SHA-512 signatures (apt rejects SHA-1).
var signConfig = &packet.Config{DefaultHash: crypto.SHA512}

// SignRelease returns the clearsigned InRelease and the armored detached
// Release.gpg for a Release file.
func SignRelease(e *openpgp.Entity, release []byte) (inRelease, detached []byte, err error) {
	var in bytes.Buffer
	w, err := clearsign.Encode(&in, e.PrivateKey, signConfig)
	if err != nil {
		return nil, nil, err
	}
	if _, err := w.Write(release); err != nil {
		return nil, nil, err
	}
	if err := w.Close(); err != nil {
		return nil, nil, err
	}
	// clearsign leaves out the armor checksum, without which gpgv 2.2
	// (Debian 12) reports "no valid OpenPGP data" after a good signature
	// and fails: armor the signature again, with the checksum.
	const sigStart = "-----BEGIN PGP SIGNATURE-----"
	text, _, ok := bytes.Cut(in.Bytes(), []byte(sigStart))
	if !ok {
		return nil, nil, errors.New("pkgrepo: clearsign wrote no signature block")
	}
	blk, err := armor.Decode(bytes.NewReader(in.Bytes()[len(text):]))
	if err != nil {
		return nil, nil, err
	}
	out := bytes.NewBuffer(append([]byte(nil), text...))
	aw, err := armor.EncodeWithChecksumOption(out, openpgp.SignatureType, nil, true)
	if err != nil {
		return nil, nil, err
	}
	if _, err := io.Copy(aw, blk.Body); err != nil {
		return nil, nil, err
	}
	if err := aw.Close(); err != nil {
		return nil, nil, err
	}
	endLine(out)
	var det bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&det, e, bytes.NewReader(release), signConfig); err != nil {
		return nil, nil, err
	}
	endLine(&det)
	return out.Bytes(), det.Bytes(), nil
}

// endLine ends b with a newline (the armor writers may leave it out).
func endLine(b *bytes.Buffer) {
	if n := b.Len(); n > 0 && b.Bytes()[n-1] != '\n' {
		b.WriteByte('\n')
	}
}

// NewAptKey generates an Ed25519 OpenPGP signing key (what gpgv on
// Debian 12 and later verifies).
func NewAptKey(name string) (*openpgp.Entity, error) {
	return openpgp.NewEntity(name, "", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519, DefaultHash: crypto.SHA512})
}

// WriteAptKeyring writes e's public key as a binary OpenPGP keyring, the
// form apt's signed-by and gpgv --keyring take.
func WriteAptKeyring(path string, e *openpgp.Entity) error {
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		return err
	}
	return writeFile(filepath.Dir(path), filepath.Base(path), b.Bytes(), time.Time{})
}

// SaveAptKey writes e with its private key, armored, readable only by the
// owner; LoadAptKey reads it back.
func SaveAptKey(path string, e *openpgp.Entity) error {
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PrivateKeyType, nil)
	if err != nil {
		return err
	}
	if err := e.SerializePrivate(w, nil); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}

// LoadAptKey reads a key SaveAptKey wrote.
func LoadAptKey(path string) (*openpgp.Entity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	el, err := openpgp.ReadArmoredKeyRing(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(el) != 1 || el[0].PrivateKey == nil {
		return nil, fmt.Errorf("%s: want one private key", path)
	}
	return el[0], nil
}
