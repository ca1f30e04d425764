package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tollgate/tollgate/config"
)

// TestBaseConfigIsProductionExample keeps the ConfigMap's config.yaml in
// step with configs/production.yaml: both load to the same configuration,
// except for the ops listener, which the example leaves off and the
// cluster needs for its probes and Prometheus.
func TestBaseConfigIsProductionExample(t *testing.T) {
	base := loadConfig(t, baseConfig)
	want := loadConfig(t, productionYAML)
	if want.Ops.Listen == "" {
		want.Ops.Listen = base.Ops.Listen
	}
	if !reflect.DeepEqual(base, want) {
		t.Errorf("%s and %s differ (beyond ops.listen):\nbase:       %+v\nproduction: %+v", baseConfig, productionYAML, base, want)
	}
}

// TestDeployConfigs checks what a config needs to run in a container
// behind the manifests: listeners on every interface (the kubelet and the
// Service reach the pod's address, never its loopback), the ops listener
// on, absolute paths (the image has no working directory of its own), no
// secret written inline, and the shared store and Redis that several
// replicas need.
func TestDeployConfigs(t *testing.T) {
	for _, path := range []string{baseConfig, "compose/config.yaml"} {
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) {
			c := loadConfig(t, path)
			for setting, addr := range map[string]string{"listen": c.Listen, "ops.listen": c.Ops.Listen} {
				if addr == "" {
					t.Errorf("%s is off", setting)
					continue
				}
				if host, _ := hostPort(t, setting, addr); host != "" && host != "0.0.0.0" && host != "::" {
					t.Errorf("%s = %s: bind every interface (0.0.0.0), or probes and Services cannot reach it", setting, addr)
				}
			}
			if c.Ops.PublicMetrics {
				t.Error("ops.public_metrics is on: metrics would be served to the internet")
			}
			if c.Store.Driver != config.DriverPostgres {
				t.Errorf("store.driver = %s: replicas share one PostgreSQL", c.Store.Driver)
			}
			if !c.Redis.Enabled() {
				t.Error("no redis: revocations would reach other replicas only after cache.l1_ttl")
			}
			if c.Store.Postgres.DSN != "" || c.Admin.Key != "" || c.Upstream.Password != "" || c.Redis.Password != "" {
				t.Error("a secret is written inline; name a file under /run/secrets instead")
			}
			files := configFiles(c)
			if len(files) < 4 {
				t.Fatalf("config names only %d files: %v", len(files), files)
			}
			for setting, f := range files {
				if !filepath.IsAbs(f) {
					t.Errorf("%s = %s: not an absolute path", setting, f)
				}
			}
		})
	}
}

// TestOperationsDocNamesEverySetting keeps the configuration reference in
// docs/operations.md complete: each setting's environment variable is
// there.
func TestOperationsDocNamesEverySetting(t *testing.T) {
	doc, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range config.EnvNames() {
		if !bytes.Contains(doc, []byte("`"+name+"`")) {
			t.Errorf("docs/operations.md: the configuration reference lacks %s", name)
		}
	}
}
