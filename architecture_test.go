package tollgate_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// architectureDoc is the one map of the code; its package table is what
// TestArchitectureMap holds against `go list`.
const architectureDoc = "docs/architecture.md"

// archRow is one row of the package table: a package, what its code may
// import among the module's packages, and what its tests may import
// besides.
type archRow struct {
	line        int
	mayImport   []string
	testsImport []string
}

var backticked = regexp.MustCompile("`([^`]+)`")

// readPackageTable reads the table under "## Packages" in the
// architecture doc, keyed by module-relative path ("tollgate" for the
// root).
func readPackageTable(t *testing.T) map[string]archRow {
	t.Helper()
	f, err := os.Open(architectureDoc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string]archRow{}
	in := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Packages"
			continue
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 4 {
			t.Fatalf("%s:%d: want 4 cells (package, owns, may import, tests may also import), got %d", architectureDoc, n, len(cells))
		}
		m := backticked.FindStringSubmatch(cells[0])
		if m == nil {
			t.Fatalf("%s:%d: no package in the first cell", architectureDoc, n)
		}
		if prev, ok := rows[m[1]]; ok {
			t.Fatalf("%s:%d: %s already has a row (line %d)", architectureDoc, n, m[1], prev.line)
		}
		rows[m[1]] = archRow{line: n, mayImport: names(cells[2]), testsImport: names(cells[3])}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no package table under ## Packages", architectureDoc)
	}
	return rows
}

// names returns the backticked names in a cell.
func names(cell string) []string {
	var out []string
	for _, m := range backticked.FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return out
}

// goPackage is what `go list -json` says of a package, as much as the
// test needs.
type goPackage struct {
	ImportPath   string
	Module       *struct{ Path string }
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// listModule returns the module's path and its packages.
func listModule(t *testing.T) (string, []goPackage) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	cmd := exec.Command(goBin, "list", "-json", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []goPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 || pkgs[0].Module == nil {
		t.Fatal("go list: no packages of a module")
	}
	return pkgs[0].Module.Path, pkgs
}

// TestArchitectureMap: docs/architecture.md names every package of the
// module, names no package that does not exist, and every module package
// a package (or its tests) imports is one its row allows.
func TestArchitectureMap(t *testing.T) {
	rows := readPackageTable(t)
	module, pkgs := listModule(t)
	rel := func(path string) (string, bool) {
		if path == module {
			return "tollgate", true
		}
		r, ok := strings.CutPrefix(path, module+"/")
		return r, ok
	}

	seen := map[string]bool{}
	for _, p := range pkgs {
		name, _ := rel(p.ImportPath)
		seen[name] = true
		row, ok := rows[name]
		if !ok {
			t.Errorf("package %s has no row in %s", name, architectureDoc)
			continue
		}
		check := func(imports []string, allowed []string, what string) {
			for _, imp := range imports {
				dep, ok := rel(imp)
				if !ok || dep == name {
					continue
				}
				if !slices.Contains(allowed, dep) {
					t.Errorf("%s %s %s, which its row (%s:%d) does not allow", name, what, dep, architectureDoc, row.line)
				}
			}
		}
		check(p.Imports, row.mayImport, "imports")
		if name == "tollgate" {
			// The domain speaks to every package; it depends on none,
			// nor on any library.
			for _, imp := range p.Imports {
				if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") {
					t.Errorf("the root package imports %s: it may import the standard library only", imp)
				}
			}
		}
		check(append(p.TestImports, p.XTestImports...), append(row.mayImport, row.testsImport...), "tests import")
	}
	for name, row := range rows {
		if !seen[name] {
			t.Errorf("%s:%d: %s is not a package of the module", architectureDoc, row.line, name)
		}
		for _, dep := range append(row.mayImport, row.testsImport...) {
			if _, ok := rows[dep]; !ok {
				t.Errorf("%s:%d: %s may import %s, which has no row", architectureDoc, row.line, name, dep)
			}
		}
	}
}
