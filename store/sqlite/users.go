package sqlite

import (
	"context"
	"database/sql"
	"time"

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
	_, err := t.q.ExecContext(ctx, `
		INSERT INTO users (id, account_id, email, role, password_hash, link_hash, link_expires_at, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.ID, u.AccountID, u.Email, string(u.Role), u.PasswordHash, codec.NullBytes(u.LinkHash), nullMicros(u.LinkExpiresAt),
		micros(u.CreatedAt), micros(u.UpdatedAt))
	return dbError(err, "account not found", "a user with this email or id already exists")
}

func (t *tx) UserByID(ctx context.Context, id string) (*tollgate.User, error) {
	return t.user(ctx, `SELECT `+userColumns+userFrom+`WHERE u.id = ?`, id)
}

func (t *tx) UserByEmail(ctx context.Context, email string) (*tollgate.User, error) {
	return t.user(ctx, `SELECT `+userColumns+userFrom+`WHERE u.email = ?`, email)
}

func (t *tx) UserByLinkHash(ctx context.Context, hash []byte) (*tollgate.User, error) {
	if len(hash) == 0 {
		return nil, tollgate.Errorf(tollgate.ENOTFOUND, "user not found")
	}
	return t.user(ctx, `SELECT `+userColumns+userFrom+`WHERE u.link_hash = ?`, hash)
}

func (t *tx) user(ctx context.Context, query string, arg any) (*tollgate.User, error) {
	u, err := scanUser(t.q.QueryRowContext(ctx, query, arg))
	if err != nil {
		return nil, dbError(err, "user not found", "")
	}
	return u, nil
}

func (t *tx) UpdateUser(ctx context.Context, u *tollgate.User) error {
	if err := t.writable(); err != nil {
		return err
	}
	res, err := t.q.ExecContext(ctx, `
		UPDATE users SET role = ?, password_hash = ?, link_hash = ?, link_expires_at = ?, updated_at = ?
		WHERE id = ?`,
		string(u.Role), u.PasswordHash, codec.NullBytes(u.LinkHash), nullMicros(u.LinkExpiresAt), micros(u.UpdatedAt), u.ID)
	return affectedOne(res, err, "user not found", "this link is already in use")
}

func (t *tx) ListUsers(ctx context.Context, accountID string) ([]*tollgate.User, error) {
	rows, err := t.q.QueryContext(ctx, `SELECT `+userColumns+userFrom+`WHERE u.account_id = ? ORDER BY u.email`, accountID)
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

func scanUser(s scanner) (*tollgate.User, error) {
	var (
		u                  tollgate.User
		role               string
		linkExpires        sql.NullInt64
		created, updatedAt int64
	)
	if err := s.Scan(&u.ID, &u.AccountID, &u.AccountName, &u.Email, &role, &u.PasswordHash, &u.LinkHash, &linkExpires,
		&created, &updatedAt); err != nil {
		return nil, err
	}
	u.Role = tollgate.Role(role)
	if len(u.LinkHash) == 0 {
		u.LinkHash = nil
	}
	u.LinkExpiresAt = fromNullMicros(linkExpires)
	u.CreatedAt, u.UpdatedAt = fromMicros(created), fromMicros(updatedAt)
	return &u, nil
}

func (t *tx) InsertSession(ctx context.Context, s *tollgate.Session) error {
	if err := t.writable(); err != nil {
		return err
	}
	_, err := t.q.ExecContext(ctx, `
		INSERT INTO sessions (id, user_id, hash, created_at, expires_at, last_seen_at)
		VALUES (?, ?, ?, ?, ?, ?)`,
		s.ID, s.UserID, codec.NullBytes(s.Hash), micros(s.CreatedAt), micros(s.ExpiresAt), micros(s.LastSeenAt))
	return dbError(err, "user not found", "a session with this id or hash already exists")
}

func (t *tx) SessionByHash(ctx context.Context, hash []byte) (*tollgate.Session, error) {
	if len(hash) == 0 {
		return nil, tollgate.Errorf(tollgate.ENOTFOUND, "session not found")
	}
	var (
		s                      tollgate.Session
		created, expires, seen int64
	)
	err := t.q.QueryRowContext(ctx, `
		SELECT id, user_id, hash, created_at, expires_at, last_seen_at FROM sessions WHERE hash = ?`, hash).
		Scan(&s.ID, &s.UserID, &s.Hash, &created, &expires, &seen)
	if err != nil {
		return nil, dbError(err, "session not found", "")
	}
	s.CreatedAt, s.ExpiresAt, s.LastSeenAt = fromMicros(created), fromMicros(expires), fromMicros(seen)
	return &s, nil
}

func (t *tx) TouchSession(ctx context.Context, id string, at time.Time) error {
	if err := t.writable(); err != nil {
		return err
	}
	res, err := t.q.ExecContext(ctx, `UPDATE sessions SET last_seen_at = ? WHERE id = ?`, micros(at), id)
	return affectedOne(res, err, "session not found", "")
}

func (t *tx) DeleteSession(ctx context.Context, id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	_, err := t.q.ExecContext(ctx, `DELETE FROM sessions WHERE id = ?`, id)
	return dbError(err, "", "")
}

func (t *tx) DeleteUserSessions(ctx context.Context, userID string) error {
	if err := t.writable(); err != nil {
		return err
	}
	_, err := t.q.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ?`, userID)
	return dbError(err, "", "")
}

func (t *tx) DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error) {
	if err := t.writable(); err != nil {
		return 0, err
	}
	res, err := t.q.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, micros(now))
	if err != nil {
		return 0, dbError(err, "", "")
	}
	n, err := res.RowsAffected()
	return int(n), dbError(err, "", "")
}
