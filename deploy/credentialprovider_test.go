package deploy

import (
	"os"
	"slices"
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
)

// TestCredentialProviderRBACGrantsTheConfiguredAudience decodes kubelet's
// CredentialProviderConfig and the RBAC beside it strictly, and checks
// the nodes may request tokens for exactly the audience the config asks
// kubelet for: with the two out of step, kubelet's TokenRequest is
// refused and pods fall back to anonymous pulls.
// (cmd/tollgate-credential-provider runs the provider with the config's
// args.)
func TestCredentialProviderRBACGrantsTheConfiguredAudience(t *testing.T) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{rbacv1.AddToScheme, kubeletconfigv1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	dec := serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
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
