package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/internal/codec"
)

const userColumns = `u.id, u.account_id, a.name, u.email, u.role, u.password_hash, u.link_hash, u.link_expires_at,
	u.created_at, u.updated_at`

const userFrom = ` FROM users u JOIN accounts a ON a.id = u.account_id `

func (t *tx) InsertUser(ctx context.Context, u *tollgate.User) error {
	if err := t.writable(); err != nil {
		return err
	}
	_, err := t.guardedExec(ctx, `
		INSERT INTO users (id, account_id, email, role, password_hash, link_hash, link_expires_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		u.ID, u.AccountID, u.Email, string(u.Role), u.PasswordHash, codec.NullBytes(u.LinkHash), nullTime(u.LinkExpiresAt),
		utc(u.CreatedAt), utc(u.UpdatedAt))
	return dbError(err, "account not found", "a user with this email or id already exists")
}

func (t *tx) UserByID(ctx context.Context, id string) (*tollgate.User, error) {
	return t.user(ctx, `SELECT `+userColumns+userFrom+`WHERE u.id = $1`, id)
}

func (t *tx) UserByEmail(ctx context.Context, email string) (*tollgate.User, error) {
	return t.user(ctx, `SELECT `+userColumns+userFrom+`WHERE u.email = $1`, email)
}

func (t *tx) UserByLinkHash(ctx context.Context, hash []byte) (*tollgate.User, error) {
	if len(hash) == 0 {
		return nil, tollgate.Errorf(tollgate.ENOTFOUND, "user not found")
	}
	return t.user(ctx, `SELECT `+userColumns+userFrom+`WHERE u.link_hash = $1`, hash)
}

func (t *tx) user(ctx context.Context, query string, arg any) (*tollgate.User, error) {
	u, err := scanUser(t.q.QueryRow(ctx, query, arg))
	if err != nil {
		return nil, dbError(err, "user not found", "")
	}
	return u, nil
}

func (t *tx) UpdateUser(ctx context.Context, u *tollgate.User) error {
	if err := t.writable(); err != nil {
		return err
	}
	tag, err := t.guardedExec(ctx, `
		UPDATE users SET role = $1, password_hash = $2, link_hash = $3, link_expires_at = $4, updated_at = $5
		WHERE id = $6`,
		string(u.Role), u.PasswordHash, codec.NullBytes(u.LinkHash), nullTime(u.LinkExpiresAt), utc(u.UpdatedAt), u.ID)
	return affectedOne(tag, err, "user not found", "this link is already in use")
}

func (t *tx) ListUsers(ctx context.Context, accountID string) ([]*tollgate.User, error) {
	rows, err := t.q.Query(ctx, `SELECT `+userColumns+userFrom+`WHERE u.account_id = $1 ORDER BY u.email COLLATE "C"`, accountID)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []*tollgate.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, dbError(err, "", "")
		}
		out = append(out, u)
	}
	return out, dbError(rows.Err(), "", "")
}

func scanUser(s pgx.Row) (*tollgate.User, error) {
	var (
		u    tollgate.User
		role string
	)
	if err := s.Scan(&u.ID, &u.AccountID, &u.AccountName, &u.Email, &role, &u.PasswordHash, &u.LinkHash, &u.LinkExpiresAt,
		&u.CreatedAt, &u.UpdatedAt); err != nil {
		return nil, err
	}
	u.Role = tollgate.Role(role)
	if len(u.LinkHash) == 0 {
		u.LinkHash = nil
	}
	u.LinkExpiresAt = utcPtr(u.LinkExpiresAt)
	u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
	return &u, nil
}

func (t *tx) InsertSession(ctx context.Context, s *tollgate.Session) error {
	if err := t.writable(); err != nil {
		return err
	}
	_, err := t.guardedExec(ctx, `
		INSERT INTO sessions (id, user_id, hash, created_at, expires_at, last_seen_at)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		s.ID, s.UserID, codec.NullBytes(s.Hash), utc(s.CreatedAt), utc(s.ExpiresAt), utc(s.LastSeenAt))
	return dbError(err, "user not found", "a session with this id or hash already exists")
}

func (t *tx) SessionByHash(ctx context.Context, hash []byte) (*tollgate.Session, error) {
	if len(hash) == 0 {
		return nil, tollgate.Errorf(tollgate.ENOTFOUND, "session not found")
	}
	var s tollgate.Session
	err := t.q.QueryRow(ctx, `
		SELECT id, user_id, hash, created_at, expires_at, last_seen_at FROM sessions WHERE hash = $1`, hash).
		Scan(&s.ID, &s.UserID, &s.Hash, &s.CreatedAt, &s.ExpiresAt, &s.LastSeenAt)
	if err != nil {
		return nil, dbError(err, "session not found", "")
	}
	s.CreatedAt, s.ExpiresAt, s.LastSeenAt = s.CreatedAt.UTC(), s.ExpiresAt.UTC(), s.LastSeenAt.UTC()
	return &s, nil
}

func (t *tx) TouchSession(ctx context.Context, id string, at time.Time) error {
	if err := t.writable(); err != nil {
		return err
	}
	tag, err := t.q.Exec(ctx, `UPDATE sessions SET last_seen_at = $1 WHERE id = $2`, utc(at), id)
	return affectedOne(tag, err, "session not found", "")
}

func (t *tx) DeleteSession(ctx context.Context, id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	_, err := t.q.Exec(ctx, `DELETE FROM sessions WHERE id = $1`, id)
	return dbError(err, "", "")
}

func (t *tx) DeleteUserSessions(ctx context.Context, userID string) error {
	if err := t.writable(); err != nil {
		return err
	}
	_, err := t.q.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1`, userID)
	return dbError(err, "", "")
}

func (t *tx) DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error) {
	if err := t.writable(); err != nil {
		return 0, err
	}
	tag, err := t.q.Exec(ctx, `DELETE FROM sessions WHERE expires_at <= $1`, utc(now))
	if err != nil {
		return 0, dbError(err, "", "")
	}
	return int(tag.RowsAffected()), nil
}
