package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// There is no container engine here: this test reads compose.yaml as
// data and checks it against the compose specification's shape, the
// Dockerfile and tollgate's config. It cannot show that the stack starts.

// composeFileT is the part of the compose specification compose.yaml
// uses. Services are also checked against every key the specification
// allows (composeServiceKeys), so a misspelt key fails.
type composeFileT struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Configs  map[string]composeSource  `yaml:"configs"`
	Secrets  map[string]composeSource  `yaml:"secrets"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command     []string                              `yaml:"command"`
	Environment map[string]string                     `yaml:"environment"`
	DependsOn   map[string]struct{ Condition string } `yaml:"depends_on"`
	Ports       []string                              `yaml:"ports"`
	Configs     []composeMount                        `yaml:"configs"`
	Secrets     []composeMount                        `yaml:"secrets"`
	Volumes     []string                              `yaml:"volumes"`
	ReadOnly    bool                                  `yaml:"read_only"`
	CapDrop     []string                              `yaml:"cap_drop"`
	SecurityOpt []string                              `yaml:"security_opt"`
	StopGrace   string                                `yaml:"stop_grace_period"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// composeMount is a service's config or secret: the short form (a name)
// or the long form.
type composeMount struct {
	Source string `yaml:"source"`
	Target string `yaml:"target"`
}

func (m *composeMount) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		m.Source = n.Value
		return nil
	}
	type plain composeMount
	return n.Decode((*plain)(m))
}

type composeSource struct {
	File string `yaml:"file"`
}

// composeServiceKeys are the service attributes of the compose
// specification.
var composeServiceKeys = strings.Fields(`annotations attach blkio_config build cap_add cap_drop
	cgroup cgroup_parent command configs container_name cpu_count cpu_percent cpu_period
	cpu_quota cpu_rt_period cpu_rt_runtime cpu_shares cpus cpuset credential_spec
	depends_on deploy develop device_cgroup_rules devices dns dns_opt dns_search
	domainname driver_opts entrypoint env_file environment expose extends external_links
	extra_hosts gpus group_add healthcheck hostname image init ipc isolation labels
	label_file links logging mac_address mem_limit mem_reservation mem_swappiness
	memswap_limit network_mode networks oom_kill_disable oom_score_adj pid pids_limit
	platform ports post_start pre_stop privileged profiles provider pull_policy read_only
	restart runtime scale secrets security_opt shm_size stdin_open stop_grace_period
	stop_signal storage_opt sysctls tmpfs tty ulimits use_api_socket user userns_mode
	uts volumes volumes_from working_dir`)

func loadCompose(t *testing.T) *composeFileT {
	t.Helper()
	data, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Services map[string]map[string]any `yaml:"services"`
		Top      map[string]any            `yaml:",inline"`
	}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	for k := range raw.Top {
		if !slices.Contains([]string{"name", "networks", "volumes", "configs", "secrets", "include", "models"}, k) && !strings.HasPrefix(k, "x-") {
			t.Errorf("%q is not a top-level compose key", k)
		}
	}
	for name, s := range raw.Services {
		for k := range s {
			if !slices.Contains(composeServiceKeys, k) {
				t.Errorf("service %s: %q is not a compose service attribute", name, k)
			}
		}
	}
	var c composeFileT
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// composePath resolves a path in compose.yaml, relative to its directory.
func composePath(p string) string { return filepath.Join(filepath.Dir(composeFile), p) }

func TestCompose(t *testing.T) {
	c := loadCompose(t)
	for _, name := range []string{"tollgate", "migrate", "postgres", "redis", "registry"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("no service %s", name)
		}
	}
	for name, image := range map[string]string{"postgres": "postgres:16", "redis": "redis:7", "registry": "registry:3"} {
		if got := c.Services[name].Image; got != image {
			t.Errorf("%s: image %s, want %s", name, got, image)
		}
	}

	tg, mig := c.Services["tollgate"], c.Services["migrate"]
	for name, s := range map[string]composeService{"tollgate": tg, "migrate": mig} {
		if s.Build == nil || s.Image != tg.Image {
			t.Errorf("%s: want build and the image %s", name, tg.Image)
			continue
		}
		if _, err := os.Stat(composePath(filepath.Join(s.Build.Context, s.Build.Dockerfile))); err != nil || s.Build.Dockerfile != "deploy/Dockerfile" {
			t.Errorf("%s: build %s in %s: %v", name, s.Build.Dockerfile, s.Build.Context, err)
		}
		if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: want read_only, cap_drop ALL and no-new-privileges", name)
		}
	}

	// Both read the same config, which loads, at the path they are given.
	configPath := ""
	for name, s := range map[string]composeService{"tollgate": tg, "migrate": mig} {
		p := flagValue(s.Command, "--config")
		var src string
		for _, m := range s.Configs {
			if m.Target == p {
				src = m.Source
			}
		}
		if src == "" || c.Configs[src].File == "" {
			t.Fatalf("%s: --config %q is not a mounted config", name, p)
		}
		if configPath != "" && configPath != c.Configs[src].File {
			t.Errorf("tollgate and migrate read different configs")
		}
		configPath = c.Configs[src].File
	}
	if tg.Command[0] != "serve" || mig.Command[0] != "migrate" {
		t.Errorf("commands %v and %v, want serve and migrate", tg.Command, mig.Command)
	}
	_, stages := parseDockerfile(t, dockerfilePath)
	if cmd := stages[len(stages)-1].find("CMD"); len(cmd) != 1 || !slices.Equal(execForm(t, cmd[0]), tg.Command) {
		t.Errorf("tollgate command %v is not the image's CMD", tg.Command)
	}
	cfg := loadConfig(t, composePath(configPath))

	// Ports: the public one published, the ops one on loopback only.
	_, listen := hostPort(t, "listen", cfg.Listen)
	_, ops := hostPort(t, "ops.listen", cfg.Ops.Listen)
	published := map[int]string{}
	for _, p := range tg.Ports {
		i := strings.LastIndex(p, ":")
		port, _ := strconv.Atoi(p[i+1:])
		published[port] = p[:i]
	}
	if _, ok := published[listen]; !ok {
		t.Errorf("listen port %d is not published: %v", listen, tg.Ports)
	}
	if h, ok := published[ops]; !ok || !strings.HasPrefix(h, "127.0.0.1:") {
		t.Errorf("ops port %d: want it published on 127.0.0.1 only, got %q", ops, h)
	}

	// Every file the config names is a secret of the service; the DSN is
	// also migrate's.
	targets := func(s composeService) map[string]string {
		out := map[string]string{}
		for _, m := range s.Secrets {
			target := m.Target
			if target == "" {
				target = m.Source
			}
			if !strings.HasPrefix(target, "/") {
				target = "/run/secrets/" + target
			}
			out[target] = m.Source
		}
		return out
	}
	tgSecrets, migSecrets := targets(tg), targets(mig)
	for setting, f := range configFiles(cfg) {
		if _, ok := tgSecrets[f]; !ok {
			t.Errorf("tollgate: %s = %s is not a mounted secret", setting, f)
		}
	}
	if _, ok := migSecrets[cfg.Store.Postgres.DSNFile]; !ok {
		t.Errorf("migrate: the DSN %s is not a mounted secret", cfg.Store.Postgres.DSNFile)
	}
	ignore, err := os.ReadFile(".gitignore")
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range c.Secrets {
		if !strings.HasPrefix(s.File, "./secrets/") || !bytes.Contains(ignore, []byte("/secrets/")) {
			t.Errorf("secret %s from %s: secrets live in deploy/secrets/, which git ignores", name, s.File)
		}
	}
	for _, s := range c.Services {
		for _, m := range s.Secrets {
			if _, ok := c.Secrets[m.Source]; !ok {
				t.Errorf("secret %s is not defined", m.Source)
			}
		}
	}
	pg := c.Services["postgres"]
	if pwFile := pg.Environment["POSTGRES_PASSWORD_FILE"]; targets(pg)[pwFile] == "" {
		t.Errorf("postgres: POSTGRES_PASSWORD_FILE %q is not a mounted secret", pwFile)
	}

	// The config's addresses are the services'.
	host, port := hostPort(t, "redis.addrs[0]", cfg.Redis.Addrs[0])
	if _, ok := c.Services[host]; !ok || port != 6379 {
		t.Errorf("redis.addrs %v: want the redis service on 6379", cfg.Redis.Addrs)
	}
	if cfg.Upstream.URL != "http://registry:"+portOf(t, c.Services["registry"].Environment["REGISTRY_HTTP_ADDR"]) {
		t.Errorf("upstream.url %s is not the registry service", cfg.Upstream.URL)
	}

	// Start order: the database is healthy, then migrate has finished.
	if mig.DependsOn["postgres"].Condition != "service_healthy" || pg.Healthcheck == nil {
		t.Error("migrate: want depends_on postgres service_healthy, and a postgres healthcheck")
	}
	if tg.DependsOn["migrate"].Condition != "service_completed_successfully" {
		t.Error("tollgate: want depends_on migrate service_completed_successfully")
	}
	if _, ok := tg.DependsOn["redis"]; !ok {
		t.Error("tollgate: want depends_on redis")
	}

	// docker compose stop waits stop_grace_period before SIGKILL.
	grace, err := time.ParseDuration(tg.StopGrace)
	if err != nil || grace < cfg.Ops.ShutdownTimeout.Duration()+15*time.Second {
		t.Errorf("stop_grace_period %q, want at least ops.shutdown_timeout %v + 15s", tg.StopGrace, cfg.Ops.ShutdownTimeout)
	}
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, p := hostPort(t, "address", addr)
	return strconv.Itoa(p)
}
