package server

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/auth"
	"github.com/aloft-dev/aloft/internal/image"
)

// DefaultMaxImageBytes bounds an uploaded image archive when
// API.MaxImageBytes is 0.
const DefaultMaxImageBytes int64 = 16 << 30 // 16 GiB

// imageBodyIdle is how long an image upload may stall before the server
// gives up on it. Upload bodies are exempt from the server's whole-request
// ReadTimeout: a multi-GiB archive takes longer than that.
const imageBodyIdle = 60 * time.Second

func (a *API) maxImageBytes() int64 {
	if a.MaxImageBytes > 0 {
		return a.MaxImageBytes
	}
	return DefaultMaxImageBytes
}

// imagesConfigured answers 501 when the API runs without an image store.
func (a *API) imagesConfigured(w http.ResponseWriter) bool {
	if a.Images == nil {
		writeError(w, http.StatusNotImplemented, "this server has no image store configured")
		return false
	}
	return true
}

func toImageInfo(i image.Image) v1.ImageInfo {
	return v1.ImageInfo{Name: i.Name, Digest: i.Digest, Size: i.Size, Created: i.Created, Platform: i.Platform}
}

func toImageInfos(imgs []image.Image) []v1.ImageInfo {
	out := make([]v1.ImageInfo, 0, len(imgs))
	for _, i := range imgs {
		out = append(out, toImageInfo(i))
	}
	return out
}

// writeImageStoreError answers for a store failure that is not the caller's fault.
func (a *API) writeImageStoreError(w http.ResponseWriter, err error) {
	if errors.Is(err, syscall.ENOSPC) {
		writeError(w, http.StatusInsufficientStorage, "the server's image store is out of disk space")
		return
	}
	a.Logger.Error("image store", "err", err)
	writeError(w, http.StatusInternalServerError, "internal error; the server log has the details")
}

func (a *API) listImages(w http.ResponseWriter, r *http.Request) {
	if !a.imagesConfigured(w) {
		return
	}
	imgs, err := a.Images.List()
	if err != nil {
		a.writeImageStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": toImageInfos(imgs)})
}

// uploadName is the file name the archive is stored under while it is
// imported: the client's ?filename= (its base name), else "image.tar". The
// image store uses it as the repository of OCI layouts whose index names
// only a tag, and it replaces the server's path in error messages.
func uploadName(r *http.Request) string { return baseNameParam(r, "image.tar") }

// baseNameParam is the base name of the request's ?filename=, or def when it
// is missing or unusable.
func baseNameParam(r *http.Request, def string) string {
	n := r.URL.Query().Get("filename")
	n = filepath.Base(strings.ReplaceAll(n, "\\", "/"))
	if n == "/" || n == "" || strings.HasPrefix(n, ".") || len(n) > 200 || strings.ContainsFunc(n, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return def
	}
	return n
}

// clientMessage rewrites an import error for the client: the uploaded file
// is called by the client's name, files the store extracted from the archive
// by their path in it, and the store's directory is not shown.
func (a *API) clientMessage(msg, path, name string) string {
	msg = strings.ReplaceAll(msg, path, name)
	dir := a.Images.Dir()
	staging := regexp.MustCompile(regexp.QuoteMeta(dir) + `/tmp/import-[^/\s]+/src/`)
	msg = staging.ReplaceAllString(msg, "")
	return strings.ReplaceAll(msg, dir, "<image store>")
}

// idleDeadlineReader pushes the connection's read deadline forward as the
// body arrives, so a long upload lives as long as it makes progress.
type idleDeadlineReader struct {
	r    io.Reader
	rc   *http.ResponseController
	next time.Time
}

func (d *idleDeadlineReader) Read(p []byte) (int, error) {
	if now := time.Now(); now.After(d.next) {
		_ = d.rc.SetReadDeadline(now.Add(imageBodyIdle))
		d.next = now.Add(time.Second)
	}
	return d.r.Read(p)
}

// importImage stores the archive in the body (docker save tar or OCI layout
// tar) in a temporary file inside the image store's directory, imports it
// and removes the file.
func (a *API) importImage(w http.ResponseWriter, r *http.Request) {
	if !a.imagesConfigured(w) {
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/x-tar" && mt != "application/octet-stream") {
			writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q is not accepted; send the archive as application/x-tar or application/octet-stream", ct))
			return
		}
	}
	limit := a.maxImageBytes()
	tooLarge := func() {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("image archive is larger than this server's limit of %d bytes (%s)", limit, humanBytes(limit)))
	}
	if r.ContentLength > limit {
		tooLarge()
		return
	}
	tmpRoot := filepath.Join(a.Images.Dir(), "tmp")
	if err := os.MkdirAll(tmpRoot, 0o755); err != nil {
		a.writeImageStoreError(w, err)
		return
	}
	dir, err := os.MkdirTemp(tmpRoot, "upload-")
	if err != nil {
		a.writeImageStoreError(w, err)
		return
	}
	defer os.RemoveAll(dir)
	name := uploadName(r)
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		a.writeImageStoreError(w, err)
		return
	}
	body := io.Reader(http.MaxBytesReader(w, r.Body, limit))
	body = &idleDeadlineReader{r: body, rc: http.NewResponseController(w)}
	_, err = io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		tooLarge()
		return
	case err != nil && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, fs.ErrPermission)):
		a.writeImageStoreError(w, err)
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "reading the image archive: "+err.Error())
		return
	}
	// Images are shared by every workspace, so only an admin of all of
	// them may point an existing tag at another image; anyone else would
	// change what other workspaces' deployments run.
	caller := requestOf(r).caller
	canRetag := caller.Role == auth.Admin && caller.Workspace == auth.AllWorkspaces
	imgs, err := a.Images.ImportWith(path, image.ImportOptions{KeepTags: !canRetag})
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, fs.ErrPermission) {
			a.writeImageStoreError(w, err)
			return
		}
		if errors.Is(err, image.ErrTagMoved) {
			writeError(w, http.StatusConflict, a.clientMessage(err.Error(), path, name))
			return
		}
		// The store's message names the image and the problem; it is shown
		// without the server's paths.
		writeError(w, http.StatusBadRequest, a.clientMessage(err.Error(), path, name))
		return
	}
	for _, i := range imgs {
		a.Logger.Info("image imported", "name", i.Name, "digest", i.Digest, "size", i.Size)
	}
	writeJSON(w, http.StatusCreated, map[string]any{"items": toImageInfos(imgs)})
}

// removeImage removes ?ref= (name[:tag], sha256:... or name@sha256:...).
// It refuses while a deployment that is not being deleted uses the image,
// unless ?force=true.
func (a *API) removeImage(w http.ResponseWriter, r *http.Request) {
	if !a.imagesConfigured(w) {
		return
	}
	q := r.URL.Query()
	ref := strings.TrimSpace(q.Get("ref"))
	if ref == "" {
		writeError(w, http.StatusBadRequest, "query parameter ref is required: the image name[:tag] or digest to remove",
			v1.FieldError{Field: "ref", Reason: "required"})
		return
	}
	force := false
	switch q.Get("force") {
	case "", "false", "0":
	case "true", "1":
		force = true
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("query parameter force must be true or false, got %q", q.Get("force")),
			v1.FieldError{Field: "force", Reason: "must be true or false"})
		return
	}
	if _, isDigest := digestOf(ref); !isDigest {
		if _, err := image.NormalizeName(ref); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid image name %q: %v", ref, err),
				v1.FieldError{Field: "ref", Reason: "not an image name[:tag] or sha256 digest"})
			return
		}
	}
	all, err := a.Images.List()
	if err != nil {
		a.writeImageStoreError(w, err)
		return
	}
	removed, kept := splitRemoved(ref, all)
	if len(removed) == 0 {
		shown := ref
		if _, isDigest := digestOf(ref); !isDigest {
			shown, _ = image.NormalizeName(ref) // valid: checked above
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("image %s is not imported; see aloft image ls", shown))
		return
	}
	if !force {
		deps, err := a.Store.ListDeployments(r.Context())
		if err != nil {
			a.writeStoreError(w, err, "deployments")
			return
		}
		var users []string
		for _, d := range deps {
			if d.DeletedAt != nil || d.Spec.Image == "" {
				continue
			}
			if imageResolves(d.Spec.Image, removed) && !imageResolves(d.Spec.Image, kept) {
				users = append(users, fmt.Sprintf("%s (workspace %s)", d.Name, d.Workspace))
			}
		}
		if len(users) > 0 {
			sort.Strings(users)
			writeError(w, http.StatusConflict, fmt.Sprintf("image %s is used by deployment(s) %s; delete them first, or remove it anyway with force=true (aloft image rm --force)",
				displayName(removed[0]), strings.Join(users, ", ")))
			return
		}
	}
	if err := a.Images.Remove(ref); err != nil {
		if errors.Is(err, image.ErrNotFound) {
			writeError(w, http.StatusNotFound, strings.TrimSuffix(err.Error(), ": "+image.ErrNotFound.Error()))
			return
		}
		a.writeImageStoreError(w, err)
		return
	}
	for _, i := range removed {
		a.Logger.Info("image removed", "name", i.Name, "digest", i.Digest, "force", force)
	}
	if a.ImagesRemoved != nil {
		a.ImagesRemoved()
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": toImageInfos(removed)})
}

func displayName(i image.Image) string {
	if i.Name != "" {
		return i.Name
	}
	return i.Digest
}

// digestOf parses "sha256:<hex>" and "name@sha256:<hex>" as the image store does.
func digestOf(ref string) (string, bool) {
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		ref = ref[i+1:]
	}
	hex, ok := strings.CutPrefix(ref, "sha256:")
	if !ok || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", false
	}
	return ref, true
}

// splitRemoved divides the stored images into those Remove(ref) removes and
// the rest, with the store's semantics: a digest removes every tag pointing
// at it, a name removes that tag.
func splitRemoved(ref string, all []image.Image) (removed, kept []image.Image) {
	if dg, ok := digestOf(ref); ok {
		for _, i := range all {
			if i.Digest == dg {
				removed = append(removed, i)
			} else {
				kept = append(kept, i)
			}
		}
		return removed, kept
	}
	n, err := image.NormalizeName(ref)
	if err != nil {
		return nil, all
	}
	for _, i := range all {
		if i.Name == n && len(removed) == 0 {
			removed = append(removed, i)
		} else {
			kept = append(kept, i)
		}
	}
	return removed, kept
}

// imageResolves reports whether a deployment's image reference names one of imgs.
func imageResolves(ref string, imgs []image.Image) bool {
	if dg, ok := digestOf(ref); ok {
		for _, i := range imgs {
			if i.Digest == dg {
				return true
			}
		}
		return false
	}
	n, err := image.NormalizeName(ref)
	if err != nil {
		return false
	}
	for _, i := range imgs {
		if i.Name == n {
			return true
		}
	}
	return false
}

// humanBytes renders n in binary units, e.g. "16 GiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %ciB", int64(v), "KMGTPE"[exp])
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp])
}
