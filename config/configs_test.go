package config

import (
	"path/filepath"
	"reflect"
	"testing"
)

// TestExampleConfigs loads every example config. Load does not read the
// files a config names, so this runs anywhere.
func TestExampleConfigs(t *testing.T) {
	paths, err := filepath.Glob("../configs/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 2 {
		t.Fatalf("found %d example configs", len(paths))
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			c, err := Load(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Examples get copied: none may teach writing a secret inline.
			if c.Store.Postgres.DSN != "" {
				t.Error("store.postgres.dsn is inline; use dsn_file")
			}
			if c.Admin.Key != "" {
				t.Error("admin.key is inline; use key_file")
			}
		})
	}
}

func TestProductionExample(t *testing.T) {
	c, err := Load("../configs/production.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Postgres.DSN != "" || c.Admin.Key != "" {
		t.Fatal("production example holds an inline secret")
	}
	if c.Store.Driver != DriverPostgres || c.Store.Postgres.DSNFile == "" || c.Admin.KeyFile == "" ||
		!c.TLS.Enabled() || c.Log.Format != LogJSON || c.Keys.Dir != "" || c.Keys.JWTSigningKeyFile == "" {
		t.Errorf("production example: %+v", c)
	}
}

// TestDevExampleIsDefault keeps configs/dev.yaml and Default in step:
// `tollgate dev` without a config file must behave as with it.
func TestDevExampleIsDefault(t *testing.T) {
	c, err := Load("../configs/dev.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Normalize()
	if !reflect.DeepEqual(c, want) {
		t.Errorf("dev.yaml = %+v\nDefault = %+v", c, want)
	}
}
