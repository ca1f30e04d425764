package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/tollgate/tollgate/config"
)

// Files under test, relative to this directory (where go test runs).
const (
	baseDir        = "kubernetes/base"
	baseConfig     = "kubernetes/base/config.yaml"
	productionYAML = "../configs/production.yaml"
	composeFile    = "compose.yaml"
	dockerfilePath = "Dockerfile"
	dashboardPath  = "grafana/tollgate.json"
	operationsDoc  = "../docs/operations.md"
)

func loadConfig(t *testing.T, path string) *config.Config {
	t.Helper()
	c, err := config.Load(path, nil)
	if err != nil {
		t.Fatalf("config.Load(%s): %v", path, err)
	}
	return c
}

// configFiles returns every file the configuration names, keyed by YAML
// path: each setting whose key ends in _file or _files, anywhere in the
// schema (keys, store, admin, tls, upstream, redis, packages...). Walking
// the schema rather than listing the settings means a new *_file setting
// is checked as soon as a config sets it.
func configFiles(c *config.Config) map[string]string {
	files := map[string]string{}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Struct:
			t := v.Type()
			for i := range t.NumField() {
				f := t.Field(i)
				key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if !f.IsExported() || key == "" || key == "-" {
					continue
				}
				p := key
				if path != "" {
					p = path + "." + key
				}
				fv := v.Field(i)
				switch {
				case strings.HasSuffix(key, "_file") && fv.Kind() == reflect.String:
					if fv.String() != "" {
						files[p] = fv.String()
					}
				case strings.HasSuffix(key, "_files") && fv.Kind() == reflect.Slice:
					for j := range fv.Len() {
						files[p+"["+strconv.Itoa(j)+"]"] = fv.Index(j).String()
					}
				default:
					walk(fv, p)
				}
			}
		case reflect.Slice:
			for j := range v.Len() {
				walk(v.Index(j), path+"["+strconv.Itoa(j)+"]")
			}
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	return files
}

// hostPort splits a listen address and returns its host and port.
func hostPort(t *testing.T, setting, addr string) (string, int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s %q: %v", setting, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port == 0 {
		t.Fatalf("%s %q: needs a fixed port", setting, addr)
	}
	return host, port
}

// k8sDecoder decodes manifests the way the API server does with strict
// field validation: an unknown field, a duplicate field or a field in the
// wrong case is an error, and so is a kind this base does not use.
var k8sDecoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		appsv1.AddToScheme, corev1.AddToScheme, autoscalingv2.AddToScheme,
		policyv1.AddToScheme, networkingv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}()

// decodeManifests decodes every YAML document in data strictly.
func decodeManifests(name string, data []byte) ([]runtime.Object, error) {
	return decodeWith(k8sDecoder, name, data)
}

// decodeWith decodes every YAML document in data with dec.
func decodeWith(dec runtime.Decoder, name string, data []byte) ([]runtime.Object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []runtime.Object
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if j, err := sigsyaml.YAMLToJSON(doc); err == nil && string(j) == "null" {
			continue // only comments
		}
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s, document %d: %w", name, i, err)
		}
		objs = append(objs, obj)
	}
}

// manifests are the objects of the base, by kind.
type manifests struct {
	deployment     *appsv1.Deployment
	services       []*corev1.Service
	serviceAccount *corev1.ServiceAccount
	hpa            *autoscalingv2.HorizontalPodAutoscaler
	pdb            *policyv1.PodDisruptionBudget
	netpol         *networkingv1.NetworkPolicy
	configMaps     []*corev1.ConfigMap
}

func sortManifests(t *testing.T, objs []runtime.Object) *manifests {
	t.Helper()
	m := &manifests{}
	one := func(kind string, have bool) {
		if have {
			t.Fatalf("more than one %s", kind)
		}
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *appsv1.Deployment:
			one("Deployment", m.deployment != nil)
			m.deployment = o
		case *corev1.Service:
			m.services = append(m.services, o)
		case *corev1.ServiceAccount:
			one("ServiceAccount", m.serviceAccount != nil)
			m.serviceAccount = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			one("HorizontalPodAutoscaler", m.hpa != nil)
			m.hpa = o
		case *policyv1.PodDisruptionBudget:
			one("PodDisruptionBudget", m.pdb != nil)
			m.pdb = o
		case *networkingv1.NetworkPolicy:
			one("NetworkPolicy", m.netpol != nil)
			m.netpol = o
		case *corev1.ConfigMap:
			m.configMaps = append(m.configMaps, o)
		default:
			t.Fatalf("unexpected object %T", o)
		}
	}
	if m.deployment == nil || len(m.services) == 0 || m.serviceAccount == nil || m.hpa == nil || m.pdb == nil || m.netpol == nil {
		t.Fatalf("the base lacks a Deployment, Service, ServiceAccount, HorizontalPodAutoscaler, PodDisruptionBudget or NetworkPolicy")
	}
	return m
}

// loadBase decodes the resources kustomization.yaml lists, strictly.
func loadBase(t *testing.T) *manifests {
	t.Helper()
	var objs []runtime.Object
	for _, res := range loadKustomization(t).Resources {
		path := baseDir + "/" + res
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		o, err := decodeManifests(path, data)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
	}
	return sortManifests(t, objs)
}

// kustomization is the part of kustomization.yaml the base uses; it is
// decoded strictly, so a field kustomize would ignore fails here.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
		IncludeTemplates bool              `json:"includeTemplates"`
	} `json:"labels"`
	ConfigMapGenerator []struct {
		Name  string   `json:"name"`
		Files []string `json:"files"`
	} `json:"configMapGenerator"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
		Digest  string `json:"digest"`
	} `json:"images"`
}

func loadKustomization(t *testing.T) *kustomization {
	t.Helper()
	data, err := os.ReadFile(baseDir + "/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := sigsyaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	return &k
}

// container returns the container or init container named name.
func container(t *testing.T, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for _, list := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

func volume(spec *corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

// mountFor returns the mount of c that holds file (the deepest one) and
// the file's path inside the volume.
func mountFor(c *corev1.Container, file string) (*corev1.VolumeMount, string, error) {
	var best *corev1.VolumeMount
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		dir := strings.TrimSuffix(m.MountPath, "/")
		if file == dir || strings.HasPrefix(file, dir+"/") {
			if best == nil || len(m.MountPath) > len(best.MountPath) {
				best = m
			}
		}
	}
	if best == nil {
		return nil, "", fmt.Errorf("container %s mounts nothing at or above %s", c.Name, file)
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(file, strings.TrimSuffix(best.MountPath, "/")), "/")
	if best.SubPath != "" {
		rel = strings.TrimSuffix(best.SubPath+"/"+rel, "/")
	}
	return best, rel, nil
}

// secretBehind returns the Secret and key that file comes from in
// container c, or an error saying why it does not come from a Secret.
func secretBehind(spec *corev1.PodSpec, c *corev1.Container, file string) (name, key string, err error) {
	m, rel, err := mountFor(c, file)
	if err != nil {
		return "", "", err
	}
	if !m.ReadOnly {
		return "", "", fmt.Errorf("%s: mount %s is not read-only", file, m.MountPath)
	}
	v := volume(spec, m.Name)
	if v == nil {
		return "", "", fmt.Errorf("%s: no volume %q", file, m.Name)
	}
	find := func(secret string, items []corev1.KeyToPath, optional *bool) (string, string, bool) {
		if optional != nil && *optional {
			return "", "", false // a missing Secret would be a missing file
		}
		if len(items) == 0 {
			return secret, rel, !strings.Contains(rel, "/")
		}
		for _, it := range items {
			if strings.Trim(it.Path, "/") == rel {
				return secret, it.Key, true
			}
		}
		return "", "", false
	}
	switch {
	case v.Secret != nil:
		if s, k, ok := find(v.Secret.SecretName, v.Secret.Items, v.Secret.Optional); ok {
			return s, k, nil
		}
	case v.Projected != nil:
		for _, src := range v.Projected.Sources {
			if src.Secret == nil {
				continue
			}
			if s, k, ok := find(src.Secret.Name, src.Secret.Items, src.Secret.Optional); ok {
				return s, k, nil
			}
		}
	}
	return "", "", fmt.Errorf("%s: volume %q (at %s) has no required Secret item at %s", file, v.Name, m.MountPath, rel)
}

// flagValue returns the value after flag in args.
func flagValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// isSubset reports whether every label in sel is in labels.
func isSubset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false // an empty selector selects everything: never meant here
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
