package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Token is a stored API token: its hash, never the token itself.
type Token struct {
	ID         string
	Hash       string
	Owner      string
	Role       string
	Workspace  string
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

// EndpointToken grants access to one deployment through the gateway.
type EndpointToken struct {
	ID         string
	Hash       string
	Workspace  string
	Deployment string
	Name       string
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
}

// Secret is a sealed (encrypted) secret value; the store never sees plaintext.
type Secret struct {
	Workspace string
	Name      string
	Sealed    []byte
	CreatedAt time.Time
	UpdatedAt time.Time
}

// AuditRecord is one entry of the hash-chained audit log.
type AuditRecord struct {
	Seq       int64
	Time      time.Time
	TokenID   string
	Workspace string
	Action    string
	Object    string
	Source    string
	Result    string
	PrevHash  string
	Hash      string
}

// AuditFilter selects audit records; zero fields match everything.
type AuditFilter struct {
	Workspace string
	TokenID   string
	Action    string
	Result    string
	Since     time.Time
	AfterSeq  int64
	Limit     int
}

// Security is the part of the store that holds identities, secrets and the audit log.
type Security interface {
	CreateWorkspace(ctx context.Context, name string) error
	ListWorkspaces(ctx context.Context) ([]string, error)
	WorkspaceExists(ctx context.Context, name string) (bool, error)

	CreateToken(ctx context.Context, t Token) error
	TokenByHash(ctx context.Context, hash string) (Token, error)
	GetToken(ctx context.Context, id string) (Token, error)
	// ListTokens lists tokens of one workspace, or all with "".
	ListTokens(ctx context.Context, workspace string) ([]Token, error)
	RevokeToken(ctx context.Context, id string, at time.Time) error
	TouchToken(ctx context.Context, id string, at time.Time) error
	CountTokens(ctx context.Context) (int, error)

	CreateEndpointToken(ctx context.Context, t EndpointToken) error
	ListEndpointTokens(ctx context.Context, deployment string) ([]EndpointToken, error)
	ListAllEndpointTokens(ctx context.Context) ([]EndpointToken, error)
	RevokeEndpointToken(ctx context.Context, deployment, id string, at time.Time) error

	PutSecret(ctx context.Context, s Secret) (created bool, err error)
	GetSecret(ctx context.Context, workspace, name string) (Secret, error)
	ListSecrets(ctx context.Context, workspace string) ([]Secret, error)
	DeleteSecret(ctx context.Context, workspace, name string) error
	// RewrapSecrets replaces every secret's sealed value in one transaction.
	RewrapSecrets(ctx context.Context, rewrap func(Secret) ([]byte, error)) (int, error)

	// AppendAudit adds a record after the current last one; chain computes the
	// record's hash from the previous record's hash and the record.
	AppendAudit(ctx context.Context, r AuditRecord, chain func(prevHash string, r AuditRecord) string) (AuditRecord, error)
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error)
}

var _ Security = (*SQLite)(nil)

func timePtr(s sql.NullString) *time.Time {
	if !s.Valid {
		return nil
	}
	t := parseTime(s.String)
	return &t
}

func (s *SQLite) CreateWorkspace(ctx context.Context, name string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO workspaces(name, created_at) VALUES (?, ?)`, name, now())
	if err != nil && isUniqueViolation(err) {
		return fmt.Errorf("%w: workspace %q", ErrExists, name)
	}
	return err
}

func isUniqueViolation(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "UNIQUE constraint failed"))
}

func (s *SQLite) ListWorkspaces(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM workspaces ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

func (s *SQLite) WorkspaceExists(ctx context.Context, name string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM workspaces WHERE name = ?`, name).Scan(&n)
	return n > 0, err
}

func (s *SQLite) CreateToken(ctx context.Context, t Token) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO tokens(id, hash, owner, role, workspace, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Hash, t.Owner, t.Role, t.Workspace, t.CreatedAt.UTC().Format(time.RFC3339Nano), nullTime(t.ExpiresAt))
	return err
}

const tokenCols = `id, hash, owner, role, workspace, created_at, expires_at, last_used_at, revoked_at`

func scanToken(r scanner) (Token, error) {
	var t Token
	var created string
	var exp, used, rev sql.NullString
	if err := r.Scan(&t.ID, &t.Hash, &t.Owner, &t.Role, &t.Workspace, &created, &exp, &used, &rev); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return t, ErrNotFound
		}
		return t, err
	}
	t.CreatedAt = parseTime(created)
	t.ExpiresAt, t.LastUsedAt, t.RevokedAt = timePtr(exp), timePtr(used), timePtr(rev)
	return t, nil
}

func (s *SQLite) TokenByHash(ctx context.Context, hash string) (Token, error) {
	return scanToken(s.db.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE hash = ?`, hash))
}

func (s *SQLite) GetToken(ctx context.Context, id string) (Token, error) {
	return scanToken(s.db.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE id = ?`, id))
}

func (s *SQLite) ListTokens(ctx context.Context, workspace string) ([]Token, error) {
	q, args := `SELECT `+tokenCols+` FROM tokens ORDER BY created_at, id`, []any{}
	if workspace != "" {
		q, args = `SELECT `+tokenCols+` FROM tokens WHERE workspace = ? ORDER BY created_at, id`, []any{workspace}
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func (s *SQLite) RevokeToken(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, at.UTC().Format(time.RFC3339Nano), id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *SQLite) TouchToken(ctx context.Context, id string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE tokens SET last_used_at = ? WHERE id = ?`, at.UTC().Format(time.RFC3339Nano), id)
	return err
}

func (s *SQLite) CountTokens(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens`).Scan(&n)
	return n, err
}

func (s *SQLite) CreateEndpointToken(ctx context.Context, t EndpointToken) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO endpoint_tokens(id, hash, workspace, deployment, name, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Hash, t.Workspace, t.Deployment, t.Name, t.CreatedAt.UTC().Format(time.RFC3339Nano), nullTime(t.ExpiresAt))
	return err
}

const endpointTokenCols = `id, hash, workspace, deployment, name, created_at, expires_at, revoked_at`

func (s *SQLite) listEndpointTokens(ctx context.Context, where string, args ...any) ([]EndpointToken, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+endpointTokenCols+` FROM endpoint_tokens `+where+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []EndpointToken
	for rows.Next() {
		var t EndpointToken
		var created string
		var exp, rev sql.NullString
		if err := rows.Scan(&t.ID, &t.Hash, &t.Workspace, &t.Deployment, &t.Name, &created, &exp, &rev); err != nil {
			return nil, err
		}
		t.CreatedAt = parseTime(created)
		t.ExpiresAt, t.RevokedAt = timePtr(exp), timePtr(rev)
		out = append(out, t)
	}
	return out, rows.Err()
}

func (s *SQLite) ListEndpointTokens(ctx context.Context, deployment string) ([]EndpointToken, error) {
	return s.listEndpointTokens(ctx, `WHERE deployment = ?`, deployment)
}

func (s *SQLite) ListAllEndpointTokens(ctx context.Context) ([]EndpointToken, error) {
	return s.listEndpointTokens(ctx, ``)
}

func (s *SQLite) RevokeEndpointToken(ctx context.Context, deployment, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE endpoint_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND deployment = ?`,
		at.UTC().Format(time.RFC3339Nano), id, deployment)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *SQLite) PutSecret(ctx context.Context, sec Secret) (bool, error) {
	created := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM secrets WHERE workspace = ? AND name = ?`, sec.Workspace, sec.Name).Scan(&n); err != nil {
			return err
		}
		ts := now()
		if n == 0 {
			created = true
			_, err := tx.ExecContext(ctx, `INSERT INTO secrets(workspace, name, sealed, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
				sec.Workspace, sec.Name, sec.Sealed, ts, ts)
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE secrets SET sealed = ?, updated_at = ? WHERE workspace = ? AND name = ?`, sec.Sealed, ts, sec.Workspace, sec.Name)
		return err
	})
	return created, err
}

func scanSecret(r scanner) (Secret, error) {
	var sec Secret
	var c, u string
	if err := r.Scan(&sec.Workspace, &sec.Name, &sec.Sealed, &c, &u); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return sec, ErrNotFound
		}
		return sec, err
	}
	sec.CreatedAt, sec.UpdatedAt = parseTime(c), parseTime(u)
	return sec, nil
}

func (s *SQLite) GetSecret(ctx context.Context, workspace, name string) (Secret, error) {
	return scanSecret(s.db.QueryRowContext(ctx, `SELECT workspace, name, sealed, created_at, updated_at FROM secrets WHERE workspace = ? AND name = ?`, workspace, name))
}

func (s *SQLite) ListSecrets(ctx context.Context, workspace string) ([]Secret, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT workspace, name, sealed, created_at, updated_at FROM secrets WHERE workspace = ? ORDER BY name`, workspace)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Secret
	for rows.Next() {
		sec, err := scanSecret(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, sec)
	}
	return out, rows.Err()
}

func (s *SQLite) DeleteSecret(ctx context.Context, workspace, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM secrets WHERE workspace = ? AND name = ?`, workspace, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *SQLite) RewrapSecrets(ctx context.Context, rewrap func(Secret) ([]byte, error)) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT workspace, name, sealed, created_at, updated_at FROM secrets`)
		if err != nil {
			return err
		}
		var all []Secret
		for rows.Next() {
			sec, err := scanSecret(rows)
			if err != nil {
				rows.Close()
				return err
			}
			all = append(all, sec)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, sec := range all {
			sealed, err := rewrap(sec)
			if err != nil {
				return fmt.Errorf("secret %s/%s: %w", sec.Workspace, sec.Name, err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE secrets SET sealed = ? WHERE workspace = ? AND name = ?`, sealed, sec.Workspace, sec.Name); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

func (s *SQLite) AppendAudit(ctx context.Context, r AuditRecord, chain func(prevHash string, r AuditRecord) string) (AuditRecord, error) {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var prev sql.NullString
		var seq sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		r.Seq = seq.Int64 + 1
		r.PrevHash = prev.String
		if r.Time.IsZero() {
			r.Time = time.Now().UTC()
		}
		r.Time = r.Time.UTC()
		r.Hash = chain(r.PrevHash, r)
		_, err = tx.ExecContext(ctx, `INSERT INTO audit(seq, time, token_id, workspace, action, object, source, result, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Seq, r.Time.Format(time.RFC3339Nano), r.TokenID, r.Workspace, r.Action, r.Object, r.Source, r.Result, r.PrevHash, r.Hash)
		return err
	})
	return r, err
}

func (s *SQLite) ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	q := `SELECT seq, time, token_id, workspace, action, object, source, result, prev_hash, hash FROM audit WHERE seq > ?`
	args := []any{f.AfterSeq}
	for _, c := range []struct{ col, v string }{{"workspace", f.Workspace}, {"token_id", f.TokenID}, {"action", f.Action}, {"result", f.Result}} {
		if c.v != "" {
			q += ` AND ` + c.col + ` = ?`
			args = append(args, c.v)
		}
	}
	if !f.Since.IsZero() {
		q += ` AND time >= ?`
		args = append(args, f.Since.UTC().Format(time.RFC3339Nano))
	}
	q += ` ORDER BY seq`
	if f.Limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		var r AuditRecord
		var ts string
		if err := rows.Scan(&r.Seq, &ts, &r.TokenID, &r.Workspace, &r.Action, &r.Object, &r.Source, &r.Result, &r.PrevHash, &r.Hash); err != nil {
			return nil, err
		}
		r.Time = parseTime(ts)
		out = append(out, r)
	}
	return out, rows.Err()
}
