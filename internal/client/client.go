// Package client is a small Go client for aloft's /api/v1, used by the CLI and
// the end-to-end tests.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// Client talks to one aloft server.
type Client struct {
	Base string // e.g. http://127.0.0.1:7070
	HTTP *http.Client
}

// New returns a client for the server at base (scheme optional).
func New(base string) *Client {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{Base: strings.TrimRight(base, "/"), HTTP: &http.Client{}}
}

// APIError is a non-2xx answer from the server.
type APIError struct {
	Status int
	Body   v1.ErrorResponse
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
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		ae := &APIError{Status: resp.StatusCode}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
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
