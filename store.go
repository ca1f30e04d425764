package tollgate

import (
	"context"
	"time"
)

// Store is the source of truth. Implementations (store/sqlite,
// store/postgres) are plain persistence: every rule lives in Service, which
// runs read-modify-write sequences inside Update.
//
// Errors: ENOTFOUND for a missing row, ECONFLICT for a unique violation,
// EUNAVAILABLE when the database cannot be reached, EINTERNAL otherwise.
type Store interface {
	// Update runs fn in one read-write transaction and commits if fn
	// returns nil; on error, panic or a cancelled context nothing fn wrote
	// remains. Two Updates that both lock the same account (AccountByID or
	// AccountByName with forUpdate) run one after the other. A failed
	// statement (a conflict, say) undoes only itself, so fn may go on.
	// Never call Update or View from inside fn.
	Update(ctx context.Context, fn func(tx Tx) error) error
	// View runs fn with read access; it may see a consistent snapshot or
	// plain autocommit reads. Write methods inside View fail with
	// EINTERNAL and forUpdate is ignored.
	View(ctx context.Context, fn func(tx Tx) error) error
	// RecordUsage stores last-used data for many tokens at once, outside
	// any lifecycle transaction. Unknown token ids are ignored; repeated
	// ids are merged; pulls add up; last-used data never moves backwards.
	RecordUsage(ctx context.Context, usage []TokenUsage) error
	// Ping reports whether the database answers.
	Ping(ctx context.Context) error
	Close() error
}

// Tx is what Service may do inside a transaction. Methods that take
// forUpdate lock the row until the transaction ends where the database
// supports row locks (SQLite serializes all writers instead).
type Tx interface {
	RotationTx // rotation.go
	OutboxTx   // outbox.go
	TrustTx    // trust.go
	JobTx      // jobs.go

	// InsertAccount stores a new account. ECONFLICT if the name is taken.
	InsertAccount(ctx context.Context, a *Account) error
	// AccountByID and AccountByName return ENOTFOUND if there is none.
	AccountByID(ctx context.Context, id string, forUpdate bool) (*Account, error)
	AccountByName(ctx context.Context, name string, forUpdate bool) (*Account, error)
	// UpdateAccount writes every field of a (by ID) except CreatedAt;
	// ENOTFOUND for an unknown id. Empty subscription lists read back nil.
	UpdateAccount(ctx context.Context, a *Account) error
	// ListAccounts returns all accounts ordered by name.
	ListAccounts(ctx context.Context) ([]*Account, error)

	// SetAccountKey replaces the account's API key hash (nil clears it);
	// ENOTFOUND for an unknown account, ECONFLICT if another has the hash.
	SetAccountKey(ctx context.Context, accountID string, hash []byte) error
	// AccountByKeyHash finds the account whose API key hashes to hash.
	AccountByKeyHash(ctx context.Context, hash []byte) (*Account, error)

	// InsertToken stores a new token with its lookup hash and sealed
	// secret (nil for an ephemeral credential, kept with its Identity).
	// ECONFLICT if the id or hash exists.
	InsertToken(ctx context.Context, t *Token, hash, sealed []byte) error
	// TokenByID and TokenByHash return ENOTFOUND if there is none; both
	// fill AccountName.
	TokenByID(ctx context.Context, id string) (*Token, error)
	TokenByHash(ctx context.Context, hash []byte) (*Token, error)
	// UpdateToken writes the mutable fields of t (by ID): name,
	// description, scope, expiry, updated and revoked times.
	UpdateToken(ctx context.Context, t *Token) error
	// ListTokens returns the account's tokens, oldest first.
	ListTokens(ctx context.Context, accountID string) ([]*Token, error)
	// CountActiveTokens counts the account's tokens that are not revoked,
	// ephemeral credentials left out.
	CountActiveTokens(ctx context.Context, accountID string) (int, error)
	// SealedSecret returns the sealed secret stored with the token (nil
	// if it was stored without one).
	SealedSecret(ctx context.Context, tokenID string) ([]byte, error)

	// AppendInvalidation appends inv to the invalidation log and sets
	// inv.Seq. Service calls it in the transaction of every write that
	// changes a token or an account, so the log holds a write if and only
	// if the write committed. Sequence numbers only grow, and entries
	// become visible in sequence order: once a reader sees entry n, no
	// entry below n can still commit (a rolled-back append leaves a gap
	// that is never filled). Inside View: EINTERNAL.
	AppendInvalidation(ctx context.Context, inv *Invalidation) error
	// InvalidationsAfter returns up to limit log entries with Seq > after,
	// in Seq order (limit <= 0: all of them). Caches read it to catch up
	// on invalidations Redis did not deliver.
	InvalidationsAfter(ctx context.Context, after int64, limit int) ([]Invalidation, error)
	// LastInvalidation returns the highest Seq in the log, 0 if it is
	// empty. A row read after it in the same View reflects every write
	// logged up to that Seq.
	LastInvalidation(ctx context.Context) (int64, error)
	// PruneInvalidations deletes the log entries that precede the newest
	// entry written before before, and says how many went. What goes is
	// always a prefix of the log, and that newest old entry stays as its
	// mark: a reader whose last applied entry is gone and who finds a gap
	// after it knows the gap was pruned (it may have missed entries); a
	// reader whose last entry is still there knows a gap after it is a
	// rolled-back append. The head of the log is never deleted, so
	// LastInvalidation never goes back. Idempotent; safe to run from many
	// replicas at once.
	PruneInvalidations(ctx context.Context, before time.Time) (int64, error)

	// InsertAudit appends e and sets e.ID.
	InsertAudit(ctx context.Context, e *AuditEvent) error
	// ListAudit returns the account's events newest first (see AuditPage;
	// Limit <= 0 returns them all).
	ListAudit(ctx context.Context, accountID string, page AuditPage) ([]*AuditEvent, error)

	// Console users (see user.go). InsertUser: ECONFLICT if the email or
	// id is taken, ENOTFOUND for an unknown account. The lookups return
	// ENOTFOUND if there is none and fill AccountName.
	InsertUser(ctx context.Context, u *User) error
	UserByID(ctx context.Context, id string) (*User, error)
	UserByEmail(ctx context.Context, email string) (*User, error)
	UserByLinkHash(ctx context.Context, hash []byte) (*User, error)
	// UpdateUser writes role, password hash, link hash and expiry and the
	// updated time (by ID); ENOTFOUND for an unknown id.
	UpdateUser(ctx context.Context, u *User) error
	// ListUsers returns the account's users ordered by email.
	ListUsers(ctx context.Context, accountID string) ([]*User, error)

	// Console sessions. InsertSession: ECONFLICT if the id or hash
	// exists. SessionByHash: ENOTFOUND if there is none. TouchSession
	// sets LastSeenAt (ENOTFOUND for an unknown id). The deletes are not
	// errors when nothing matches; DeleteExpiredSessions removes those
	// whose ExpiresAt is at or before now and says how many.
	InsertSession(ctx context.Context, s *Session) error
	SessionByHash(ctx context.Context, hash []byte) (*Session, error)
	TouchSession(ctx context.Context, id string, at time.Time) error
	DeleteSession(ctx context.Context, id string) error
	DeleteUserSessions(ctx context.Context, userID string) error
	DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error)
}

// TokenUsage is one token's most recent use.
type TokenUsage struct {
	TokenID string
	At      time.Time
	IP      string
	UA      string
	Pulls   int64 // requests since the last record, added to the total
	// Previous says the use was by the token's previous secret (see
	// rotation.go): its own last-use data is updated too.
	Previous bool
}
