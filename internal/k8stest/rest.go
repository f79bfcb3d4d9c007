package k8stest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			Proxy: nil, // loopback only
			// The API server's certificate is self-signed, as in the
			// kubeconfig (insecure-skip-tls-verify).
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // test cluster on loopback
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}

// APIError is a response from the API server with a status outside 2xx.
type APIError struct {
	Method, Path string
	Code         int
	// Reason and Message are from the metav1.Status body, if there was one.
	Reason, Message string
	Body            []byte
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = strings.TrimSpace(string(e.Body))
	}
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.Code, e.Reason, msg)
}

// IsStatus reports whether err is an *APIError with the HTTP status code.
func IsStatus(err error, code int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

// Do sends a request to the API server as the admin and decodes the
// response. path is absolute and may carry a query ("/api/v1/pods?labelSelector=app%3Dx").
// body is sent as is if it is []byte, string or io.Reader, else as JSON;
// nil sends none. PATCH bodies are JSON merge patches. out, if not nil,
// receives the JSON response, or the raw body if it is *[]byte. A status
// outside 2xx is an *APIError; a transport error (for example after
// StopAPIServer) is returned as it is.
func (c *Cluster) Do(ctx context.Context, method, path string, body, out any) error {
	return c.do(ctx, c.Token, method, path, "", body, out)
}

// DoAs is Do with the token of a static user (see UserToken).
func (c *Cluster) DoAs(ctx context.Context, user, method, path string, body, out any) error {
	tok, ok := c.UserToken(user)
	if !ok {
		return fmt.Errorf("k8stest: unknown user %q", user)
	}
	return c.do(ctx, tok, method, path, "", body, out)
}

// Apply creates or updates the object at path (the object's own URL, e.g.
// /api/v1/namespaces/x/configmaps/y) by server-side apply as the admin.
func (c *Cluster) Apply(ctx context.Context, path string, obj any) error {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return c.do(ctx, c.Token, "PATCH", path+sep+"fieldManager=k8stest&force=true", "application/apply-patch+yaml", obj, nil)
}

func (c *Cluster) do(ctx context.Context, token, method, path, contentType string, body, out any) error {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case string:
		r = strings.NewReader(b)
	case io.Reader:
		r = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return err
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Server+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	if r != nil {
		if contentType == "" {
			contentType = "application/json"
			if method == http.MethodPatch {
				contentType = "application/merge-patch+json"
			}
		}
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := &APIError{Method: method, Path: path, Code: resp.StatusCode, Body: data}
		var st struct{ Reason, Message string }
		if json.Unmarshal(data, &st) == nil {
			ae.Reason, ae.Message = st.Reason, st.Message
		}
		return ae
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = data
		return nil
	default:
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode response: %w", method, path, err)
		}
		return nil
	}
}

// get is a plain GET for health endpoints, with an optional bearer token.
func (c *Cluster) get(ctx context.Context, url, token string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

// Poll calls cond every interval until it returns true, returns an error,
// or timeout (or ctx) expires; the timeout error includes what.
func Poll(ctx context.Context, timeout, interval time.Duration, what string, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ok, err := cond(ctx)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// Pods lists the pods of namespace that match the label selector (e.g.
// "aloft.dev/deployment=web"; "" for all), terminating ones included.
func (c *Cluster) Pods(ctx context.Context, namespace, selector string) ([]corev1.Pod, error) {
	var l corev1.PodList
	if err := c.Do(ctx, "GET", "/api/v1/namespaces/"+namespace+"/pods"+labelQuery(selector), nil, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// Deployments lists the Deployments of namespace that match the label selector.
func (c *Cluster) Deployments(ctx context.Context, namespace, selector string) ([]appsv1.Deployment, error) {
	var l appsv1.DeploymentList
	if err := c.Do(ctx, "GET", "/apis/apps/v1/namespaces/"+namespace+"/deployments"+labelQuery(selector), nil, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// PodReady reports whether the pod's Ready condition is true.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func labelQuery(selector string) string {
	if selector == "" {
		return ""
	}
	return "?labelSelector=" + url.QueryEscape(selector)
}
