// Package client is a small Go client for aloft's /api/v1, used by the CLI and
// the end-to-end tests.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// Client talks to one aloft server.
type Client struct {
	Base  string // e.g. http://127.0.0.1:7070
	Token string // API token, sent as Authorization: Bearer
	// Workspace, when set, is sent as ?workspace= on every call.
	Workspace string
	HTTP      *http.Client
}

// New returns a client for the server at base (scheme optional).
func New(base string) *Client {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{Base: strings.TrimRight(base, "/"), HTTP: &http.Client{}}
}

// WithCA makes the client trust the PEM certificate authority in caPEM (for
// servers started with --tls-auto).
func (c *Client) WithCA(caPEM []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("no PEM certificate found in the CA file")
	}
	c.HTTP = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	return nil
}

// APIError is a non-2xx answer from the server.
type APIError struct {
	Status int
	Body   v1.ErrorResponse
	// Data is the raw answer (at most 1 MiB), for answers that carry more
	// than an error (a 422 plan).
	Data []byte
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString(e.Body.Error)
	if b.Len() == 0 {
		b.WriteString(http.StatusText(e.Status))
	}
	for _, f := range e.Body.Fields {
		field := f.Field
		if field == "" {
			field = "(spec)"
		}
		if !strings.Contains(e.Body.Error, f.Reason) {
			fmt.Fprintf(&b, "\n  %s: %s", field, f.Reason)
		}
	}
	return b.String()
}

// IsNotFound reports whether err is a 404 from the server.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := c.newRequest(ctx, method, path, body, contentType)
	if err != nil {
		return nil, err
	}
	return c.send(req)
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Request, error) {
	if c.Workspace != "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "workspace=" + url.QueryEscape(c.Workspace)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req, nil
}

// send does req and turns a non-2xx answer into an *APIError.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		ae := &APIError{Status: resp.StatusCode}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		ae.Data = data
		if json.Unmarshal(data, &ae.Body) != nil || ae.Body.Error == "" {
			ae.Body.Error = strings.TrimSpace(string(data))
		}
		return nil, ae
	}
	return resp, nil
}

func (c *Client) json(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	ctype := ""
	switch v := in.(type) {
	case nil:
	case []byte:
		body, ctype = bytes.NewReader(v), "application/yaml"
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return 0, err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	resp, err := c.do(ctx, method, path, body, ctype)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

type list[T any] struct {
	Items []T `json:"items"`
}

func (c *Client) ListDeployments(ctx context.Context) ([]v1.Deployment, error) {
	var l list[v1.Deployment]
	_, err := c.json(ctx, "GET", "/api/v1/deployments", nil, &l)
	return l.Items, err
}

func (c *Client) GetDeployment(ctx context.Context, name string) (v1.Deployment, error) {
	var d v1.Deployment
	_, err := c.json(ctx, "GET", "/api/v1/deployments/"+url.PathEscape(name), nil, &d)
	return d, err
}

// CreateDeployment posts a raw YAML/JSON spec.
func (c *Client) CreateDeployment(ctx context.Context, spec []byte) (v1.Deployment, error) {
	var d v1.Deployment
	_, err := c.json(ctx, "POST", "/api/v1/deployments", spec, &d)
	return d, err
}

// ApplyDeployment creates or updates the named deployment from a raw spec.
func (c *Client) ApplyDeployment(ctx context.Context, name string, spec []byte) (d v1.Deployment, created bool, err error) {
	code, err := c.json(ctx, "PUT", "/api/v1/deployments/"+url.PathEscape(name), spec, &d)
	return d, code == http.StatusCreated, err
}

// Plan asks the placement optimizer where spec's replicas would run. An
// infeasible spec returns the plan (with Error set, naming the binding
// constraint) and an *APIError with status 422.
func (c *Client) Plan(ctx context.Context, spec []byte) (v1.PlanResult, error) {
	var p v1.PlanResult
	_, err := c.json(ctx, "POST", "/api/v1/plan", spec, &p)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusUnprocessableEntity {
		if jerr := json.Unmarshal(ae.Data, &p); jerr != nil {
			return p, err
		}
	}
	return p, err
}

// Render returns the Kubernetes manifests the server would apply for spec on
// a kubernetes cloud; query may set "replicas" and "revision".
func (c *Client) Render(ctx context.Context, cloud string, spec []byte, query map[string]string) ([]byte, error) {
	q := url.Values{}
	for k, v := range query {
		q.Set(k, v)
	}
	path := "/api/v1/clouds/" + url.PathEscape(cloud) + "/render"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.do(ctx, "POST", path, bytes.NewReader(spec), "application/yaml")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func (c *Client) DeleteDeployment(ctx context.Context, name string) (v1.Deployment, error) {
	var d v1.Deployment
	_, err := c.json(ctx, "DELETE", "/api/v1/deployments/"+url.PathEscape(name), nil, &d)
	return d, err
}

func (c *Client) Scale(ctx context.Context, name string, replicas int) (v1.Deployment, error) {
	var d v1.Deployment
	_, err := c.json(ctx, "POST", "/api/v1/deployments/"+url.PathEscape(name)+"/scale", map[string]int{"replicas": replicas}, &d)
	return d, err
}

func (c *Client) Revisions(ctx context.Context, name string) ([]v1.Revision, error) {
	var l list[v1.Revision]
	_, err := c.json(ctx, "GET", "/api/v1/deployments/"+url.PathEscape(name)+"/revisions", nil, &l)
	return l.Items, err
}

// Events returns events with id > after.
func (c *Client) Events(ctx context.Context, name string, after int64) ([]v1.Event, error) {
	var l list[v1.Event]
	_, err := c.json(ctx, "GET", "/api/v1/deployments/"+url.PathEscape(name)+"/events?after="+strconv.FormatInt(after, 10), nil, &l)
	return l.Items, err
}

// LogOptions select which logs to stream.
type LogOptions struct {
	Replica string
	Follow  bool
	Tail    int64
}

// Logs streams replica logs; the caller closes the reader.
func (c *Client) Logs(ctx context.Context, name string, o LogOptions) (io.ReadCloser, error) {
	q := url.Values{}
	if o.Replica != "" {
		q.Set("replica", o.Replica)
	}
	if o.Follow {
		q.Set("follow", "true")
	}
	if o.Tail > 0 {
		q.Set("tail", strconv.FormatInt(o.Tail, 10))
	}
	resp, err := c.do(ctx, "GET", "/api/v1/deployments/"+url.PathEscape(name)+"/logs?"+q.Encode(), nil, "")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

func (c *Client) Clouds(ctx context.Context) ([]v1.Cloud, error) {
	var l list[v1.Cloud]
	_, err := c.json(ctx, "GET", "/api/v1/clouds", nil, &l)
	return l.Items, err
}

// CloudAction is cordon, uncordon, fail or recover.
func (c *Client) CloudAction(ctx context.Context, name, action string) (v1.Cloud, error) {
	var cl v1.Cloud
	_, err := c.json(ctx, "POST", "/api/v1/clouds/"+url.PathEscape(name)+"/"+url.PathEscape(action), nil, &cl)
	return cl, err
}

// Ready reports whether the server answers /readyz with 200.
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.json(ctx, "GET", "/readyz", nil, nil)
	return err
}

func (c *Client) WhoAmI(ctx context.Context) (v1.Identity, error) {
	var id v1.Identity
	_, err := c.json(ctx, "GET", "/api/v1/whoami", nil, &id)
	return id, err
}

func (c *Client) CreateToken(ctx context.Context, req v1.TokenRequest) (v1.NewToken, error) {
	var t v1.NewToken
	_, err := c.json(ctx, "POST", "/api/v1/tokens", req, &t)
	return t, err
}

func (c *Client) ListTokens(ctx context.Context) ([]v1.TokenInfo, error) {
	var l list[v1.TokenInfo]
	_, err := c.json(ctx, "GET", "/api/v1/tokens", nil, &l)
	return l.Items, err
}

func (c *Client) RevokeToken(ctx context.Context, id string) (v1.TokenInfo, error) {
	var t v1.TokenInfo
	_, err := c.json(ctx, "DELETE", "/api/v1/tokens/"+url.PathEscape(id), nil, &t)
	return t, err
}

func (c *Client) ListWorkspaces(ctx context.Context) ([]v1.Workspace, error) {
	var l list[v1.Workspace]
	_, err := c.json(ctx, "GET", "/api/v1/workspaces", nil, &l)
	return l.Items, err
}

func (c *Client) CreateWorkspace(ctx context.Context, name string) error {
	_, err := c.json(ctx, "POST", "/api/v1/workspaces", v1.Workspace{Name: name}, nil)
	return err
}

// SetSecret stores a secret value (write-only).
func (c *Client) SetSecret(ctx context.Context, name, value string) (created bool, err error) {
	code, err := c.json(ctx, "PUT", "/api/v1/secrets/"+url.PathEscape(name), v1.SecretValue{Value: value}, nil)
	return code == http.StatusCreated, err
}

func (c *Client) ListSecrets(ctx context.Context) ([]v1.SecretInfo, error) {
	var l list[v1.SecretInfo]
	_, err := c.json(ctx, "GET", "/api/v1/secrets", nil, &l)
	return l.Items, err
}

func (c *Client) DeleteSecret(ctx context.Context, name string) error {
	_, err := c.json(ctx, "DELETE", "/api/v1/secrets/"+url.PathEscape(name), nil, nil)
	return err
}

func (c *Client) RotateSecretsKey(ctx context.Context) (v1.RotateResult, error) {
	var r v1.RotateResult
	_, err := c.json(ctx, "POST", "/api/v1/secrets-key/rotate", nil, &r)
	return r, err
}

func (c *Client) CreateEndpointToken(ctx context.Context, deployment string, req v1.EndpointTokenRequest) (v1.NewEndpointToken, error) {
	var t v1.NewEndpointToken
	_, err := c.json(ctx, "POST", "/api/v1/deployments/"+url.PathEscape(deployment)+"/endpoint-tokens", req, &t)
	return t, err
}

func (c *Client) ListEndpointTokens(ctx context.Context, deployment string) ([]v1.EndpointTokenInfo, error) {
	var l list[v1.EndpointTokenInfo]
	_, err := c.json(ctx, "GET", "/api/v1/deployments/"+url.PathEscape(deployment)+"/endpoint-tokens", nil, &l)
	return l.Items, err
}

func (c *Client) RevokeEndpointToken(ctx context.Context, deployment, id string) error {
	_, err := c.json(ctx, "DELETE", "/api/v1/deployments/"+url.PathEscape(deployment)+"/endpoint-tokens/"+url.PathEscape(id), nil, nil)
	return err
}

// AuditQuery filters the audit log.
type AuditQuery struct {
	Token, Action, Result, Since string
	Limit                        int
}

func (c *Client) Audit(ctx context.Context, q AuditQuery) ([]v1.AuditRecord, error) {
	v := url.Values{}
	for k, s := range map[string]string{"token": q.Token, "action": q.Action, "result": q.Result, "since": q.Since} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var l list[v1.AuditRecord]
	_, err := c.json(ctx, "GET", "/api/v1/audit?"+v.Encode(), nil, &l)
	return l.Items, err
}

func (c *Client) VerifyAudit(ctx context.Context) (v1.AuditVerification, error) {
	var r v1.AuditVerification
	_, err := c.json(ctx, "GET", "/api/v1/audit/verify", nil, &r)
	return r, err
}

// ListImages lists the server's local image store.
func (c *Client) ListImages(ctx context.Context) ([]v1.ImageInfo, error) {
	var l list[v1.ImageInfo]
	_, err := c.json(ctx, "GET", "/api/v1/images", nil, &l)
	return l.Items, err
}

// ImportImage streams a `docker save` tar or an OCI image layout tar to the
// server's image store and returns the imported images. r is read once, as
// the request body, and never buffered whole.
func (c *Client) ImportImage(ctx context.Context, r io.Reader) ([]v1.ImageInfo, error) {
	return c.ImportImageFile(ctx, "", r)
}

// ImportImageFile is ImportImage with the archive's file name, which the
// server shows in error messages and uses as the repository of OCI layout
// images whose index names only a tag. When r is a regular *os.File its
// size is sent up front, so an archive over the server's limit is refused
// before it is uploaded.
func (c *Client) ImportImageFile(ctx context.Context, filename string, r io.Reader) ([]v1.ImageInfo, error) {
	var l list[v1.ImageInfo]
	err := c.upload(ctx, "/api/v1/images", filename, "application/x-tar", r, &l)
	return l.Items, err
}

// upload POSTs r to path (with ?filename= when set) and decodes the answer
// into out. When r is a regular *os.File its size is sent up front and the
// server may refuse (401, 403, 413) before the body is sent.
func (c *Client) upload(ctx context.Context, path, filename, contentType string, r io.Reader, out any) error {
	if filename != "" {
		path += "?filename=" + url.QueryEscape(filename)
	}
	req, err := c.newRequest(ctx, "POST", path, io.NopCloser(r), contentType)
	if err != nil {
		return err
	}
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			if off, err := f.Seek(0, io.SeekCurrent); err == nil && off <= fi.Size() {
				req.ContentLength = fi.Size() - off
			}
		}
	}
	req.Header.Set("Expect", "100-continue")
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode POST %s: %w", path, err)
	}
	return nil
}

// RemoveImage removes an image by name[:tag], sha256:<hex> digest (every tag
// of it) or name@digest. The server refuses while deployments use the image,
// unless force is set. It returns the removed images.
func (c *Client) RemoveImage(ctx context.Context, ref string, force bool) ([]v1.ImageInfo, error) {
	q := url.Values{"ref": {ref}}
	if force {
		q.Set("force", "true")
	}
	var l list[v1.ImageInfo]
	_, err := c.json(ctx, "DELETE", "/api/v1/images?"+q.Encode(), nil, &l)
	return l.Items, err
}

// ImportCatalog uploads a SkyPilot-format catalog CSV as the price catalog
// of cloud, replacing its previous one. filename is shown in the server's
// error messages (which name the file, line and column of a problem).
func (c *Client) ImportCatalog(ctx context.Context, cloud, filename string, r io.Reader) (v1.CatalogImport, error) {
	var out v1.CatalogImport
	err := c.upload(ctx, "/api/v1/catalogs/"+url.PathEscape(cloud), filename, "text/csv", r, &out)
	return out, err
}

// ListCatalogs lists the clouds with an imported price catalog.
func (c *Client) ListCatalogs(ctx context.Context) ([]v1.CatalogInfo, error) {
	var l list[v1.CatalogInfo]
	_, err := c.json(ctx, "GET", "/api/v1/catalogs", nil, &l)
	return l.Items, err
}

// OfferingQuery selects offerings; zero fields match everything.
type OfferingQuery struct {
	Cloud, Region string
	GPU           string // accelerator name, any case
	MinGPUs       int
	Spot          bool // only offerings with a spot price, sorted by it
	Limit         int  // 0: the server's default (100)
}

// ListOfferings returns the offerings q selects, cheapest first, and
// whether more matched than the limit.
func (c *Client) ListOfferings(ctx context.Context, q OfferingQuery) (v1.OfferingList, error) {
	v := url.Values{}
	for k, s := range map[string]string{"cloud": q.Cloud, "region": q.Region, "gpu": q.GPU} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.MinGPUs > 0 {
		v.Set("minGpus", strconv.Itoa(q.MinGPUs))
	}
	if q.Spot {
		v.Set("spot", "true")
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var l v1.OfferingList
	_, err := c.json(ctx, "GET", "/api/v1/offerings?"+v.Encode(), nil, &l)
	return l, err
}
