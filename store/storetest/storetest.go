// Package storetest is the conformance suite every tollgate.Store must
// pass. store/sqlite and store/postgres run it from their own tests. It
// also holds the helpers other packages' tests share (Authenticate).
package storetest

import (
	"testing"

	"github.com/tollgate/tollgate"
)

// NewStore opens a fresh, empty, migrated store for one test and registers
// its cleanup with t.Cleanup.
type NewStore func(t *testing.T) tollgate.Store

// Run runs the whole suite: the Tx primitives and the Service rules on
// top of them.
func Run(t *testing.T, newStore NewStore) {
	t.Run("Tx", func(t *testing.T) { testTx(t, newStore) })
	t.Run("Service", func(t *testing.T) { testService(t, newStore) })
	t.Run("Users", func(t *testing.T) { testUsers(t, newStore) })
	t.Run("Invalidations", func(t *testing.T) { testInvalidations(t, newStore) })
	t.Run("Rotation", func(t *testing.T) { testRotation(t, newStore) })
	t.Run("Usage", func(t *testing.T) { testUsage(t, newStore) })
	t.Run("Webhooks", func(t *testing.T) { testWebhooks(t, newStore) })
	t.Run("Trust", func(t *testing.T) { testTrust(t, newStore) })
	t.Run("Refusals", func(t *testing.T) { testRefusals(t, newStore) })
	t.Run("Jobs", func(t *testing.T) { testJobs(t, newStore) })
}
