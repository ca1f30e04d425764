package pkgrepo

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ApkKey is an apk signing key. Name is the public key's file name as
// installed in /etc/apk/keys ("tollgate-dev.rsa.pub"); signatures are
// named after it (.SIGN.RSA.<Name>).
type ApkKey struct {
	Name string
	Key  *rsa.PrivateKey
}

// NewApkKey generates a 2048-bit RSA key called name (".rsa.pub" is
// appended when missing).
func NewApkKey(name string) (*ApkKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(name, ".rsa.pub") {
		name += ".rsa.pub"
	}
	return &ApkKey{Name: name, Key: k}, nil
}

// PublicPEM is the public key as apk keeps it in /etc/apk/keys (PKIX PEM).
func (k *ApkKey) PublicPEM() []byte {
	der, _ := x509.MarshalPKIXPublicKey(&k.Key.PublicKey)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Save writes the private key (PKCS#1 PEM, mode 0600) to dir/NAME without
// ".pub", and the public key to dir/NAME.
func (k *ApkKey) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.Key)})
	if err := os.WriteFile(filepath.Join(dir, strings.TrimSuffix(k.Name, ".pub")), priv, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, k.Name), k.PublicPEM(), 0o644)
}

// LoadApkKey reads the key Save wrote as dir/name.
func LoadApkKey(dir, name string) (*ApkKey, error) {
	p := filepath.Join(dir, strings.TrimSuffix(name, ".pub"))
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", p)
	}
	key, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &ApkKey{Name: name, Key: key}, nil
}

// sign returns the signature stream: a gzipped tar segment holding
// .SIGN.RSA.<Name>, an RSA PKCS#1 v1.5 signature over the SHA-1 of
// signed (the gzip stream that follows), as abuild-sign writes it.
func (k *ApkKey) sign(signed []byte, mt time.Time) ([]byte, error) {
	sum := sha1.Sum(signed)
	sig, err := rsa.SignPKCS1v15(rand.Reader, k.Key, crypto.SHA1, sum[:])
	if err != nil {
		return nil, err
	}
	seg, err := buildTar([]tarEntry{{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: ".SIGN.RSA." + k.Name, Mode: 0o644, Size: int64(len(sig)), ModTime: mt, Uname: "root", Gname: "root", Format: tar.FormatUSTAR}, data: sig}}, true)
	if err != nil {
		return nil, err
	}
	return gzipBytes(seg, gzip.BestCompression)
}

// VerifyApkSignature checks a signed APKINDEX.tar.gz or .apk the way apk
// does: the first gzip stream holds .SIGN.RSA.<key>, a signature over
// the SHA-1 of the next gzip stream (the control stream of a package,
// the index stream of an index), checked with the PEM public key.
func VerifyApkSignature(file, publicPEM []byte) error {
	streams, err := splitGzipStreams(file)
	if err != nil {
		return err
	}
	if len(streams) < 2 {
		return errors.New("apk: not signed: fewer than two gzip streams")
	}
	zr, err := gzip.NewReader(bytes.NewReader(streams[0]))
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil {
		return fmt.Errorf("apk: signature stream: %w", err)
	}
	if !strings.HasPrefix(h.Name, ".SIGN.RSA.") || strings.HasPrefix(h.Name, ".SIGN.RSA256.") {
		return fmt.Errorf("apk: first entry is %q, not a .SIGN.RSA. signature", h.Name)
	}
	sig := make([]byte, h.Size)
	if _, err := io.ReadFull(tr, sig); err != nil {
		return err
	}
	blk, _ := pem.Decode(publicPEM)
	if blk == nil {
		return errors.New("apk: public key is not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return err
	}
	rk, ok := pub.(*rsa.PublicKey)
	if !ok {
		return errors.New("apk: public key is not RSA")
	}
	sum := sha1.Sum(streams[1])
	return rsa.VerifyPKCS1v15(rk, crypto.SHA1, sum[:], sig)
}

func (p Package) apkArch(repoArch string) string {
	if p.Arch == "" {
		return repoArch
	}
	return p.Arch
}

// ApkFileName is the package's file name in its repository.
func ApkFileName(p Package) string { return p.Name + "-" + p.Version + ".apk" }

// BuiltApk is an .apk and what its index entry needs.
type BuiltApk struct {
	Package Package
	Arch    string
	File    []byte
	// ControlSHA1 is the SHA-1 of the control stream: the index's C: field.
	ControlSHA1 []byte
	// DataSHA256 is the SHA-256 of the data stream (.PKGINFO's datahash).
	DataSHA256 []byte
}

// BuildApk returns p as a signed apk v2 package for arch: three gzip
// streams, the signature (a tar segment), the control data (a tar segment
// with .PKGINFO) and the data (a whole tar, files carrying
// APK-TOOLS.checksum.SHA1 PAX records).
func BuildApk(p Package, arch string, key *ApkKey) (*BuiltApk, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	arch = p.apkArch(arch)
	mt := p.modTime()
	dirs, names := sortedFiles(p.Files)
	var data []tarEntry
	for _, d := range dirs {
		data = append(data, tarEntry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: mt, Uname: "root", Gname: "root", Format: tar.FormatPAX}})
	}
	for _, n := range names {
		sum := sha1.Sum(p.Files[n])
		data = append(data, tarEntry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(p.Files[n])), ModTime: mt, Uname: "root", Gname: "root", Format: tar.FormatPAX,
			PAXRecords: map[string]string{"APK-TOOLS.checksum.SHA1": hex.EncodeToString(sum[:])}}, data: p.Files[n]})
	}
	level := gzip.BestCompression
	if p.Store {
		level = gzip.NoCompression
	}
	dataTar, err := buildTar(data, false)
	if err != nil {
		return nil, err
	}
	dataGz, err := gzipBytes(dataTar, level)
	if err != nil {
		return nil, err
	}
	dataSum := sha256.Sum256(dataGz)
	desc := p.Description
	if desc == "" {
		desc = p.Name
	}
	pkginfo := fmt.Sprintf("# Generated by tollgate pkgrepo\npkgname = %s\npkgver = %s\npkgdesc = %s\nurl = https://tollgate.invalid/\nbuilddate = %d\npackager = tollgate dev <dev@tollgate.invalid>\nsize = %d\narch = %s\norigin = %s\nlicense = MIT\ndatahash = %x\n",
		p.Name, p.Version, desc, mt.Unix(), p.installedSize(), arch, p.Name, dataSum)
	ctlTar, err := buildTar([]tarEntry{{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: ".PKGINFO", Mode: 0o644, Size: int64(len(pkginfo)), ModTime: mt, Uname: "root", Gname: "root", Format: tar.FormatUSTAR}, data: []byte(pkginfo)}}, true)
	if err != nil {
		return nil, err
	}
	ctlGz, err := gzipBytes(ctlTar, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	sigGz, err := key.sign(ctlGz, mt)
	if err != nil {
		return nil, err
	}
	ctlSum := sha1.Sum(ctlGz)
	file := make([]byte, 0, len(sigGz)+len(ctlGz)+len(dataGz))
	file = append(append(append(file, sigGz...), ctlGz...), dataGz...)
	return &BuiltApk{Package: p, Arch: arch, File: file, ControlSHA1: ctlSum[:], DataSHA256: dataSum[:]}, nil
}

// indexEntry is the package's APKINDEX stanza.
func (b *BuiltApk) indexEntry() string {
	p := b.Package
	desc := p.Description
	if desc == "" {
		desc = p.Name
	}
	return fmt.Sprintf("C:Q1%s\nP:%s\nV:%s\nA:%s\nS:%d\nI:%d\nT:%s\nU:https://tollgate.invalid/\nL:MIT\no:%s\nm:tollgate dev <dev@tollgate.invalid>\nt:%d\n\n",
		base64.StdEncoding.EncodeToString(b.ControlSHA1), p.Name, p.Version, b.Arch, len(b.File), p.installedSize(), desc, p.Name, p.modTime().Unix())
}

// ApkOptions configures WriteApk.
type ApkOptions struct {
	Archs []string // default x86_64, aarch64
	Key   *ApkKey  // signs the packages and the index; required
	// Description is the index's DESCRIPTION; default "tollgate".
	Description string
}

// WriteApk writes an apk repository of pkgs below dir: for every arch,
// ARCH/NAME-VERSION.apk and ARCH/APKINDEX.tar.gz, the index signed: a
// signature stream followed by the index stream (a tar of DESCRIPTION and
// APKINDEX), byte for byte what apk verifies.
func WriteApk(dir string, pkgs []Package, o ApkOptions) error {
	if o.Key == nil {
		return errors.New("pkgrepo: WriteApk needs a key")
	}
	if len(o.Archs) == 0 {
		o.Archs = []string{"x86_64", "aarch64"}
	}
	if o.Description == "" {
		o.Description = "tollgate"
	}
	for _, arch := range o.Archs {
		var index strings.Builder
		var newest time.Time
		for _, p := range pkgs {
			if p.Arch != "" && p.Arch != arch && p.Arch != "noarch" {
				continue
			}
			b, err := BuildApk(p, arch, o.Key)
			if err != nil {
				return err
			}
			if err := writeFile(dir, arch+"/"+ApkFileName(p), b.File, p.modTime()); err != nil {
				return err
			}
			index.WriteString(b.indexEntry())
			if p.modTime().After(newest) {
				newest = p.modTime()
			}
		}
		idx, err := BuildApkIndex(index.String(), o.Description, newest, o.Key)
		if err != nil {
			return err
		}
		if err := writeFile(dir, arch+"/APKINDEX.tar.gz", idx, time.Time{}); err != nil {
			return err
		}
	}
	return nil
}

// BuildApkIndex returns a signed APKINDEX.tar.gz holding the given APKINDEX
// text.
func BuildApkIndex(apkindex, description string, mt time.Time, key *ApkKey) ([]byte, error) {
	hdr := func(name string, n int) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(n), ModTime: mt, Uname: "root", Gname: "root", Format: tar.FormatUSTAR}
	}
	desc := description + "\n"
	t, err := buildTar([]tarEntry{{hdr("DESCRIPTION", len(desc)), []byte(desc)}, {hdr("APKINDEX", len(apkindex)), []byte(apkindex)}}, false)
	if err != nil {
		return nil, err
	}
	idxGz, err := gzipBytes(t, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	sigGz, err := key.sign(idxGz, mt)
	if err != nil {
		return nil, err
	}
	return append(sigGz, idxGz...), nil
}

// splitGzipStreams cuts a concatenation of gzip streams into its streams,
// byte for byte.
func splitGzipStreams(b []byte) ([][]byte, error) {
	var out [][]byte
	r := bytes.NewReader(b)
	for r.Len() > 0 {
		start := len(b) - r.Len()
		zr, err := gzip.NewReader(r) // bytes.Reader is a ByteReader: no read-ahead
		if err != nil {
			return nil, fmt.Errorf("gzip stream %d: %w", len(out), err)
		}
		zr.Multistream(false)
		if _, err := io.Copy(io.Discard, zr); err != nil {
			return nil, fmt.Errorf("gzip stream %d: %w", len(out), err)
		}
		out = append(out, b[start:len(b)-r.Len()])
	}
	return out, nil
}
