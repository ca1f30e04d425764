package deploy

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	kubeletconfigv1 "k8s.io/kubelet/config/v1"
)

// The node-side files of keyless pulls (docs/keyless.md#kubernetes).
const (
	credentialProviderConfig = "kubernetes/credential-provider-config.yaml"
	credentialProviderRBAC   = "kubernetes/credential-provider-rbac.yaml"
	keylessDoc               = "../docs/keyless.md"
)

// credentialProviderDecoder decodes those files strictly.
func credentialProviderDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{rbacv1.AddToScheme, kubeletconfigv1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}

// TestCredentialProviderRBACGrantsTheConfiguredAudience decodes kubelet's
// CredentialProviderConfig and the RBAC beside it strictly, and checks
// the nodes may request tokens for exactly the audience the config asks
// kubelet for: with the two out of step, kubelet's TokenRequest is
// refused and pods fall back to anonymous pulls.
// (cmd/tollgate-credential-provider runs the provider with the config's
// args.)
func TestCredentialProviderRBACGrantsTheConfiguredAudience(t *testing.T) {
	dec := credentialProviderDecoder(t)
	decode := func(path string) []runtime.Object {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeWith(dec, path, b)
		if err != nil {
			t.Fatal(err)
		}
		return objs
	}

	cfgs := decode(credentialProviderConfig)
	cfg, ok := cfgs[0].(*kubeletconfigv1.CredentialProviderConfig)
	if len(cfgs) != 1 || !ok || len(cfg.Providers) != 1 || cfg.Providers[0].TokenAttributes == nil {
		t.Fatalf("%s: want one CredentialProviderConfig with one provider with tokenAttributes", credentialProviderConfig)
	}
	audience := cfg.Providers[0].TokenAttributes.ServiceAccountTokenAudience

	var role *rbacv1.ClusterRole
	var binding *rbacv1.ClusterRoleBinding
	for _, o := range decode(credentialProviderRBAC) {
		switch o := o.(type) {
		case *rbacv1.ClusterRole:
			role = o
		case *rbacv1.ClusterRoleBinding:
			binding = o
		default:
			t.Fatalf("%s: unexpected %T", credentialProviderRBAC, o)
		}
	}
	if role == nil || binding == nil {
		t.Fatalf("%s: want a ClusterRole and a ClusterRoleBinding", credentialProviderRBAC)
	}
	granted := false
	for _, r := range role.Rules {
		granted = granted || slices.Contains(r.Verbs, "request-serviceaccounts-token-audience") &&
			slices.Contains(r.APIGroups, "") && slices.Contains(r.Resources, audience)
	}
	if !granted {
		t.Errorf("ClusterRole %s does not grant request-serviceaccounts-token-audience on %q", role.Name, audience)
	}
	nodes := slices.ContainsFunc(binding.Subjects, func(s rbacv1.Subject) bool { return s.Kind == "Group" && s.Name == "system:nodes" })
	if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != role.Name || !nodes {
		t.Errorf("ClusterRoleBinding %s does not bind %s to the group system:nodes", binding.Name, role.Name)
	}
}

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestKeylessDocShowsTheShippedFiles: the config and RBAC a reader copies
// from docs/keyless.md are the files in deploy/kubernetes (comments
// aside).
func TestKeylessDocShowsTheShippedFiles(t *testing.T) {
	doc, err := os.ReadFile(keylessDoc)
	if err != nil {
		t.Fatal(err)
	}
	_, k8s, ok := strings.Cut(string(doc), "\n## Kubernetes\n")
	if !ok {
		t.Fatalf("%s has no ## Kubernetes section", keylessDoc)
	}
	dec := credentialProviderDecoder(t)
	var shown []runtime.Object
	for _, m := range yamlBlock.FindAllStringSubmatch(k8s, -1) {
		objs, err := decodeWith(dec, keylessDoc, []byte(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		shown = append(shown, objs...)
	}
	for _, path := range []string{credentialProviderConfig, credentialProviderRBAC} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeWith(dec, path, b)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if !slices.ContainsFunc(shown, func(d runtime.Object) bool { return reflect.DeepEqual(d, o) }) {
				t.Errorf("%s does not show %s's %s as it is", keylessDoc, path, o.GetObjectKind().GroupVersionKind().Kind)
			}
		}
	}
}
