// Package tollgate holds the domain of the tollgate authentication proxy:
// accounts, their subscriptions, registry tokens and their secrets, the
// audit log, the error type shared by every package, and the Service that
// enforces the lifecycle rules on top of a Store.
//
// The package imports only the standard library. Technologies live in
// leaves: store/sqlite and store/postgres implement Store, authz decides
// requests, api serves the management API, cmd/tollgate wires it all.
package tollgate
