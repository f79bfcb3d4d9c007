package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	_ "modernc.org/sqlite" // pure-Go SQLite driver
)

// migrations are applied in order, each once; their index+1 is the schema version.
var migrations = []string{
	`CREATE TABLE deployments (
		name TEXT PRIMARY KEY,
		spec TEXT NOT NULL,
		revision INTEGER NOT NULL,
		generation INTEGER NOT NULL,
		created_at TEXT NOT NULL,
		updated_at TEXT NOT NULL,
		deleted_at TEXT,
		status TEXT NOT NULL DEFAULT '{}'
	);
	CREATE TABLE revisions (
		deployment TEXT NOT NULL,
		revision INTEGER NOT NULL,
		spec TEXT NOT NULL,
		created_at TEXT NOT NULL,
		PRIMARY KEY (deployment, revision)
	);
	CREATE TABLE replicas (
		id TEXT PRIMARY KEY,
		deployment TEXT NOT NULL,
		revision INTEGER NOT NULL,
		cloud TEXT NOT NULL,
		state TEXT NOT NULL,
		endpoint TEXT NOT NULL DEFAULT '',
		started_at TEXT,
		restarts INTEGER NOT NULL DEFAULT 0,
		message TEXT NOT NULL DEFAULT '',
		hourly_cost REAL NOT NULL DEFAULT 0,
		handle TEXT,
		created_at TEXT NOT NULL,
		draining INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX replicas_by_deployment ON replicas(deployment);
	CREATE TABLE events (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		deployment TEXT NOT NULL,
		time TEXT NOT NULL,
		type TEXT NOT NULL,
		reason TEXT NOT NULL,
		message TEXT NOT NULL
	);
	CREATE INDEX events_by_deployment ON events(deployment, id);
	CREATE TABLE cloud_state (
		name TEXT PRIMARY KEY,
		cordoned INTEGER NOT NULL DEFAULT 0,
		failed INTEGER NOT NULL DEFAULT 0
	);`,
	// 2: workspaces, API tokens, endpoint tokens, secrets, audit log.
	`ALTER TABLE deployments ADD COLUMN workspace TEXT NOT NULL DEFAULT 'default';
	CREATE TABLE workspaces (
		name TEXT PRIMARY KEY,
		created_at TEXT NOT NULL
	);
	INSERT INTO workspaces(name, created_at) VALUES ('default', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
	CREATE TABLE tokens (
		id TEXT PRIMARY KEY,
		hash TEXT NOT NULL UNIQUE,
		owner TEXT NOT NULL,
		role TEXT NOT NULL,
		workspace TEXT NOT NULL,
		created_at TEXT NOT NULL,
		expires_at TEXT,
		last_used_at TEXT,
		revoked_at TEXT
	);
	CREATE TABLE endpoint_tokens (
		id TEXT PRIMARY KEY,
		hash TEXT NOT NULL UNIQUE,
		workspace TEXT NOT NULL,
		deployment TEXT NOT NULL,
		name TEXT NOT NULL,
		created_at TEXT NOT NULL,
		expires_at TEXT,
		revoked_at TEXT
	);
	CREATE INDEX endpoint_tokens_by_deployment ON endpoint_tokens(deployment);
	CREATE TABLE secrets (
		workspace TEXT NOT NULL,
		name TEXT NOT NULL,
		sealed BLOB NOT NULL,
		created_at TEXT NOT NULL,
		updated_at TEXT NOT NULL,
		PRIMARY KEY (workspace, name)
	);
	CREATE TABLE audit (
		seq INTEGER PRIMARY KEY,
		time TEXT NOT NULL,
		token_id TEXT NOT NULL,
		workspace TEXT NOT NULL,
		action TEXT NOT NULL,
		object TEXT NOT NULL,
		source TEXT NOT NULL,
		result TEXT NOT NULL,
		prev_hash TEXT NOT NULL,
		hash TEXT NOT NULL
	);`,
	// 3: cloud price catalogs (offerings), shared by every workspace.
	`CREATE TABLE offerings (
		cloud TEXT NOT NULL,
		region TEXT NOT NULL,
		zone TEXT NOT NULL,
		instance_type TEXT NOT NULL,
		accelerator TEXT NOT NULL,
		accelerator_count REAL NOT NULL CHECK (accelerator_count >= 0),
		vcpus REAL NOT NULL CHECK (vcpus >= 0),
		memory_gib REAL NOT NULL CHECK (memory_gib >= 0),
		gpu_memory_mib INTEGER NOT NULL CHECK (gpu_memory_mib >= 0),
		price REAL NOT NULL CHECK (price >= 0),
		spot_price REAL NOT NULL CHECK (spot_price >= 0),
		arch TEXT NOT NULL,
		PRIMARY KEY (cloud, region, zone, instance_type, accelerator, accelerator_count)
	) WITHOUT ROWID;
	CREATE INDEX offerings_by_accelerator ON offerings(accelerator COLLATE NOCASE, accelerator_count);
	CREATE TABLE catalogs (
		cloud TEXT PRIMARY KEY,
		imported_at TEXT NOT NULL
	);`,
	// 4: where in its cloud placement put each replica (catalog clouds).
	`ALTER TABLE replicas ADD COLUMN region TEXT NOT NULL DEFAULT '';
	ALTER TABLE replicas ADD COLUMN zone TEXT NOT NULL DEFAULT '';
	ALTER TABLE replicas ADD COLUMN instance_type TEXT NOT NULL DEFAULT '';
	ALTER TABLE replicas ADD COLUMN spot INTEGER NOT NULL DEFAULT 0;`,
}

// maxEventsPerDeployment bounds the event log of one deployment.
const maxEventsPerDeployment = 2000

// SQLite is the embedded store: one database file in WAL mode, synchronous
// commits, so an acknowledged write survives kill -9 of the server.
type SQLite struct {
	db *sql.DB
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating if needed) the database at path and migrates it.
func OpenSQLite(path string) (*SQLite, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	// One connection: SQLite serialises writers anyway, and this keeps every
	// transaction free of SQLITE_BUSY between our own connections.
	db.SetMaxOpenConns(1)
	s := &SQLite{db: db}
	if err := s.migrate(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	return s, nil
}

func (s *SQLite) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`); err != nil {
		return err
	}
	var cur int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
		return err
	}
	if cur > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this binary supports (%d)", cur, len(migrations))
	}
	for v := cur + 1; v <= len(migrations); v++ {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied_at) VALUES (?, ?)`, v, now())
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %d: %w", v, err)
		}
	}
	return nil
}

// SchemaVersion reports the applied schema version.
func (s *SQLite) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

func (s *SQLite) Close() error { return s.db.Close() }

func (s *SQLite) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// SameTemplate reports whether two specs describe the same replica template:
// everything except replica counts and placement. Only a template change makes
// a new revision (and so a rolling update).
func SameTemplate(a, b v1.DeploymentSpec) bool {
	a.Replicas, b.Replicas = v1.Replicas{}, v1.Replicas{}
	a.Placement, b.Placement = v1.Placement{}, v1.Placement{}
	a.Autoscale, b.Autoscale = nil, nil // how many replicas, not what they run
	return reflect.DeepEqual(normalizeForCompare(a), normalizeForCompare(b))
}

// normalizeForCompare round-trips through JSON so nil and empty collections compare equal.
func normalizeForCompare(s v1.DeploymentSpec) map[string]any {
	b, _ := json.Marshal(s)
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

func (s *SQLite) ApplyDeployment(ctx context.Context, workspace string, spec v1.DeploymentSpec, mode ApplyMode) (d Deployment, created, changed bool, err error) {
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return d, false, false, err
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		cur, gerr := getDeployment(ctx, tx, spec.Name)
		switch {
		case errors.Is(gerr, ErrNotFound):
			if mode == UpdateOnly {
				return ErrNotFound
			}
			ts := now()
			if _, err := tx.ExecContext(ctx, `INSERT INTO deployments(name, workspace, spec, revision, generation, created_at, updated_at) VALUES (?, ?, ?, 1, 1, ?, ?)`,
				spec.Name, workspace, string(specJSON), ts, ts); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO revisions(deployment, revision, spec, created_at) VALUES (?, 1, ?, ?)`,
				spec.Name, string(specJSON), ts); err != nil {
				return err
			}
			created, changed = true, true
		case gerr != nil:
			return gerr
		default:
			if cur.Workspace != workspace {
				return fmt.Errorf("%w: deployment name %q is taken in another workspace", ErrExists, spec.Name)
			}
			if cur.DeletedAt != nil {
				return fmt.Errorf("%w: deployment %q is being deleted", ErrExists, spec.Name)
			}
			if mode == CreateOnly {
				return ErrExists
			}
			if reflect.DeepEqual(normalizeForCompare(cur.Spec), normalizeForCompare(spec)) {
				break
			}
			changed = true
			rev := cur.Revision
			ts := now()
			if !SameTemplate(cur.Spec, spec) {
				rev++
				if _, err := tx.ExecContext(ctx, `INSERT INTO revisions(deployment, revision, spec, created_at) VALUES (?, ?, ?, ?)`,
					spec.Name, rev, string(specJSON), ts); err != nil {
					return err
				}
			} else if _, err := tx.ExecContext(ctx, `UPDATE revisions SET spec = ? WHERE deployment = ? AND revision = ?`,
				string(specJSON), spec.Name, rev); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE deployments SET spec = ?, revision = ?, generation = generation + 1, updated_at = ? WHERE name = ?`,
				string(specJSON), rev, ts, spec.Name); err != nil {
				return err
			}
		}
		var err error
		d, err = getDeployment(ctx, tx, spec.Name)
		return err
	})
	return d, created, changed, err
}

type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

const deploymentCols = `name, workspace, spec, revision, generation, created_at, updated_at, deleted_at, status`

type scanner interface{ Scan(...any) error }

func scanDeployment(r scanner) (Deployment, error) {
	var d Deployment
	var spec, created, updated, status string
	var deleted sql.NullString
	if err := r.Scan(&d.Name, &d.Workspace, &spec, &d.Revision, &d.Generation, &created, &updated, &deleted, &status); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return d, ErrNotFound
		}
		return d, err
	}
	if err := json.Unmarshal([]byte(spec), &d.Spec); err != nil {
		return d, fmt.Errorf("decode spec of %s: %w", d.Name, err)
	}
	if err := json.Unmarshal([]byte(status), &d.Status); err != nil {
		return d, fmt.Errorf("decode status of %s: %w", d.Name, err)
	}
	d.CreatedAt, d.UpdatedAt = parseTime(created), parseTime(updated)
	if deleted.Valid {
		t := parseTime(deleted.String)
		d.DeletedAt = &t
	}
	return d, nil
}

func getDeployment(ctx context.Context, q querier, name string) (Deployment, error) {
	return scanDeployment(q.QueryRowContext(ctx, `SELECT `+deploymentCols+` FROM deployments WHERE name = ?`, name))
}

func (s *SQLite) GetDeployment(ctx context.Context, name string) (Deployment, error) {
	return getDeployment(ctx, s.db, name)
}

func (s *SQLite) ListDeployments(ctx context.Context) ([]Deployment, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+deploymentCols+` FROM deployments ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Deployment
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (s *SQLite) MarkDeleted(ctx context.Context, name string) (Deployment, error) {
	var d Deployment
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE deployments SET deleted_at = COALESCE(deleted_at, ?), generation = generation + 1 WHERE name = ?`, now(), name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		d, err = getDeployment(ctx, tx, name)
		return err
	})
	return d, err
}

func (s *SQLite) RemoveDeployment(ctx context.Context, name string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{
			`DELETE FROM deployments WHERE name = ?`,
			`DELETE FROM revisions WHERE deployment = ?`,
			`DELETE FROM replicas WHERE deployment = ?`,
			`DELETE FROM events WHERE deployment = ?`,
			`DELETE FROM endpoint_tokens WHERE deployment = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, name); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *SQLite) ListRevisions(ctx context.Context, name string) ([]v1.Revision, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT revision, spec, created_at FROM revisions WHERE deployment = ? ORDER BY revision`, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []v1.Revision
	for rows.Next() {
		r, err := scanRevision(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, ErrNotFound
	}
	return out, nil
}

func scanRevision(r scanner) (v1.Revision, error) {
	var rev v1.Revision
	var spec, created string
	if err := r.Scan(&rev.Revision, &spec, &created); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return rev, ErrNotFound
		}
		return rev, err
	}
	rev.CreatedAt = parseTime(created)
	return rev, json.Unmarshal([]byte(spec), &rev.Spec)
}

func (s *SQLite) GetRevision(ctx context.Context, name string, revision int64) (v1.Revision, error) {
	return scanRevision(s.db.QueryRowContext(ctx, `SELECT revision, spec, created_at FROM revisions WHERE deployment = ? AND revision = ?`, name, revision))
}

func (s *SQLite) SetStatus(ctx context.Context, name string, status v1.DeploymentStatus) error {
	b, err := json.Marshal(status)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE deployments SET status = ? WHERE name = ?`, string(b), name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (s *SQLite) PutReplica(ctx context.Context, r Replica) error {
	if r.CreatedAt.IsZero() {
		r.CreatedAt = time.Now()
	}
	var handle any
	if len(r.Handle) > 0 {
		handle = string(r.Handle)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO replicas(id, deployment, revision, cloud, state, endpoint, started_at, restarts, message, hourly_cost, handle, created_at, draining, region, zone, instance_type, spot)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET state = excluded.state, endpoint = excluded.endpoint, started_at = excluded.started_at,
			restarts = excluded.restarts, message = excluded.message, hourly_cost = excluded.hourly_cost,
			handle = excluded.handle, draining = excluded.draining`,
		r.ID, r.Deployment, r.Revision, r.Cloud, string(r.State), r.Endpoint, nullTime(r.StartedAt), r.Restarts, r.Message,
		r.HourlyCost, handle, r.CreatedAt.UTC().Format(time.RFC3339Nano), r.Draining, r.Region, r.Zone, r.InstanceType, r.Spot)
	return err
}

func (s *SQLite) DeleteReplica(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM replicas WHERE id = ?`, id)
	return err
}

const replicaCols = `id, deployment, revision, cloud, state, endpoint, started_at, restarts, message, hourly_cost, handle, created_at, draining, region, zone, instance_type, spot`

func (s *SQLite) listReplicas(ctx context.Context, where string, args ...any) ([]Replica, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+replicaCols+` FROM replicas `+where+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Replica
	for rows.Next() {
		var r Replica
		var state, created string
		var started, handle sql.NullString
		if err := rows.Scan(&r.ID, &r.Deployment, &r.Revision, &r.Cloud, &state, &r.Endpoint, &started, &r.Restarts, &r.Message,
			&r.HourlyCost, &handle, &created, &r.Draining, &r.Region, &r.Zone, &r.InstanceType, &r.Spot); err != nil {
			return nil, err
		}
		r.State = v1.ReplicaState(state)
		r.CreatedAt = parseTime(created)
		if started.Valid {
			t := parseTime(started.String)
			r.StartedAt = &t
		}
		if handle.Valid {
			r.Handle = json.RawMessage(handle.String)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *SQLite) ListReplicas(ctx context.Context, deployment string) ([]Replica, error) {
	return s.listReplicas(ctx, `WHERE deployment = ?`, deployment)
}

func (s *SQLite) ListAllReplicas(ctx context.Context) ([]Replica, error) {
	return s.listReplicas(ctx, ``)
}

func (s *SQLite) AddEvent(ctx context.Context, e v1.Event) (v1.Event, error) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO events(deployment, time, type, reason, message) VALUES (?, ?, ?, ?, ?)`,
			e.Deployment, e.Time.UTC().Format(time.RFC3339Nano), e.Type, e.Reason, e.Message)
		if err != nil {
			return err
		}
		e.ID, err = res.LastInsertId()
		if err != nil {
			return err
		}
		if e.ID%100 == 0 { // trim now and then, not on every insert
			_, err = tx.ExecContext(ctx, `DELETE FROM events WHERE deployment = ? AND id <= ?`, e.Deployment, e.ID-maxEventsPerDeployment)
		}
		return err
	})
	return e, err
}

func (s *SQLite) ListEvents(ctx context.Context, deployment string, afterID int64, limit int) ([]v1.Event, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, deployment, time, type, reason, message FROM events WHERE deployment = ? AND id > ? ORDER BY id LIMIT ?`,
		deployment, afterID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []v1.Event
	for rows.Next() {
		var e v1.Event
		var ts string
		if err := rows.Scan(&e.ID, &e.Deployment, &ts, &e.Type, &e.Reason, &e.Message); err != nil {
			return nil, err
		}
		e.Time = parseTime(ts)
		out = append(out, e)
	}
	return out, rows.Err()
}

func (s *SQLite) SetCloudState(ctx context.Context, c CloudState) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO cloud_state(name, cordoned, failed) VALUES (?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET cordoned = excluded.cordoned, failed = excluded.failed`, c.Name, c.Cordoned, c.Failed)
	return err
}

func (s *SQLite) ListCloudStates(ctx context.Context) ([]CloudState, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, cordoned, failed FROM cloud_state ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []CloudState
	for rows.Next() {
		var c CloudState
		if err := rows.Scan(&c.Name, &c.Cordoned, &c.Failed); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
