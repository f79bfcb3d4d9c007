package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/provider/kubernetes"
	"github.com/aloft-dev/aloft/internal/store"
)

// render returns the Kubernetes manifests aloft would apply for the spec in
// the body on the named kubernetes cloud, as YAML for kubectl. Nothing is
// stored or applied. ?replicas= sets the Deployment's replica count (default
// the spec's count, or its minimum when autoscaled, at least 1); ?revision=
// the revision its names and labels carry (default: the revision of the
// caller's deployment of that name, else 1).
func (a *API) render(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	cl, ok := a.Clouds.Get(name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("cloud %q not found; aloft clouds lists them", name))
		return
	}
	if cl.Config.Provider != v1.ProviderKubernetes {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("cloud %s is a %s cloud; render makes Kubernetes manifests, so name a kubernetes cloud", name, cl.Config.Provider),
			v1.FieldError{Field: "cloud", Reason: "must be a cloud with provider kubernetes"})
		return
	}
	q := r.URL.Query()
	replicas, revision := -1, int64(0)
	if s := q.Get("replicas"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > v1.MaxReplicas {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("replicas %q: must be a whole number from 0 to %d", s, v1.MaxReplicas), v1.FieldError{Field: "replicas", Reason: "must be a whole number from 0 to " + strconv.Itoa(v1.MaxReplicas)})
			return
		}
		replicas = n
	}
	if s := q.Get("revision"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("revision %q: must be a whole number from 1", s), v1.FieldError{Field: "revision", Reason: "must be a whole number from 1"})
			return
		}
		revision = n
	}
	spec, ok := readSpec(w, r)
	if !ok {
		return
	}
	if replicas < 0 {
		replicas = max(spec.Replicas.Min, 1)
		if spec.Replicas.IsFixed() {
			replicas = spec.Replicas.Min
		}
	}
	if revision == 0 {
		revision = 1
		d, err := a.Store.GetDeployment(r.Context(), spec.Name)
		switch {
		case err == nil && d.Workspace == requestOf(r).workspace:
			revision = d.Revision
		case err != nil && !errors.Is(err, store.ErrNotFound):
			a.writeStoreError(w, err, "deployment")
			return
		}
	}
	out, err := kubernetes.Render(*spec, cl.Config, revision, replicas)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("cannot render %s for cloud %s: %v", spec.Name, name, err))
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}
