package main

// The server commands: serve, migrate, keys.

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
)

func loadConfig(lookup env, path string) (*config.Config, error) {
	if path == "" {
		path = lookup.get("TOLLGATE_CONFIG")
	}
	if path == "" {
		return nil, errors.New("no config: give --config FILE or set TOLLGATE_CONFIG (or run `tollgate dev`)")
	}
	return config.Load(path, lookup)
}

func newServeCmd(lookup env) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the server",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := loadConfig(lookup, path)
			if err != nil {
				return err
			}
			m := &Main{Config: cfg}
			if err := m.Run(c.Context()); err != nil {
				return err
			}
			err = m.Wait(c.Context())
			return errors.Join(err, m.Close())
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (default $TOLLGATE_CONFIG)")
	return cmd
}

func newMigrateCmd(lookup env) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "migrate --config FILE",
		Short: "Apply the store's schema migrations and exit (serve also applies them at start)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := loadConfig(lookup, path)
			if err != nil {
				return err
			}
			st, err := openStore(c.Context(), cfg, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%s store is up to date\n", cfg.Store.Driver)
			return st.Close()
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (default $TOLLGATE_CONFIG)")
	return cmd
}

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage the server keys"}
	var dir string
	gen := &cobra.Command{
		Use:   "generate --dir DIR",
		Short: "Write a new JWT signing key, lookup key, sealing key and admin key into DIR",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if dir == "" {
				return tollgate.FieldError("dir", "required (--dir)")
			}
			if err := config.GenerateKeys(dir); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "keys written to %s (point keys.dir at it)\n", dir)
			return nil
		},
	}
	gen.Flags().StringVar(&dir, "dir", "", "directory to write the keys into (created 0700)")
	cmd.AddCommand(gen)
	return cmd
}
