package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxConfigSize bounds the config file read.
const maxConfigSize = 1 << 20

// decodeFile decodes the YAML file at path over c, strictly.
func decodeFile(path string, c *Config) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if len(data) > maxConfigSize {
		return fmt.Errorf("config: %s: larger than %d bytes", path, maxConfigSize)
	}
	return decodeYAML(path, data, c)
}

// decodeYAML decodes one YAML document over c. Unknown keys are errors.
// Errors are "name:line: yaml.path: problem", one per problem, and never
// quote a value: a misplaced value may be a secret.
func decodeYAML(name string, data []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if errors.Is(err, io.EOF) {
		return nil // empty file: defaults
	}
	if err != nil {
		return yamlError(name, data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: must hold a single YAML document", name)
	}
	return nil
}

var (
	lineRe     = regexp.MustCompile(`^line (\d+): (.*)$`)
	notFoundRe = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	quotedRe   = regexp.MustCompile(" `[^`]*`| \"(?:[^\"\\\\]|\\\\.)*\"")
)

// yamlError rewrites the decoder's errors to name the YAML path of each
// problem and to drop the values it quotes.
func yamlError(name string, data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		// A syntax error: "yaml: line 3: mapping values are not allowed
		// in this context". These quote no values.
		return fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	paths := linePaths(data)
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		m := lineRe.FindStringSubmatch(msg)
		if m == nil {
			errs = append(errs, fmt.Errorf("%s: %s", name, quotedRe.ReplaceAllString(msg, "")))
			continue
		}
		line, _ := strconv.Atoi(m[1])
		problem := m[2]
		path := ""
		if nf := notFoundRe.FindStringSubmatch(problem); nf != nil {
			path = paths.key(line, nf[1])
			problem = "unknown key"
		} else {
			path = paths.value(line, problem)
			problem = quotedRe.ReplaceAllString(problem, "")
		}
		errs = append(errs, fmt.Errorf("%s:%d: %s: %s", name, line, path, problem))
	}
	return errors.Join(errs...)
}

// pathIndex maps lines of a YAML document to the paths of the keys and
// values on them.
type pathIndex struct {
	keys       map[int][]keyAt
	values     map[int]string
	containers map[int]string // mappings and sequences
}

type keyAt struct{ key, path string }

func linePaths(data []byte) pathIndex {
	idx := pathIndex{keys: map[int][]keyAt{}, values: map[int]string{}, containers: map[int]string{}}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil {
		return idx
	}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			// A block mapping starts on its first key's line, which
			// belongs to that key; a flow mapping shares its parent's.
			if n.Style&yaml.FlowStyle != 0 {
				idx.setValue(n.Line, path)
			}
			idx.setContainer(n.Line, path)
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				idx.keys[k.Line] = append(idx.keys[k.Line], keyAt{k.Value, p})
				walk(v, p)
			}
		case yaml.SequenceNode:
			idx.setValue(n.Line, path)
			idx.setContainer(n.Line, path)
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		default:
			idx.setValue(n.Line, path)
		}
	}
	walk(&doc, "")
	return idx
}

// setValue records the path of a value on line. The outermost value on a
// line wins: without columns, "jwt_leeway: {a: b}" is best blamed on
// jwt_leeway.
func (x pathIndex) setValue(line int, path string) {
	if _, ok := x.values[line]; !ok && path != "" {
		x.values[line] = path
	}
}

func (x pathIndex) setContainer(line int, path string) {
	if _, ok := x.containers[line]; !ok && path != "" {
		x.containers[line] = path
	}
}

// key returns the path of the key named k on line, or k.
func (x pathIndex) key(line int, k string) string {
	for _, ka := range x.keys[line] {
		if ka.key == k {
			return ka.path
		}
	}
	return k
}

// value returns the path of the value on line the problem is about.
func (x pathIndex) value(line int, problem string) string {
	if strings.Contains(problem, "!!map") || strings.Contains(problem, "!!seq") {
		if p, ok := x.containers[line]; ok {
			return p
		}
	}
	if p, ok := x.values[line]; ok {
		return p
	}
	if ks := x.keys[line]; len(ks) > 0 {
		return ks[len(ks)-1].path
	}
	return "(unknown)"
}
