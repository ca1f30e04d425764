package upstream

import (
	"archive/tar"
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand"
	randv2 "math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// SeedOptions shapes a seeded image.
type SeedOptions struct {
	// Layers per image; default 2.
	Layers int
	// LayerSize is the size of the random file in each layer; default 1 KiB.
	LayerSize int64
	// Platforms like "linux/amd64", "linux/arm64/v8". More than one pushes
	// an OCI image index with one image per platform. Default linux/amd64.
	Platforms []string
	// Seed makes the content deterministic: the same Seed and options give
	// the same digests. Zero means random content.
	Seed int64
	// Hello adds a top layer holding /hello, a static program for the
	// platform that prints Greeting: the image runs (Cmd is ["/hello"]).
	Hello bool
}

// Image describes a seeded image.
type Image struct {
	// Ref is the full reference as pushed: HOST/REPO:TAG.
	Ref string
	// Repo is the repository name without the host, e.g. demo/hello.
	Repo string
	// Tag is the tag pushed ("latest" when the reference had none).
	Tag string
	// Digest is the digest of the manifest, or of the index when there
	// are several platforms.
	Digest string
	// Manifests are the per-platform manifest digests of an index, in
	// platform order; empty for a single image.
	Manifests []string
	// Layers are the layer digests of the first (or only) image.
	Layers []string
}

// The demo images `tollgate dev` seeds.
const (
	// DemoImage is public in the demo: a two-platform index.
	DemoImage = "demo/hello:latest"
	// DemoPrivateImage is for the denial demo.
	DemoPrivateImage = "private/secret:latest"
)

// Demo is what SeedDemo seeded.
type Demo struct {
	Hello  Image // DemoImage
	Secret Image // DemoPrivateImage
}

// SeedDemo seeds the demo images with fixed content, so every fresh data
// directory gets the same digests. An image whose tag exists already is
// described, not pushed again.
func SeedDemo(ctx context.Context, reg *Registry) (Demo, error) {
	var d Demo
	var err error
	d.Hello, err = seedOnce(ctx, reg, DemoImage, SeedOptions{
		Layers:    2,
		Platforms: []string{"linux/amd64", "linux/arm64"},
		Seed:      1,
		Hello:     true,
	})
	if err != nil {
		return Demo{}, err
	}
	d.Secret, err = seedOnce(ctx, reg, DemoPrivateImage, SeedOptions{
		Layers: 2,
		Seed:   2,
	})
	if err != nil {
		return Demo{}, err
	}
	return d, nil
}

func seedOnce(ctx context.Context, reg *Registry, ref string, opts SeedOptions) (Image, error) {
	r, err := reg.parseRef(ref)
	if err != nil {
		return Image{}, err
	}
	img, err := describe(ctx, reg, r)
	if err == nil {
		return img, nil
	}
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound {
		return Image{}, fmt.Errorf("upstream: look up %s: %w", ref, err)
	}
	return Seed(ctx, reg, ref, opts)
}

// Seed pushes a generated image (or index) to reg under ref, a reference
// relative to the registry such as "demo/hello:latest".
func Seed(ctx context.Context, reg *Registry, ref string, opts SeedOptions) (Image, error) {
	r, err := reg.parseRef(ref)
	if err != nil {
		return Image{}, err
	}
	if opts.Layers <= 0 {
		opts.Layers = 2
	}
	if opts.LayerSize <= 0 {
		opts.LayerSize = 1024
	}
	if len(opts.Platforms) == 0 {
		opts.Platforms = []string{"linux/amd64"}
	}
	seed := opts.Seed
	if seed == 0 {
		seed = randv2.Int64()
	}
	src := mrand.NewSource(seed) //nolint:gosec // test content, not secrets

	var imgs []v1.Image
	var plats []*v1.Platform
	for _, s := range opts.Platforms {
		p, err := v1.ParsePlatform(s)
		if err != nil {
			return Image{}, fmt.Errorf("upstream: platform %q: %w", s, err)
		}
		img, err := buildImage(src, opts.Layers, opts.LayerSize, p, opts.Hello)
		if err != nil {
			return Image{}, err
		}
		imgs = append(imgs, img)
		plats = append(plats, p)
	}

	out := Image{Ref: r.Name(), Repo: r.Context().RepositoryStr(), Tag: r.Identifier()}
	ropts := reg.remoteOptions(ctx)
	if len(imgs) == 1 {
		if err := remote.Write(r, imgs[0], ropts...); err != nil {
			return Image{}, fmt.Errorf("upstream: push %s: %w", ref, err)
		}
		d, err := imgs[0].Digest()
		if err != nil {
			return Image{}, err
		}
		out.Digest = d.String()
	} else {
		idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
		adds := make([]mutate.IndexAddendum, len(imgs))
		for i, img := range imgs {
			adds[i] = mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plats[i]}}
			d, err := img.Digest()
			if err != nil {
				return Image{}, err
			}
			out.Manifests = append(out.Manifests, d.String())
		}
		idx = mutate.AppendManifests(idx, adds...)
		if err := remote.WriteIndex(r, idx, ropts...); err != nil {
			return Image{}, fmt.Errorf("upstream: push %s: %w", ref, err)
		}
		d, err := idx.Digest()
		if err != nil {
			return Image{}, err
		}
		out.Digest = d.String()
	}
	out.Layers, err = layerDigests(imgs[0])
	if err != nil {
		return Image{}, err
	}
	return out, nil
}

// buildImage makes an OCI image of random layers whose config names the
// platform. Content depends only on what src yields.
func buildImage(src mrand.Source, layers int, size int64, p *v1.Platform, hello bool) (v1.Image, error) {
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	adds := make([]mutate.Addendum, 0, layers)
	for i := range layers {
		l, err := random.Layer(size, types.OCILayer, random.WithSource(src))
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.Addendum{
			Layer: l,
			History: v1.History{
				CreatedBy: "tollgate upstream seed",
				Comment:   fmt.Sprintf("layer %d of %d", i+1, layers),
			},
		})
	}
	if hello {
		l, err := helloLayer(p.Architecture)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: "tollgate upstream seed", Comment: "/hello"}})
	}
	img, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = p.OS
	cf.Architecture = p.Architecture
	cf.Variant = p.Variant
	cf.OSVersion = p.OSVersion
	cf.Config.Cmd = []string{"/hello"}
	return mutate.ConfigFile(img, cf)
}

// helloLayer is a layer with /hello for arch (helloELF), executable.
func helloLayer(arch string) (v1.Layer, error) {
	prog, err := helloELF(arch)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	hdr := &tar.Header{Name: "hello", Mode: 0o755, Size: int64(len(prog)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(prog); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := b.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
}

func layerDigests(img v1.Image) ([]string, error) {
	ls, err := img.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ls))
	for i, l := range ls {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		out[i] = d.String()
	}
	return out, nil
}

// describe reads an image or index that is already in the registry.
func describe(ctx context.Context, reg *Registry, r name.Reference) (Image, error) {
	desc, err := remote.Get(r, reg.remoteOptions(ctx)...)
	if err != nil {
		return Image{}, err
	}
	out := Image{
		Ref:    r.Name(),
		Repo:   r.Context().RepositoryStr(),
		Tag:    r.Identifier(),
		Digest: desc.Digest.String(),
	}
	var first v1.Image
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return Image{}, err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return Image{}, err
		}
		if len(im.Manifests) == 0 {
			return Image{}, fmt.Errorf("upstream: %s: empty index", r)
		}
		for _, m := range im.Manifests {
			out.Manifests = append(out.Manifests, m.Digest.String())
		}
		if first, err = idx.Image(im.Manifests[0].Digest); err != nil {
			return Image{}, err
		}
	} else if first, err = desc.Image(); err != nil {
		return Image{}, err
	}
	if out.Layers, err = layerDigests(first); err != nil {
		return Image{}, err
	}
	return out, nil
}

// parseRef resolves a registry-relative reference against reg.Host.
func (r *Registry) parseRef(ref string) (name.Reference, error) {
	ref = strings.TrimPrefix(ref, r.Host+"/")
	var nopts []name.Option
	if strings.HasPrefix(r.URL, "http://") {
		nopts = append(nopts, name.Insecure)
	}
	n, err := name.ParseReference(r.Host+"/"+ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("upstream: reference %q: %w", ref, err)
	}
	return n, nil
}

func (r *Registry) remoteOptions(ctx context.Context) []remote.Option {
	auth := authn.Anonymous
	if r.auth != nil {
		auth = &authn.Basic{Username: r.auth.User, Password: r.auth.Password}
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(r.transport),
		remote.WithAuth(auth),
	}
}

// PushBlob uploads size bytes of fresh random data as a blob of repo and
// returns its digest. The data is generated and hashed as it is sent, so
// memory does not grow with size (the registry's in-memory storage, Dir "",
// does hold it all).
func PushBlob(ctx context.Context, reg *Registry, repo string, size int64) (string, error) {
	if size < 0 {
		return "", errors.New("upstream: negative blob size")
	}
	var key [32]byte
	if _, err := crand.Read(key[:]); err != nil {
		return "", err
	}
	client := &http.Client{Transport: reg.transport}

	start, err := url.Parse(reg.URL + "/v2/" + strings.Trim(repo, "/") + "/blobs/uploads/")
	if err != nil {
		return "", fmt.Errorf("upstream: repository %q: %w", repo, err)
	}
	loc, err := reg.uploadStep(ctx, client, http.MethodPost, start, nil, 0, http.StatusAccepted)
	if err != nil {
		return "", err
	}

	h := sha256.New()
	body := io.TeeReader(io.LimitReader(randv2.NewChaCha8(key), size), h)
	loc, err = reg.uploadStep(ctx, client, http.MethodPatch, loc, body, size, http.StatusAccepted)
	if err != nil {
		return "", err
	}

	dgst := "sha256:" + hex.EncodeToString(h.Sum(nil))
	q := loc.Query()
	q.Set("digest", dgst)
	loc.RawQuery = q.Encode()
	if _, err := reg.uploadStep(ctx, client, http.MethodPut, loc, nil, 0, http.StatusCreated); err != nil {
		return "", err
	}
	return dgst, nil
}

// uploadStep sends one request of a blob upload and returns the Location
// to continue at, resolved against u.
func (r *Registry) uploadStep(ctx context.Context, c *http.Client, method string, u *url.URL, body io.Reader, size int64, want int) (*url.URL, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
		if size == 0 {
			req.Body = http.NoBody
		}
	}
	if r.auth != nil {
		req.SetBasicAuth(r.auth.User, r.auth.Password)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("upstream: blob upload %s: %w", method, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != want {
		return nil, fmt.Errorf("upstream: blob upload %s: %s: %s", method, resp.Status, strings.TrimSpace(string(msg)))
	}
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("upstream: blob upload %s: %w", method, err)
	}
	return loc, nil
}
