package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tollgate/tollgate/config"
)

// Names the manifests and the docs agree on.
const (
	serverContainer  = "tollgate"
	migrateContainer = "migrate"
	configMapName    = "tollgate-config"
	configKey        = "config.yaml"
	imageName        = "tollgate"
	nonrootUID       = 65532
)

// TestStrictDecoding shows the decoder the other tests rely on refuses
// what the API server's strict field validation refuses.
func TestStrictDecoding(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field":   "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 3}\n",
		"wrong case":      "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{Port: 443}]}\n",
		"duplicate field": "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\nmetadata: {name: y}\n",
		"unknown kind":    "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\n",
		"wrong type":      "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec: {maxUnavailable: [1]}\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeManifests(name, []byte(doc)); err == nil {
				t.Error("decoded without error")
			}
		})
	}
	if _, err := decodeManifests("ok", []byte("# just a comment\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\n")); err != nil {
		t.Errorf("a valid manifest: %v", err)
	}
}

// TestKustomization checks what `kustomize build` would trip on: every
// resource and generator file exists, every manifest in the directory is
// listed, and the generator and image names are the ones the Deployment
// uses.
func TestKustomization(t *testing.T) {
	k := loadKustomization(t)
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("apiVersion/kind = %s/%s", k.APIVersion, k.Kind)
	}
	used := map[string]bool{"kustomization.yaml": true}
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join(baseDir, r)); err != nil {
			t.Errorf("resource %s: %v", r, err)
		}
		used[r] = true
	}
	var generated bool
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.Files {
			if _, err := os.Stat(filepath.Join(baseDir, f)); err != nil {
				t.Errorf("configMapGenerator %s: %v", g.Name, err)
			}
			used[f] = true
			generated = generated || (g.Name == configMapName && filepath.Base(f) == configKey)
		}
	}
	if !generated {
		t.Errorf("no configMapGenerator %s with %s", configMapName, configKey)
	}
	yamls, _ := filepath.Glob(filepath.Join(baseDir, "*.yaml"))
	for _, y := range yamls {
		if !used[filepath.Base(y)] {
			t.Errorf("%s is in the base but not in kustomization.yaml", y)
		}
	}
	if len(k.Images) != 1 || k.Images[0].Name != imageName || k.Images[0].NewName == "" {
		t.Errorf("images: want one entry for %q with a newName, got %+v", imageName, k.Images)
	}
	m := loadBase(t)
	for _, c := range slices.Concat(m.deployment.Spec.Template.Spec.InitContainers, m.deployment.Spec.Template.Spec.Containers) {
		if c.Image != imageName {
			t.Errorf("container %s: image %q, want %q (set by kustomization images)", c.Name, c.Image, imageName)
		}
	}
}

// TestProbes: liveness and startup on /healthz, readiness on /readyz, all
// on the named ops port, over plain HTTP (the ops listener has no TLS).
func TestProbes(t *testing.T) {
	c := container(t, &loadBase(t).deployment.Spec.Template.Spec, serverContainer)
	for name, tc := range map[string]struct {
		p    *corev1.Probe
		path string
	}{
		"startupProbe":   {c.StartupProbe, "/healthz"},
		"livenessProbe":  {c.LivenessProbe, "/healthz"},
		"readinessProbe": {c.ReadinessProbe, "/readyz"},
	} {
		p := tc.p
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", name)
			continue
		}
		if p.HTTPGet.Path != tc.path || p.HTTPGet.Port != intstr.FromString("ops") {
			t.Errorf("%s: %s on port %s, want %s on port ops", name, p.HTTPGet.Path, p.HTTPGet.Port.String(), tc.path)
		}
		if p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP {
			t.Errorf("%s: scheme %s; the ops listener speaks HTTP", name, p.HTTPGet.Scheme)
		}
	}
	// /readyz gives its checks 2 s; a shorter probe timeout would fail a
	// slow but healthy answer.
	if p := c.ReadinessProbe; p != nil && p.TimeoutSeconds <= 2 {
		t.Errorf("readinessProbe.timeoutSeconds = %d, want more than /readyz's 2s", p.TimeoutSeconds)
	}
}

// TestPorts: the container ports are the ports the config listens on,
// the Services and the scrape annotation use them by name or number, and
// each Service's targetPort exists.
func TestPorts(t *testing.T) {
	cfg := loadConfig(t, baseConfig)
	m := loadBase(t)
	pod := m.deployment.Spec.Template
	c := container(t, &pod.Spec, serverContainer)
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	_, listen := hostPort(t, "listen", cfg.Listen)
	_, ops := hostPort(t, "ops.listen", cfg.Ops.Listen)
	if ports["http"] != int32(listen) || ports["ops"] != int32(ops) || len(ports) != 2 {
		t.Errorf("container ports %v, want http=%d (listen) and ops=%d (ops.listen)", ports, listen, ops)
	}
	if got := pod.Annotations["prometheus.io/port"]; got != strconv.Itoa(ops) {
		t.Errorf("prometheus.io/port = %q, want %d", got, ops)
	}
	if pod.Annotations["prometheus.io/path"] != "/metrics" {
		t.Errorf("prometheus.io/path = %q", pod.Annotations["prometheus.io/path"])
	}
	targets := map[string]bool{}
	for _, s := range m.services {
		for _, p := range s.Spec.Ports {
			tp := p.TargetPort
			if tp.Type == intstr.String {
				if _, ok := ports[tp.StrVal]; !ok {
					t.Errorf("Service %s port %s: targetPort %s is not a container port", s.Name, p.Name, tp.StrVal)
				}
				targets[tp.StrVal] = true
			} else {
				t.Errorf("Service %s port %s: name the targetPort (http or ops), not %d", s.Name, p.Name, tp.IntVal)
			}
		}
		// The ops port never goes on a load balancer.
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer || s.Spec.Type == corev1.ServiceTypeNodePort {
			for _, p := range s.Spec.Ports {
				if p.TargetPort.StrVal == "ops" {
					t.Errorf("Service %s (%s) exposes the ops port", s.Name, s.Spec.Type)
				}
			}
		}
	}
	if !targets["http"] || !targets["ops"] {
		t.Errorf("Services reach %v, want both http and ops", targets)
	}
}

// TestSecretsMounted: every file the config names is in the server
// container, from a Secret, read-only; the migrate init container has the
// DSN; and docs/operations.md says how to create each Secret and key.
func TestSecretsMounted(t *testing.T) {
	cfg := loadConfig(t, baseConfig)
	spec := &loadBase(t).deployment.Spec.Template.Spec
	server := container(t, spec, serverContainer)
	doc, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	for setting, file := range configFiles(cfg) {
		name, key, err := secretBehind(spec, server, file)
		if err != nil {
			t.Errorf("%s: %v", setting, err)
			continue
		}
		t.Logf("%s = %s ← Secret %s, key %s", setting, file, name, key)
		if !docHasRow(doc, name, key) {
			t.Errorf("%s: docs/operations.md does not say how to create Secret %s with key %s", setting, name, key)
		}
	}
	if _, _, err := secretBehind(spec, container(t, spec, migrateContainer), cfg.Store.Postgres.DSNFile); err != nil {
		t.Errorf("migrate: store.postgres.dsn_file: %v", err)
	}
	for _, v := range spec.Volumes {
		var mode *int32
		switch {
		case v.Secret != nil:
			mode = v.Secret.DefaultMode
		case v.Projected != nil:
			mode = v.Projected.DefaultMode
		default:
			continue
		}
		if mode == nil || *mode&0o007 != 0 {
			t.Errorf("volume %s: defaultMode %v lets any user read the secrets; want 0440 with fsGroup", v.Name, mode)
		}
	}
}

// docHasRow reports whether a line of doc names both `a` and `b`.
func docHasRow(doc []byte, a, b string) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if bytes.Contains(line, []byte("`"+a+"`")) && bytes.Contains(line, []byte("`"+b+"`")) {
			return true
		}
	}
	return false
}

// TestConfigMounted: both containers read the config the ConfigMap
// generator makes, at the path their args give.
func TestConfigMounted(t *testing.T) {
	spec := &loadBase(t).deployment.Spec.Template.Spec
	for name, cmd := range map[string]string{serverContainer: "serve", migrateContainer: "migrate"} {
		c := container(t, spec, name)
		if len(c.Command) != 0 {
			t.Errorf("%s: command %v overrides the image's entrypoint", name, c.Command)
		}
		if len(c.Args) == 0 || c.Args[0] != cmd {
			t.Errorf("%s: args %v, want %s --config ...", name, c.Args, cmd)
		}
		path := flagValue(c.Args, "--config")
		m, rel, err := mountFor(c, path)
		if err != nil {
			t.Errorf("%s: --config %q: %v", name, path, err)
			continue
		}
		v := volume(spec, m.Name)
		if v == nil || v.ConfigMap == nil || v.ConfigMap.Name != configMapName {
			t.Errorf("%s: %s is not from ConfigMap %s", name, path, configMapName)
			continue
		}
		found := len(v.ConfigMap.Items) == 0 && rel == configKey
		for _, it := range v.ConfigMap.Items {
			found = found || (it.Key == configKey && it.Path == rel)
		}
		if !found {
			t.Errorf("%s: %s is not the ConfigMap's %s", name, path, configKey)
		}
	}
}

// TestHardening: non-root with the image's user, no privilege escalation,
// no capabilities, read-only root, the runtime's seccomp profile, no API
// token, no service-link environment.
func TestHardening(t *testing.T) {
	m := loadBase(t)
	spec := m.deployment.Spec.Template.Spec
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != nonrootUID {
		t.Errorf("pod securityContext: want runAsNonRoot and runAsUser %d", nonrootUID)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod securityContext: want seccompProfile RuntimeDefault")
	}
	if psc == nil || psc.FSGroup == nil {
		t.Error("pod securityContext: want fsGroup, so that 0440 secret files are readable")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("pod: want automountServiceAccountToken false")
	}
	if sa := m.serviceAccount; spec.ServiceAccountName != sa.Name || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("pod uses ServiceAccount %q; want %q with automountServiceAccountToken false", spec.ServiceAccountName, sa.Name)
	}
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		t.Error("pod: want enableServiceLinks false (service links set TOLLGATE_* variables)")
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Error("pod shares a host namespace")
	}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s: no securityContext", c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s: want allowPrivilegeEscalation false", c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s: want readOnlyRootFilesystem", c.Name)
		case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
			t.Errorf("%s: want capabilities drop ALL and none added", c.Name)
		case sc.Privileged != nil && *sc.Privileged:
			t.Errorf("%s: privileged", c.Name)
		case sc.RunAsUser != nil && *sc.RunAsUser == 0:
			t.Errorf("%s: runs as root", c.Name)
		}
	}
}

// TestShutdownBudget: the kubelet's grace period covers the preStop
// sleep plus everything tollgate does after SIGTERM (cmd/tollgate
// Main.Close): drain for ops.shutdown_timeout, flush usage writes (10s),
// close the ops listener (5s).
func TestShutdownBudget(t *testing.T) {
	const afterDrain = 15 * time.Second
	cfg := loadConfig(t, baseConfig)
	spec := loadBase(t).deployment.Spec.Template.Spec
	c := container(t, &spec, serverContainer)
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("want a preStop sleep, so that endpoints drop the pod before it stops listening")
	}
	preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if preStop < 2*time.Second || preStop > 15*time.Second {
		t.Errorf("preStop sleep %v, want a few seconds", preStop)
	}
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatal("no terminationGracePeriodSeconds")
	}
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	need := preStop + cfg.Ops.ShutdownTimeout.Duration() + afterDrain
	if grace < need {
		t.Errorf("terminationGracePeriodSeconds %v < preStop %v + ops.shutdown_timeout %v + %v", grace, preStop, cfg.Ops.ShutdownTimeout, afterDrain)
	}
	if s := loadBase(t).deployment.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable == nil || s.MaxUnavailable.IntValue() != 0 {
		t.Error("rolling update: want maxUnavailable 0")
	}
}

// TestResources: every container requests CPU and memory and is capped in
// memory, and the Go runtime's soft limit sits below the cap.
func TestResources(t *testing.T) {
	spec := loadBase(t).deployment.Spec.Template.Spec
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		r := c.Resources
		if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
			t.Errorf("%s: want cpu and memory requests and a memory limit, got %+v", c.Name, r)
		}
		if r.Limits.Memory().Cmp(*r.Requests.Memory()) < 0 {
			t.Errorf("%s: memory limit below request", c.Name)
		}
	}
	c := container(t, &spec, serverContainer)
	var gomemlimit string
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			gomemlimit = e.Value
		}
	}
	limit, err := parseGoMemLimit(gomemlimit)
	if err != nil {
		t.Fatalf("GOMEMLIMIT %q: %v", gomemlimit, err)
	}
	mem := c.Resources.Limits.Memory().Value()
	if limit >= mem || limit < mem*7/10 {
		t.Errorf("GOMEMLIMIT %s is not 70-99%% of limits.memory %s", gomemlimit, c.Resources.Limits.Memory())
	}
}

// parseGoMemLimit parses GOMEMLIMIT's syntax: bytes with an optional B,
// KiB, MiB, GiB or TiB suffix.
func parseGoMemLimit(s string) (int64, error) {
	mult := int64(1)
	for i, suf := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if n, ok := strings.CutSuffix(s, suf); ok {
			s, mult = n, int64(1)<<(10*(i+1))
			break
		}
	}
	s = strings.TrimSuffix(s, "B")
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

// TestEnvironment: every TOLLGATE_* variable the Deployment sets is a
// config override, and no Service's link variables (were service links on)
// would be one.
func TestEnvironment(t *testing.T) {
	m := loadBase(t)
	known := map[string]bool{}
	for _, n := range config.EnvNames() {
		known[n] = true
	}
	for _, c := range m.deployment.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			if strings.HasPrefix(e.Name, config.EnvPrefix) && !known[e.Name] {
				t.Errorf("%s: %s is not a config setting", c.Name, e.Name)
			}
			if inlineSecrets[e.Name] && e.Value != "" {
				t.Errorf("%s: %s holds a secret in the manifest; mount a Secret file", c.Name, e.Name)
			}
		}
	}
	for _, s := range m.services {
		prefix := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_")) + "_"
		names := []string{prefix + "SERVICE_HOST", prefix + "SERVICE_PORT", prefix + "PORT"}
		for _, p := range s.Spec.Ports {
			proto := strings.ToUpper(string(p.Protocol))
			base := prefix + "PORT_" + strconv.Itoa(int(p.Port)) + "_" + proto
			names = append(names, prefix+"SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_")),
				base, base+"_PROTO", base+"_PORT", base+"_ADDR")
		}
		for _, n := range names {
			if known[n] {
				t.Errorf("Service %s would set %s, a config override, in pods with service links", s.Name, n)
			}
		}
	}
}

// inlineSecrets are the overrides that carry a secret itself, not a file.
var inlineSecrets = map[string]bool{
	"TOLLGATE_STORE_POSTGRES_DSN": true, "TOLLGATE_ADMIN_KEY": true,
	"TOLLGATE_UPSTREAM_PASSWORD": true, "TOLLGATE_REDIS_PASSWORD": true,
}

// TestSelectors: the Services, the autoscaler, the disruption budget and
// the network policy all pick the Deployment's pods.
func TestSelectors(t *testing.T) {
	m := loadBase(t)
	d := m.deployment
	labels := d.Spec.Template.Labels
	if d.Spec.Selector == nil || !isSubset(d.Spec.Selector.MatchLabels, labels) || len(d.Spec.Selector.MatchExpressions) > 0 {
		t.Fatalf("Deployment selector %v does not match its pod labels %v", d.Spec.Selector, labels)
	}
	for _, s := range m.services {
		if !isSubset(s.Spec.Selector, labels) {
			t.Errorf("Service %s selects %v, pods have %v", s.Name, s.Spec.Selector, labels)
		}
	}
	if ref := m.hpa.Spec.ScaleTargetRef; ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
		t.Errorf("HPA scales %+v, want Deployment %s", ref, d.Name)
	}
	if sel := m.pdb.Spec.Selector; sel == nil || !isSubset(sel.MatchLabels, labels) {
		t.Errorf("PDB selects %v, pods have %v", sel, labels)
	}
	if !isSubset(m.netpol.Spec.PodSelector.MatchLabels, labels) {
		t.Errorf("NetworkPolicy selects %v, pods have %v", m.netpol.Spec.PodSelector.MatchLabels, labels)
	}
	for _, tsc := range d.Spec.Template.Spec.TopologySpreadConstraints {
		if tsc.LabelSelector == nil || !isSubset(tsc.LabelSelector.MatchLabels, labels) {
			t.Errorf("topology spread on %s counts %v, pods have %v", tsc.TopologyKey, tsc.LabelSelector, labels)
		}
	}
}

// TestScaling: the autoscaler owns the replica count (at least 3, on
// CPU), a drain takes one pod at a time, and pods spread over nodes.
func TestScaling(t *testing.T) {
	m := loadBase(t)
	if m.deployment.Spec.Replicas != nil {
		t.Error("Deployment sets replicas: each kubectl apply would reset what the autoscaler chose")
	}
	h := m.hpa.Spec
	if h.MinReplicas == nil || *h.MinReplicas < 3 || h.MaxReplicas < *h.MinReplicas {
		t.Errorf("HPA replicas %v..%d, want at least 3", h.MinReplicas, h.MaxReplicas)
	}
	var cpu bool
	for _, mt := range h.Metrics {
		cpu = cpu || (mt.Resource != nil && mt.Resource.Name == corev1.ResourceCPU && mt.Resource.Target.AverageUtilization != nil)
	}
	if !cpu {
		t.Error("HPA: want a CPU utilization target")
	}
	// PostgreSQL must hold every replica's pool.
	cfg := loadConfig(t, baseConfig)
	t.Logf("PostgreSQL connections at maxReplicas: %d x %d = %d", h.MaxReplicas, cfg.Store.Postgres.MaxConns, int(h.MaxReplicas)*cfg.Store.Postgres.MaxConns)

	p := m.pdb.Spec
	switch {
	case p.MaxUnavailable != nil:
		if p.MaxUnavailable.IntValue() != 1 {
			t.Errorf("PDB maxUnavailable %s, want 1", p.MaxUnavailable.String())
		}
	case p.MinAvailable != nil:
		if p.MinAvailable.IntValue() < int(*h.MinReplicas)-1 {
			t.Errorf("PDB minAvailable %s lets more than one of %d pods go", p.MinAvailable.String(), *h.MinReplicas)
		}
	default:
		t.Error("PDB sets neither maxUnavailable nor minAvailable")
	}
	var hostSpread bool
	for _, tsc := range m.deployment.Spec.Template.Spec.TopologySpreadConstraints {
		hostSpread = hostSpread || (tsc.TopologyKey == corev1.LabelHostname && tsc.MaxSkew == 1)
	}
	if !hostSpread {
		t.Error("no topology spread over kubernetes.io/hostname")
	}
}

// TestNetworkPolicy: clients reach the public port from anywhere, only the
// monitoring namespace reaches the ops port, and egress is what the config
// talks to: DNS, PostgreSQL, Redis, the upstreams.
func TestNetworkPolicy(t *testing.T) {
	cfg := loadConfig(t, baseConfig)
	np := loadBase(t).netpol.Spec
	if !slices.Contains(np.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Fatalf("policyTypes %v, want Ingress and Egress", np.PolicyTypes)
	}
	var httpOpen, opsRestricted bool
	for _, r := range np.Ingress {
		for _, p := range r.Ports {
			if p.Port == nil {
				t.Errorf("an ingress rule allows every port")
				continue
			}
			switch p.Port.String() {
			case "http":
				httpOpen = httpOpen || len(r.From) == 0
			case "ops":
				if len(r.From) == 0 {
					t.Error("the ops port is open to everyone")
				}
				for _, f := range r.From {
					if f.IPBlock != nil || f.NamespaceSelector == nil || len(f.NamespaceSelector.MatchLabels) == 0 {
						t.Errorf("the ops port is open to %+v, want a monitoring namespace selector", f)
					}
				}
				opsRestricted = len(r.From) > 0
			default:
				t.Errorf("ingress to port %s: want the named ports http and ops", p.Port.String())
			}
		}
		if len(r.Ports) == 0 {
			t.Error("an ingress rule allows every port")
		}
	}
	if !httpOpen || !opsRestricted {
		t.Errorf("ingress: http open %v, ops restricted %v; want both", httpOpen, opsRestricted)
	}

	egress := map[string]bool{}
	for _, r := range np.Egress {
		for _, p := range r.Ports {
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			if p.Port != nil {
				egress[string(proto)+"/"+p.Port.String()] = true
			}
		}
		if len(r.Ports) == 0 {
			t.Error("an egress rule allows every port")
		}
	}
	need := map[string]string{"UDP/53": "DNS", "TCP/53": "DNS", "TCP/5432": "PostgreSQL"}
	for i, a := range cfg.Redis.Addrs {
		_, port := hostPort(t, "redis.addrs", a)
		need["TCP/"+strconv.Itoa(port)] = "redis.addrs[" + strconv.Itoa(i) + "]"
	}
	need["TCP/"+urlPort(t, cfg.Upstream.URL)] = "upstream.url"
	need["TCP/443"] = "HTTPS upstreams (packages)"
	for i, r := range cfg.Packages.Repositories {
		need["TCP/"+urlPort(t, r.URL)] = "packages.repositories[" + strconv.Itoa(i) + "].url"
	}
	for port, what := range need {
		if !egress[port] {
			t.Errorf("egress: %s (%s) is not allowed", port, what)
		}
	}
}

// TestKustomizeBuild runs the real kustomize (kubectl's) over the base
// and decodes its output strictly: the generated ConfigMap holds
// config.yaml as it is, the Deployment mounts it under its hashed name,
// and the image is the one kustomization.yaml names.
func TestKustomizeBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed: kustomize build not run (the other tests check the sources)")
	}
	out, err := exec.Command(kubectl, "kustomize", baseDir).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("kubectl kustomize: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	objs, err := decodeManifests("kustomize build", out)
	if err != nil {
		t.Fatal(err)
	}
	m := sortManifests(t, objs)
	if len(m.configMaps) != 1 {
		t.Fatalf("%d ConfigMaps, want 1", len(m.configMaps))
	}
	cm := m.configMaps[0]
	want, err := os.ReadFile(baseConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cm.Name, configMapName+"-") || cm.Data[configKey] != string(want) {
		t.Errorf("ConfigMap %s does not hold %s as it is", cm.Name, baseConfig)
	}
	spec := &m.deployment.Spec.Template.Spec
	for _, name := range []string{serverContainer, migrateContainer} {
		mnt, _, err := mountFor(container(t, spec, name), "/etc/tollgate/config.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if v := volume(spec, mnt.Name); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
			t.Errorf("%s: config volume does not name the generated ConfigMap %s", name, cm.Name)
		}
	}
	k := loadKustomization(t)
	img := k.Images[0].NewName + ":" + k.Images[0].NewTag
	if got := container(t, spec, serverContainer).Image; got != img {
		t.Errorf("image %s, want %s", got, img)
	}
	for _, s := range m.services {
		if !isSubset(s.Spec.Selector, m.deployment.Spec.Template.Labels) {
			t.Errorf("after the build, Service %s no longer selects the pods", s.Name)
		}
	}
}

// urlPort returns the port of a URL, defaulting by scheme.
func urlPort(t *testing.T, raw string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(raw, "https://")
	port := "443"
	if !ok {
		if rest, ok = strings.CutPrefix(raw, "http://"); !ok {
			t.Fatalf("%q: not an http(s) URL", raw)
		}
		port = "80"
	}
	host, _, _ := strings.Cut(rest, "/")
	if i := strings.LastIndex(host, ":"); i >= 0 && !strings.HasSuffix(host, "]") {
		port = host[i+1:]
	}
	return port
}
