package deploy

import (
	"bufio"
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// There is no container engine here: these tests read the Dockerfile as
// BuildKit would parse it and check it against the repository and the
// manifests. They cannot show that the image builds or runs.

// dockerInstruction is one Dockerfile instruction, continuations joined.
type dockerInstruction struct {
	cmd   string   // upper case: FROM, RUN, COPY...
	flags []string // leading --flag=value arguments
	args  string   // the rest
	line  int
}

type dockerStage struct {
	image, name, platform string
	ins                   []dockerInstruction
}

// parseDockerfile splits a Dockerfile into its parser directives and
// stages. It follows the Dockerfile reference: directives only at the
// very top, comment lines dropped (also inside continuations), a
// backslash at the end of a line continues it.
func parseDockerfile(t *testing.T, name string) (map[string]string, []dockerStage) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	directives := map[string]string{}
	directiveRe := regexp.MustCompile(`^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$`)
	inDirectives := true
	var stages []dockerStage
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if inDirectives {
			if m := directiveRe.FindStringSubmatch(trimmed); m != nil {
				directives[strings.ToLower(m[1])] = m[2]
				continue
			}
			inDirectives = false
		}
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		ins := splitInstruction(cur.String(), start)
		cur.Reset()
		if ins.cmd == "FROM" {
			st := dockerStage{platform: flagArg(ins.flags, "--platform")}
			fields := strings.Fields(ins.args)
			st.image = fields[0]
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				st.name = fields[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if ins.cmd != "ARG" {
				t.Fatalf("%s:%d: %s before FROM", name, start, ins.cmd)
			}
			continue
		}
		stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, ins)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur.Len() > 0 {
		t.Fatalf("%s ends in a continuation", name)
	}
	return directives, stages
}

func splitInstruction(s string, line int) dockerInstruction {
	cmd, rest, _ := strings.Cut(strings.TrimSpace(s), " ")
	ins := dockerInstruction{cmd: strings.ToUpper(cmd), line: line}
	rest = strings.TrimSpace(rest)
	for strings.HasPrefix(rest, "--") {
		flag, r, _ := strings.Cut(rest, " ")
		ins.flags = append(ins.flags, flag)
		rest = strings.TrimSpace(r)
	}
	ins.args = rest
	return ins
}

func flagArg(flags []string, name string) string {
	for _, f := range flags {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return ""
}

// execForm decodes an instruction's JSON (exec) form; shell form fails.
func execForm(t *testing.T, ins dockerInstruction) []string {
	t.Helper()
	var args []string
	if err := json.Unmarshal([]byte(ins.args), &args); err != nil {
		t.Fatalf("line %d: %s %s is not in exec form (the image has no shell): %v", ins.line, ins.cmd, ins.args, err)
	}
	return args
}

func (s dockerStage) find(cmd string) []dockerInstruction {
	var out []dockerInstruction
	for _, i := range s.ins {
		if i.cmd == cmd {
			out = append(out, i)
		}
	}
	return out
}

func TestDockerfile(t *testing.T) {
	directives, stages := parseDockerfile(t, dockerfilePath)
	// RUN --mount needs the BuildKit frontend.
	if directives["syntax"] != "docker/dockerfile:1" {
		t.Errorf("syntax directive %q, want docker/dockerfile:1", directives["syntax"])
	}
	if len(stages) != 2 {
		t.Fatalf("%d stages, want a builder and the final image", len(stages))
	}
	build, final := stages[0], stages[1]

	// The builder's Go is the go.mod's.
	goVersion := goDirective(t)
	if build.image != "golang:"+goVersion || build.name == "" {
		t.Errorf("builder FROM %s AS %s, want golang:%s (go.mod) with a name", build.image, build.name, goVersion)
	}
	for _, c := range build.find("COPY") {
		for _, src := range strings.Fields(c.args)[:len(strings.Fields(c.args))-1] {
			if src == "." {
				continue
			}
			if _, err := os.Stat(filepath.Join("..", src)); err != nil {
				t.Errorf("line %d: COPY %s: %v", c.line, src, err)
			}
		}
	}
	var out, pkg string
	for _, r := range build.find("RUN") {
		if !strings.Contains(r.args, "go build") {
			continue
		}
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-ldflags='-s -w'"} {
			if !strings.Contains(r.args, want) {
				t.Errorf("line %d: go build without %s", r.line, want)
			}
		}
		fields := strings.Fields(r.args)
		pkg = fields[len(fields)-1]
		if i := slices.Index(fields, "-o"); i >= 0 && i+1 < len(fields) {
			out = fields[i+1]
		}
	}
	if pkg == "" || out == "" {
		t.Fatal("no `go build -o OUT PKG` in the builder")
	}
	main, err := os.ReadFile(filepath.Join("..", pkg, "main.go"))
	if err != nil || !regexp.MustCompile(`(?m)^package main$`).Match(main) || !strings.Contains(string(main), "func main()") {
		t.Errorf("go build %s: not the main package (%v)", pkg, err)
	}

	// The final stage: distroless static, nonroot, nothing that needs a
	// shell.
	if !strings.HasPrefix(final.image, "gcr.io/distroless/static") || !strings.HasSuffix(final.image, ":nonroot") {
		t.Errorf("final FROM %s, want gcr.io/distroless/static-*:nonroot", final.image)
	}
	for _, i := range final.ins {
		if i.cmd == "RUN" || i.cmd == "SHELL" || i.cmd == "HEALTHCHECK" {
			t.Errorf("line %d: %s in the final stage, which has no shell", i.line, i.cmd)
		}
	}
	var binary string
	for _, c := range final.find("COPY") {
		if flagArg(c.flags, "--from") == build.name {
			f := strings.Fields(c.args)
			if len(f) == 2 && f[0] == out {
				binary = f[1]
			}
		}
	}
	if binary == "" {
		t.Errorf("the final stage does not copy %s from %s", out, build.name)
	}
	users := final.find("USER")
	if len(users) != 1 {
		t.Fatalf("final stage: %d USER instructions, want 1", len(users))
	}
	uid, _, _ := strings.Cut(users[0].args, ":")
	if uid != strconv.Itoa(nonrootUID) {
		t.Errorf("USER %s, want %d (distroless nonroot; the Deployment's runAsUser)", users[0].args, nonrootUID)
	}

	cfg := loadConfig(t, baseConfig)
	_, listen := hostPort(t, "listen", cfg.Listen)
	_, ops := hostPort(t, "ops.listen", cfg.Ops.Listen)
	var exposed []string
	for _, e := range final.find("EXPOSE") {
		exposed = append(exposed, strings.Fields(e.args)...)
	}
	if !slices.Contains(exposed, strconv.Itoa(listen)) || !slices.Contains(exposed, strconv.Itoa(ops)) {
		t.Errorf("EXPOSE %v, want %d and %d", exposed, listen, ops)
	}

	entry, cmd := final.find("ENTRYPOINT"), final.find("CMD")
	if len(entry) != 1 || len(cmd) != 1 {
		t.Fatal("want one ENTRYPOINT and one CMD")
	}
	if got := execForm(t, entry[0]); !slices.Equal(got, []string{binary}) {
		t.Errorf("ENTRYPOINT %v, want [%s]", got, binary)
	}
	// The image's default is what the Deployment runs.
	server := container(t, &loadBase(t).deployment.Spec.Template.Spec, serverContainer)
	if got := execForm(t, cmd[0]); !slices.Equal(got, server.Args) {
		t.Errorf("CMD %v, the Deployment runs %v", got, server.Args)
	}
}

// goDirective returns the major.minor of go.mod's go directive.
func goDirective(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

// TestDockerignore: the build context leaves out the git history and any
// keys or secrets lying in the work tree, and keeps everything the build
// compiles or embeds.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(dockerfilePath + ".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			if strings.HasPrefix(l, "!") {
				t.Fatalf("exception %q: this check does not handle them", l)
			}
			patterns = append(patterns, l)
		}
	}
	ignored := func(p string) bool { return dockerignored(t, patterns, p) }
	for _, p := range []string{".git/config", "tollgate-data/keys/jwt-signing.pem", "cmd/tollgate/tollgate-data/keys/seal.key", "deploy/secrets/postgres-dsn"} {
		if !ignored(p) {
			t.Errorf("%s would be sent to the builder", p)
		}
	}
	var checked int
	err = filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, "../"))
		if d.IsDir() {
			if rel == ".git" || rel == "tollgate-data" || rel == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		if rel != "go.mod" && rel != "go.sum" && (!strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go")) {
			return nil
		}
		needed := []string{rel}
		if strings.HasSuffix(rel, ".go") {
			needed = append(needed, embedded(t, p)...)
		}
		for _, n := range needed {
			checked++
			if ignored(n) {
				t.Errorf("%s is needed by the build but the .dockerignore leaves it out", n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Errorf("checked only %d files", checked)
	}
}

// embedded returns the files the //go:embed lines of the Go file at p
// name, relative to the repository root.
func embedded(t *testing.T, p string) []string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^//go:embed (.+)$`).FindAllSubmatch(data, -1) {
		for _, pat := range strings.Fields(string(m[1])) {
			pat = strings.TrimPrefix(strings.Trim(pat, "\"`"), "all:")
			matches, _ := filepath.Glob(filepath.Join(filepath.Dir(p), pat))
			if len(matches) == 0 {
				t.Errorf("%s: //go:embed %s matches nothing", p, pat)
			}
			for _, f := range matches {
				filepath.WalkDir(f, func(q string, d fs.DirEntry, err error) error {
					if err == nil && !d.IsDir() {
						out = append(out, filepath.ToSlash(strings.TrimPrefix(q, "../")))
					}
					return nil
				})
			}
		}
	}
	return out
}

// dockerignored reports whether a .dockerignore with patterns leaves out
// the file at p (slash separated, relative to the context): a pattern
// matches the path or a directory above it, from the top of the context,
// or at any depth when it starts with **/.
func dockerignored(t *testing.T, patterns []string, p string) bool {
	parts := strings.Split(p, "/")
	for _, pat := range patterns {
		anyDepth := strings.HasPrefix(pat, "**/")
		pat = strings.TrimPrefix(strings.TrimPrefix(pat, "**/"), "/")
		if strings.Contains(pat, "**") {
			t.Fatalf("pattern %q: ** only as a leading **/ is handled here", pat)
		}
		for i := range parts {
			for j := 0; j <= i && (j == 0 || anyDepth); j++ {
				if ok, _ := path.Match(pat, strings.Join(parts[j:i+1], "/")); ok {
					return true
				}
			}
		}
	}
	return false
}
