// Package server is aloft's HTTP API (/api/v1, JSON), its health and metrics
// endpoints, and the wiring that starts the store, clouds, controller and
// gateway of one `aloft server` process.
package server

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/auth"
	"github.com/aloft-dev/aloft/internal/cloud"
	"github.com/aloft-dev/aloft/internal/controller"
	"github.com/aloft-dev/aloft/internal/image"
	"github.com/aloft-dev/aloft/internal/provider"
	"github.com/aloft-dev/aloft/internal/secrets"
	"github.com/aloft-dev/aloft/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// API serves /api/v1 plus /healthz, /readyz and /metrics.
type API struct {
	Store      store.Store
	Controller *controller.Controller
	Clouds     *cloud.Registry
	Gatherer   prometheus.Gatherer
	Logger     *slog.Logger
	// Ready reports whether the server finished starting (first reconcile done).
	Ready *atomic.Bool
	// Keys seal and open secrets; KeyFile is where rotation writes a new key ("" when the key came from the environment).
	Keys    *atomic.Pointer[secrets.Keyring]
	KeyFile string
	// ImagesRemoved, if set, runs after images were removed (the container
	// runtime drops their unpacked root filesystems).
	ImagesRemoved func()
	// Limiter rate-limits each API token; nil means unlimited.
	Limiter *auth.Limiter
	// Images is the local image store shared by every workspace; nil makes
	// the image routes answer 501.
	Images *image.Store
	// MaxImageBytes bounds an uploaded image archive; 0 means DefaultMaxImageBytes (16 GiB).
	MaxImageBytes int64
	// MaxCatalogBytes bounds an uploaded catalog CSV; 0 means DefaultMaxCatalogBytes (64 MiB).
	MaxCatalogBytes int64

	touchMu  sync.Mutex
	touched  map[string]time.Time
	rotateMu sync.Mutex
}

// Scope says how a route finds the workspace it acts on.
type Scope int

const (
	// Unscoped routes act on nothing of one workspace (clouds, workspaces).
	Unscoped Scope = iota
	// ScopeRequest: the workspace named by ?workspace= (or the token's own).
	ScopeRequest
	// ScopeDeployment: the workspace of the deployment {name}.
	ScopeDeployment
	// ScopeToken: the workspace of the API token {id}.
	ScopeToken
)

// Route is one API endpoint; the table drives the mux, access control, the
// audit log, the OpenAPI test and the RBAC test.
type Route struct {
	Method, Path string
	Handler      func(*API, http.ResponseWriter, *http.Request)
	// Public routes need no token (only /healthz and /readyz).
	Public bool
	// Role is the least role allowed; Scope how the workspace is found.
	Role  auth.Role
	Scope Scope
	// Action names the call in the audit log; every non-GET route is audited.
	Action string
	// RawBody routes bound and read their (large, streamed) body themselves
	// instead of getting the API-wide 1 MiB limit.
	RawBody bool
}

// Routes lists every endpoint the API serves.
var Routes = []Route{
	{Method: "GET", Path: "/healthz", Handler: (*API).healthz, Public: true},
	{Method: "GET", Path: "/readyz", Handler: (*API).readyz, Public: true},
	{Method: "GET", Path: "/api/v1/openapi.json", Handler: (*API).openapi, Role: auth.Viewer},
	{Method: "GET", Path: "/metrics", Handler: (*API).metrics, Role: auth.Admin},
	{Method: "GET", Path: "/api/v1/whoami", Handler: (*API).whoami, Role: auth.Viewer},
	{Method: "GET", Path: "/api/v1/deployments", Handler: (*API).listDeployments, Role: auth.Viewer, Scope: ScopeRequest},
	{Method: "POST", Path: "/api/v1/deployments", Handler: (*API).createDeployment, Role: auth.Developer, Scope: ScopeRequest, Action: "deployment.create"},
	{Method: "GET", Path: "/api/v1/deployments/{name}", Handler: (*API).getDeployment, Role: auth.Viewer, Scope: ScopeDeployment},
	{Method: "PUT", Path: "/api/v1/deployments/{name}", Handler: (*API).putDeployment, Role: auth.Developer, Scope: ScopeDeployment, Action: "deployment.apply"},
	{Method: "DELETE", Path: "/api/v1/deployments/{name}", Handler: (*API).deleteDeployment, Role: auth.Developer, Scope: ScopeDeployment, Action: "deployment.delete"},
	{Method: "POST", Path: "/api/v1/deployments/{name}/scale", Handler: (*API).scaleDeployment, Role: auth.Developer, Scope: ScopeDeployment, Action: "deployment.scale"},
	{Method: "GET", Path: "/api/v1/deployments/{name}/revisions", Handler: (*API).listRevisions, Role: auth.Viewer, Scope: ScopeDeployment},
	{Method: "GET", Path: "/api/v1/deployments/{name}/events", Handler: (*API).listEvents, Role: auth.Viewer, Scope: ScopeDeployment},
	{Method: "GET", Path: "/api/v1/deployments/{name}/logs", Handler: (*API).logs, Role: auth.Developer, Scope: ScopeDeployment},
	{Method: "GET", Path: "/api/v1/deployments/{name}/endpoint-tokens", Handler: (*API).listEndpointTokens, Role: auth.Developer, Scope: ScopeDeployment},
	{Method: "POST", Path: "/api/v1/deployments/{name}/endpoint-tokens", Handler: (*API).createEndpointToken, Role: auth.Developer, Scope: ScopeDeployment, Action: "endpoint-token.create"},
	{Method: "DELETE", Path: "/api/v1/deployments/{name}/endpoint-tokens/{id}", Handler: (*API).revokeEndpointToken, Role: auth.Developer, Scope: ScopeDeployment, Action: "endpoint-token.revoke"},
	{Method: "GET", Path: "/api/v1/secrets", Handler: (*API).listSecrets, Role: auth.Viewer, Scope: ScopeRequest},
	{Method: "PUT", Path: "/api/v1/secrets/{name}", Handler: (*API).putSecret, Role: auth.Developer, Scope: ScopeRequest, Action: "secret.set"},
	{Method: "DELETE", Path: "/api/v1/secrets/{name}", Handler: (*API).deleteSecret, Role: auth.Developer, Scope: ScopeRequest, Action: "secret.delete"},
	{Method: "POST", Path: "/api/v1/secrets-key/rotate", Handler: (*API).rotateKey, Role: auth.Admin, Action: "secret.rotate-key"},
	{Method: "GET", Path: "/api/v1/tokens", Handler: (*API).listTokens, Role: auth.Admin, Scope: ScopeRequest},
	{Method: "POST", Path: "/api/v1/tokens", Handler: (*API).createToken, Role: auth.Admin, Scope: ScopeRequest, Action: "token.create"},
	{Method: "DELETE", Path: "/api/v1/tokens/{id}", Handler: (*API).revokeToken, Role: auth.Admin, Scope: ScopeToken, Action: "token.revoke"},
	{Method: "GET", Path: "/api/v1/workspaces", Handler: (*API).listWorkspaces, Role: auth.Viewer},
	{Method: "POST", Path: "/api/v1/workspaces", Handler: (*API).createWorkspace, Role: auth.Admin, Action: "workspace.create"},
	{Method: "GET", Path: "/api/v1/audit", Handler: (*API).listAudit, Role: auth.Admin, Scope: ScopeRequest},
	{Method: "GET", Path: "/api/v1/audit/verify", Handler: (*API).verifyAudit, Role: auth.Admin},
	{Method: "GET", Path: "/api/v1/clouds", Handler: (*API).listClouds, Role: auth.Viewer},
	{Method: "POST", Path: "/api/v1/plan", Handler: (*API).plan, Role: auth.Viewer, Scope: ScopeRequest},
	{Method: "POST", Path: "/api/v1/clouds/{name}/{action}", Handler: (*API).cloudAction, Role: auth.Admin, Action: "cloud.action"},
	{Method: "POST", Path: "/api/v1/clouds/{name}/render", Handler: (*API).render, Role: auth.Viewer, Scope: ScopeRequest},
	{Method: "GET", Path: "/api/v1/images", Handler: (*API).listImages, Role: auth.Viewer},
	{Method: "POST", Path: "/api/v1/images", Handler: (*API).importImage, Role: auth.Developer, Action: "image.import", RawBody: true},
	{Method: "DELETE", Path: "/api/v1/images", Handler: (*API).removeImage, Role: auth.Admin, Action: "image.remove"},
	{Method: "GET", Path: "/api/v1/catalogs", Handler: (*API).listCatalogs, Role: auth.Viewer},
	{Method: "POST", Path: "/api/v1/catalogs/{cloud}", Handler: (*API).importCatalog, Role: auth.Admin, Action: "catalog.import", RawBody: true},
	{Method: "GET", Path: "/api/v1/offerings", Handler: (*API).listOfferings, Role: auth.Viewer},
}

// maxBodyBytes bounds every API request body (specs have their own 1 MiB limit).
const maxBodyBytes = v1.MaxSpecBytes + 1

// Handler returns the API's HTTP handler.
func (a *API) Handler() http.Handler {
	if a.touched == nil {
		a.touched = map[string]time.Time{}
	}
	mux := http.NewServeMux()
	for _, rt := range Routes {
		mux.HandleFunc(rt.Method+" "+rt.Path, a.guard(rt))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s; see /api/v1/openapi.json", r.Method, r.URL.Path))
	})
	return recoverer(a.Logger, mux)
}

func (a *API) metrics(w http.ResponseWriter, r *http.Request) {
	promhttp.HandlerFor(a.Gatherer, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

// recoverer turns a handler panic into a logged 500 instead of a dropped connection.
func recoverer(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("handler panic", "path", r.URL.Path, "panic", v)
				writeError(w, http.StatusInternalServerError, "internal error")
			}
		}()
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string, fields ...v1.FieldError) {
	writeJSON(w, code, v1.ErrorResponse{Error: msg, Fields: fields})
}

// writeStoreError maps store errors to 4xx where the caller is at fault.
func (a *API) writeStoreError(w http.ResponseWriter, err error, what string) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, what+" not found")
	case errors.Is(err, store.ErrExists):
		writeError(w, http.StatusConflict, err.Error())
	default:
		a.Logger.Error("store", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error; the server log has the details")
	}
}

func (a *API) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if a.Ready != nil && !a.Ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "starting: first reconcile not finished")
		return
	}
	if _, err := a.Store.ListCloudStates(r.Context()); err != nil {
		writeError(w, http.StatusServiceUnavailable, "store unavailable: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (a *API) openapi(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIDocument)
}

// toAPI renders a stored deployment as the API shows it.
func toAPI(d store.Deployment) v1.Deployment {
	st := d.Status
	if st.Phase == "" {
		st.Phase = v1.PhasePending
		st.DesiredReplicas = d.Spec.Replicas.Min
	}
	if d.DeletedAt != nil {
		st.Phase = v1.PhaseDeleting
	}
	if st.Replicas == nil {
		st.Replicas = []v1.ReplicaStatus{}
	}
	if st.Conditions == nil {
		st.Conditions = []v1.Condition{}
	}
	return v1.Deployment{Name: d.Name, Workspace: d.Workspace, Spec: d.Spec, Revision: d.Revision, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, Status: st}
}

func (a *API) listDeployments(w http.ResponseWriter, r *http.Request) {
	deps, err := a.Store.ListDeployments(r.Context())
	if err != nil {
		a.writeStoreError(w, err, "deployments")
		return
	}
	req := requestOf(r)
	all := req.caller.Workspace == auth.AllWorkspaces && !req.explicit
	items := make([]v1.Deployment, 0, len(deps))
	for _, d := range deps {
		if all || d.Workspace == req.workspace {
			items = append(items, toAPI(d))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

// readSpec reads and validates a spec body; on failure it has answered.
func readSpec(w http.ResponseWriter, r *http.Request) (*v1.DeploymentSpec, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, v1.MaxSpecBytes+1))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || len(body) > v1.MaxSpecBytes {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("spec is larger than %d bytes", v1.MaxSpecBytes),
			v1.FieldError{Field: "", Reason: fmt.Sprintf("spec must be at most %d bytes (1 MiB)", v1.MaxSpecBytes)})
		return nil, false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return nil, false
	}
	spec, err := v1.ParseSpec(body)
	if err != nil {
		var ve *v1.ValidationError
		if errors.As(err, &ve) {
			writeError(w, http.StatusBadRequest, ve.Error(), ve.Fields...)
		} else {
			writeError(w, http.StatusBadRequest, err.Error())
		}
		return nil, false
	}
	return spec, true
}

func (a *API) createDeployment(w http.ResponseWriter, r *http.Request) {
	spec, ok := readSpec(w, r)
	if !ok {
		return
	}
	ws := requestOf(r).workspace
	if !a.workspaceExists(w, r, ws) {
		return
	}
	d, _, _, err := a.Store.ApplyDeployment(r.Context(), ws, *spec, store.CreateOnly)
	if err != nil {
		if errors.Is(err, store.ErrExists) {
			writeError(w, http.StatusConflict, fmt.Sprintf("deployment %q already exists; update it with PUT /api/v1/deployments/%s (aloft apply)", spec.Name, spec.Name))
			return
		}
		a.writeStoreError(w, err, "deployment")
		return
	}
	a.Controller.Enqueue(d.Name)
	writeJSON(w, http.StatusCreated, toAPI(d))
}

func (a *API) putDeployment(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	spec, ok := readSpec(w, r)
	if !ok {
		return
	}
	if spec.Name != name {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("spec name %q does not match the URL's %q", spec.Name, name),
			v1.FieldError{Field: "name", Reason: fmt.Sprintf("must be %q to match the URL", name)})
		return
	}
	ws := requestOf(r).workspace
	if !a.workspaceExists(w, r, ws) {
		return
	}
	d, created, _, err := a.Store.ApplyDeployment(r.Context(), ws, *spec, store.CreateOrUpdate)
	if err != nil {
		a.writeStoreError(w, err, "deployment")
		return
	}
	a.Controller.Enqueue(d.Name)
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, toAPI(d))
}

// workspaceExists answers 404 when ws is not a workspace.
func (a *API) workspaceExists(w http.ResponseWriter, r *http.Request, ws string) bool {
	ok, err := a.Store.WorkspaceExists(r.Context(), ws)
	if err != nil {
		a.writeStoreError(w, err, "workspace")
		return false
	}
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("workspace %q not found; create it with aloft workspace create", ws),
			v1.FieldError{Field: "workspace", Reason: "no such workspace"})
	}
	return ok
}

// deploymentInScope reads the deployment {name}; one of another workspace
// than the guard authorized (created there after the guard looked) is
// treated as absent.
func (a *API) deploymentInScope(r *http.Request) (store.Deployment, error) {
	d, err := a.Store.GetDeployment(r.Context(), r.PathValue("name"))
	if err == nil && d.Workspace != requestOf(r).workspace {
		return store.Deployment{}, store.ErrNotFound
	}
	return d, err
}

func (a *API) getDeployment(w http.ResponseWriter, r *http.Request) {
	d, err := a.deploymentInScope(r)
	if err != nil {
		a.writeStoreError(w, err, fmt.Sprintf("deployment %q", r.PathValue("name")))
		return
	}
	writeJSON(w, http.StatusOK, toAPI(d))
}

func (a *API) deleteDeployment(w http.ResponseWriter, r *http.Request) {
	if _, err := a.deploymentInScope(r); err != nil {
		a.writeStoreError(w, err, fmt.Sprintf("deployment %q", r.PathValue("name")))
		return
	}
	d, err := a.Store.MarkDeleted(r.Context(), r.PathValue("name"))
	if err != nil {
		a.writeStoreError(w, err, fmt.Sprintf("deployment %q", r.PathValue("name")))
		return
	}
	a.Controller.Enqueue(d.Name)
	writeJSON(w, http.StatusAccepted, toAPI(d))
}

// ScaleRequest is the body of POST /deployments/{name}/scale.
type ScaleRequest struct {
	Replicas *int `json:"replicas"`
}

func (a *API) scaleDeployment(w http.ResponseWriter, r *http.Request) {
	var req ScaleRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body must be {\"replicas\": N}: "+err.Error(), v1.FieldError{Field: "replicas", Reason: "must be a whole number"})
		return
	}
	if req.Replicas == nil {
		writeError(w, http.StatusBadRequest, "replicas is required", v1.FieldError{Field: "replicas", Reason: "required: the number of replicas to run"})
		return
	}
	d, err := a.deploymentInScope(r)
	if err != nil {
		a.writeStoreError(w, err, fmt.Sprintf("deployment %q", r.PathValue("name")))
		return
	}
	spec := d.Spec
	spec.Replicas = v1.Replicas{Min: *req.Replicas, Max: *req.Replicas}
	if err := spec.Validate(); err != nil {
		var ve *v1.ValidationError
		if errors.As(err, &ve) {
			writeError(w, http.StatusBadRequest, ve.Error(), ve.Fields...)
			return
		}
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	d, _, _, err = a.Store.ApplyDeployment(r.Context(), d.Workspace, spec, store.UpdateOnly)
	if err != nil {
		a.writeStoreError(w, err, "deployment")
		return
	}
	a.Controller.Enqueue(d.Name)
	writeJSON(w, http.StatusOK, toAPI(d))
}

func (a *API) listRevisions(w http.ResponseWriter, r *http.Request) {
	if _, err := a.deploymentInScope(r); err != nil {
		a.writeStoreError(w, err, fmt.Sprintf("deployment %q", r.PathValue("name")))
		return
	}
	revs, err := a.Store.ListRevisions(r.Context(), r.PathValue("name"))
	if err != nil {
		a.writeStoreError(w, err, fmt.Sprintf("deployment %q", r.PathValue("name")))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": revs})
}

func queryInt(r *http.Request, key string, def int64) (int64, error) {
	s := r.URL.Query().Get(key)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("query parameter %s must be a non-negative integer, got %q", key, s)
	}
	return n, nil
}

func (a *API) listEvents(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	after, err := queryInt(r, "after", 0)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), v1.FieldError{Field: "after", Reason: err.Error()})
		return
	}
	if _, err := a.deploymentInScope(r); err != nil {
		a.writeStoreError(w, err, fmt.Sprintf("deployment %q", name))
		return
	}
	evs, err := a.Store.ListEvents(r.Context(), name, after, 1000)
	if err != nil {
		a.writeStoreError(w, err, "events")
		return
	}
	if evs == nil {
		evs = []v1.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": evs})
}

// logs streams replica output as text; with several replicas each line is
// prefixed with "[replica-id] ".
func (a *API) logs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	q := r.URL.Query()
	follow := q.Get("follow") == "true" || q.Get("follow") == "1"
	tail, err := queryInt(r, "tail", 0)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), v1.FieldError{Field: "tail", Reason: err.Error()})
		return
	}
	if _, err := a.deploymentInScope(r); err != nil {
		a.writeStoreError(w, err, fmt.Sprintf("deployment %q", name))
		return
	}
	reps, err := a.Store.ListReplicas(r.Context(), name)
	if err != nil {
		a.writeStoreError(w, err, "replicas")
		return
	}
	if want := q.Get("replica"); want != "" {
		var keep []store.Replica
		for _, rep := range reps {
			if rep.ID == want {
				keep = append(keep, rep)
			}
		}
		if len(keep) == 0 {
			writeError(w, http.StatusNotFound, fmt.Sprintf("replica %q of deployment %q not found", want, name))
			return
		}
		reps = keep
	}
	ctx := r.Context()
	type stream struct {
		id string
		rc io.ReadCloser
	}
	var streams []stream
	for _, rep := range reps {
		cl, ok := a.Clouds.Get(rep.Cloud)
		if !ok {
			continue
		}
		rc, err := cl.Provider.Logs(ctx, rep.ID, provider.LogOptions{Follow: follow, TailBytes: tail})
		if err != nil {
			continue // not started yet, or already gone
		}
		streams = append(streams, stream{rep.ID, rc})
	}
	defer func() {
		for _, s := range streams {
			s.rc.Close()
		}
	}()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	prefix := len(streams) > 1
	var mu sync.Mutex
	copyLines := func(s stream) {
		sc := bufio.NewScanner(s.rc)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			mu.Lock()
			if prefix {
				fmt.Fprintf(w, "[%s] ", s.id)
			}
			w.Write(sc.Bytes())
			w.Write([]byte{'\n'})
			if flusher != nil && follow {
				flusher.Flush()
			}
			mu.Unlock()
		}
	}
	if !follow {
		for _, s := range streams {
			copyLines(s)
		}
		return
	}
	if flusher != nil {
		flusher.Flush()
	}
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Add(1)
		go func() { defer wg.Done(); copyLines(s) }()
	}
	wg.Wait()
}

func (a *API) cloudView(ctx context.Context) ([]v1.Cloud, error) {
	states, err := a.Store.ListCloudStates(ctx)
	if err != nil {
		return nil, err
	}
	stateOf := map[string]store.CloudState{}
	for _, s := range states {
		stateOf[s.Name] = s
	}
	used, err := a.Controller.Usage(ctx)
	if err != nil {
		return nil, err
	}
	down := a.Controller.Unreachable()
	out := make([]v1.Cloud, 0, len(a.Clouds.List()))
	for _, c := range a.Clouds.List() {
		st := stateOf[c.Config.Name]
		capacity := c.Config.Capacity
		if r, ok := c.Provider.(provider.CapacityReporter); ok {
			// Observed live (a cluster's nodes): what aloft uses plus what is free.
			capacity = addCapacity(used[c.Config.Name], r.FreeCapacity())
		}
		out = append(out, v1.Cloud{
			Name: c.Config.Name, Provider: c.Config.Provider, Region: c.Config.Region, Labels: c.Config.Labels,
			Capacity: capacity, Prices: c.Config.Prices, Quota: c.Config.Quota, Runtimes: c.Provider.Runtimes(),
			Cordoned: st.Cordoned, Failed: st.Failed, Unreachable: down[c.Config.Name], Used: used[c.Config.Name],
		})
	}
	return out, nil
}

func (a *API) listClouds(w http.ResponseWriter, r *http.Request) {
	clouds, err := a.cloudView(r.Context())
	if err != nil {
		a.writeStoreError(w, err, "clouds")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": clouds})
}

// cloudAction handles cordon, uncordon, fail (a drill: the cloud loses every
// replica at once) and recover.
func (a *API) cloudAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	if _, ok := a.Clouds.Get(name); !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("cloud %q not found; see GET /api/v1/clouds", name))
		return
	}
	states, err := a.Store.ListCloudStates(r.Context())
	if err != nil {
		a.writeStoreError(w, err, "clouds")
		return
	}
	st := store.CloudState{Name: name}
	for _, s := range states {
		if s.Name == name {
			st = s
		}
	}
	switch action {
	case "cordon":
		st.Cordoned = true
	case "uncordon":
		st.Cordoned = false
	case "fail":
		st.Failed = true
	case "recover":
		st.Failed = false
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown cloud action %q; use cordon, uncordon, fail or recover", action))
		return
	}
	if err := a.Store.SetCloudState(r.Context(), st); err != nil {
		a.writeStoreError(w, err, "cloud")
		return
	}
	a.Logger.Info("cloud state changed", "cloud", name, "action", action)
	a.Controller.EnqueueAll()
	clouds, err := a.cloudView(r.Context())
	if err != nil {
		a.writeStoreError(w, err, "clouds")
		return
	}
	for _, c := range clouds {
		if c.Name == name {
			writeJSON(w, http.StatusOK, c)
			return
		}
	}
}

//go:embed openapi.json
var openAPIDocument []byte

// addCapacity is a + b (memory as a quantity; an unparsable one counts 0).
func addCapacity(a, b v1.Capacity) v1.Capacity {
	ma, _ := v1.ParseQuantity(a.Memory)
	mb, _ := v1.ParseQuantity(b.Memory)
	out := v1.Capacity{CPU: math.Round((a.CPU+b.CPU)*1000) / 1000, Memory: fmt.Sprintf("%dMi", (ma+mb)>>20)}
	for _, m := range []map[string]int{a.GPUs, b.GPUs} {
		for k, v := range m {
			if out.GPUs == nil {
				out.GPUs = map[string]int{}
			}
			out.GPUs[k] += v
		}
	}
	return out
}
