package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// EnvPrefix starts the name of every environment override. (TOLLGATE_URL,
// TOLLGATE_TOKEN and TOLLGATE_CONFIG belong to the CLI, not to this
// configuration; no setting maps to them.)
const EnvPrefix = "TOLLGATE_"

// EnvNames returns the name of every environment override, in struct
// order.
func EnvNames() []string {
	var names []string
	walkLeaves(reflect.ValueOf(defaults()).Elem(), EnvPrefix, func(name string, _ reflect.Value) {
		names = append(names, name)
	})
	return names
}

// applyEnv sets every field of the struct v points to whose environment
// variable is set: EnvPrefix followed by the field's YAML path, upper-cased
// and joined by '_'.
func applyEnv(v any, env func(string) (string, bool)) error {
	var errs []error
	walkLeaves(reflect.ValueOf(v).Elem(), EnvPrefix, func(name string, f reflect.Value) {
		s, ok := env(name)
		if !ok {
			return
		}
		if err := setField(f, s); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	})
	return errors.Join(errs...)
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// walkLeaves calls fn for every settable leaf field under the struct v,
// with its environment variable name. A leaf is a field that is not a
// struct, or whose pointer unmarshals text (like Duration).
func walkLeaves(v reflect.Value, prefix string, fn func(name string, f reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if tag == "-" {
			continue
		}
		f := v.Field(i)
		if f.Kind() == reflect.Struct && !reflect.PointerTo(f.Type()).Implements(textUnmarshaler) {
			if strings.Contains(","+opts+",", ",inline,") {
				walkLeaves(f, prefix, fn)
				continue
			}
			walkLeaves(f, prefix+envSegment(sf, tag)+"_", fn)
			continue
		}
		fn(prefix+envSegment(sf, tag), f)
	}
}

// envSegment is the field's YAML key, as yaml.v3 derives it, upper-cased.
func envSegment(sf reflect.StructField, tag string) string {
	if tag == "" {
		tag = strings.ToLower(sf.Name)
	}
	return strings.ToUpper(tag)
}

// settable reports whether setField handles fields of type t.
func settable(t reflect.Type) bool {
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String
	}
	return false
}

// setField parses s into f. Values are not quoted in errors: the field
// may hold a secret.
func setField(f reflect.Value, s string) error {
	if !settable(f.Type()) {
		return fmt.Errorf("cannot be set from the environment (%s)", f.Type())
	}
	if reflect.PointerTo(f.Type()).Implements(textUnmarshaler) {
		return f.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s))
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return errors.New("must be true or false")
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, f.Type().Bits())
		if err != nil {
			return errors.New("must be an integer")
		}
		f.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, f.Type().Bits())
		if err != nil {
			return errors.New("must be a non-negative integer")
		}
		f.SetUint(n)
	case reflect.Slice:
		var items []string
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		out := reflect.MakeSlice(f.Type(), len(items), len(items))
		for i, item := range items {
			out.Index(i).SetString(item)
		}
		f.Set(out)
	}
	return nil
}
