package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	defaultMaxTokens = 16
	maxMaxTokens     = 512
	maxStops         = 4
	maxBodyBytes     = 1 << 20
)

// hooks let tests observe a request's progress without timing assumptions.
// Each is called with the request's prompt. All are optional.
type hooks struct {
	queued   func(prompt string) // waiting for a generation slot
	started  func(prompt string) // holds a slot, generation begins
	finished func(prompt string) // generation over, just before the slot is freed
	exited   func(prompt string) // the handler has returned
}

func callHook(h func(string), prompt string) {
	if h != nil {
		h(prompt)
	}
}

// server is the HTTP side: request parsing, batching slots, streaming.
type server struct {
	cfg     config
	model   *Model
	log     *slog.Logger
	lim     *limiter
	created int64

	// pace waits for the next token to be "decoded"; by default it sleeps
	// cfg.tokenDelay (or returns early when ctx ends).
	pace  func(ctx context.Context) error
	hooks hooks

	seedMu  sync.Mutex
	seedRng *mrand.Rand

	draining atomic.Bool
}

func newServer(cfg config, model *Model, logger *slog.Logger) *server {
	seed := uint64(cfg.seed)
	if cfg.seed == 0 {
		seed = mrand.Uint64()
	}
	return &server{
		cfg:     cfg,
		model:   model,
		log:     logger,
		lim:     newLimiter(cfg.maxConcurrency, cfg.maxQueue),
		created: time.Now().Unix(),
		pace:    timerPace(cfg.tokenDelay),
		seedRng: mrand.New(mrand.NewPCG(seed, 0x5eed)),
	}
}

func timerPace(d time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		if d <= 0 {
			return ctx.Err()
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *server) nextSeed() uint64 {
	s.seedMu.Lock()
	defer s.seedMu.Unlock()
	return s.seedRng.Uint64()
}

// handler is the complete HTTP handler: routes plus logging and headers.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/completions", s.handleCompletions)
	mux.HandleFunc("/v1/models", s.handleModels)
	mux.HandleFunc("/v1/models/{id}", s.handleModel)
	mux.HandleFunc("/healthz", s.handleHealthz)
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	// The root answers like /healthz, so a spec without a health path (the
	// default probe is GET /) sees the service ready.
	mux.HandleFunc("GET /{$}", s.handleHealthz)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "invalid_request_error", fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path), "", "not_found")
	})
	return s.withLogging(mux)
}

// statusRecorder remembers the status code for the access log and passes
// flushes through for streaming.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *server) withLogging(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if s.cfg.replicaID != "" {
			w.Header().Set("X-Replica-Id", s.cfg.replicaID)
		}
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", status,
			"duration", time.Since(start).Round(time.Microsecond), "remote", r.RemoteAddr)
	})
}

// ---- errors ----

type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func strOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// writeError sends an OpenAI-style error body: {"error":{message,type,param,code}}.
func writeError(w http.ResponseWriter, status int, typ, msg, param, code string) {
	writeJSON(w, status, map[string]apiError{"error": {Message: msg, Type: typ, Param: strOrNil(param), Code: strOrNil(code)}})
}

func badRequest(w http.ResponseWriter, msg, param string) {
	writeError(w, http.StatusBadRequest, "invalid_request_error", msg, param, "invalid_value")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "invalid_request_error",
		fmt.Sprintf("method %s not allowed on %s; use %s", r.Method, r.URL.Path, allow), "", "method_not_allowed")
}

// ---- simple endpoints ----

func (s *server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r, "GET, HEAD")
		return
	}
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (s *server) modelObject() modelObject {
	return modelObject{ID: s.cfg.modelName, Object: "model", Created: s.created, OwnedBy: "aloft"}
}

func (s *server) handleModels(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r, "GET, HEAD")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []modelObject{s.modelObject()}})
}

func (s *server) handleModel(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r, "GET, HEAD")
		return
	}
	if id := r.PathValue("id"); id != s.cfg.modelName {
		writeError(w, http.StatusNotFound, "invalid_request_error", fmt.Sprintf("the model %q does not exist", id), "model", "model_not_found")
		return
	}
	writeJSON(w, http.StatusOK, s.modelObject())
}

// ---- completions ----

type completionRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	MaxTokens     *int            `json:"max_tokens"`
	Temperature   *float64        `json:"temperature"`
	Stream        bool            `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Seed *int64          `json:"seed"`
	Stop json.RawMessage `json:"stop"`
	N    *int            `json:"n"`
}

// completionParams is a validated request.
type completionParams struct {
	prompt       string
	maxTokens    int
	temperature  float64
	stream       bool
	includeUsage bool
	seed         *int64
	stops        []string
}

type paramError struct {
	status      int
	msg, param  string
	code, etype string
}

func (e *paramError) Error() string { return e.msg }

func invalid(param, format string, args ...any) *paramError {
	return &paramError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...), param: param, code: "invalid_value", etype: "invalid_request_error"}
}

func isNull(raw json.RawMessage) bool {
	t := strings.TrimSpace(string(raw))
	return t == "" || t == "null"
}

func (s *server) parseCompletion(body []byte) (completionParams, *paramError) {
	var req completionRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return completionParams{}, &paramError{status: http.StatusBadRequest, msg: "invalid JSON body: " + err.Error(), code: "invalid_json", etype: "invalid_request_error"}
	}
	p := completionParams{maxTokens: defaultMaxTokens, temperature: 1, stream: req.Stream, seed: req.Seed}
	if req.Model != "" && req.Model != s.cfg.modelName {
		return p, &paramError{status: http.StatusNotFound, msg: fmt.Sprintf("the model %q does not exist; this server serves %q", req.Model, s.cfg.modelName), param: "model", code: "model_not_found", etype: "invalid_request_error"}
	}
	if !isNull(req.Prompt) {
		var one string
		var many []string
		switch {
		case json.Unmarshal(req.Prompt, &one) == nil:
			p.prompt = one
		case json.Unmarshal(req.Prompt, &many) == nil:
			if len(many) > 1 {
				return p, invalid("prompt", "only a single prompt is supported, got %d", len(many))
			}
			if len(many) == 1 {
				p.prompt = many[0]
			}
		default:
			return p, invalid("prompt", "prompt must be a string or an array of one string")
		}
	}
	if req.MaxTokens != nil {
		p.maxTokens = *req.MaxTokens
	}
	if p.maxTokens < 1 || p.maxTokens > maxMaxTokens {
		return p, invalid("max_tokens", "max_tokens must be between 1 and %d, got %d", maxMaxTokens, p.maxTokens)
	}
	if req.Temperature != nil {
		p.temperature = *req.Temperature
	}
	if p.temperature < 0 || p.temperature > 2 {
		return p, invalid("temperature", "temperature must be between 0 and 2, got %g", p.temperature)
	}
	if req.N != nil && *req.N != 1 {
		return p, invalid("n", "only n=1 is supported")
	}
	if req.StreamOptions != nil {
		if !req.Stream {
			return p, invalid("stream_options", "stream_options is only allowed with stream: true")
		}
		p.includeUsage = req.StreamOptions.IncludeUsage
	}
	if !isNull(req.Stop) {
		var one string
		var many []string
		switch {
		case json.Unmarshal(req.Stop, &one) == nil:
			many = []string{one}
		case json.Unmarshal(req.Stop, &many) == nil:
		default:
			return p, invalid("stop", "stop must be a string or an array of strings")
		}
		if len(many) > maxStops {
			return p, invalid("stop", "at most %d stop sequences are allowed, got %d", maxStops, len(many))
		}
		for _, st := range many {
			if st != "" {
				p.stops = append(p.stops, st)
			}
		}
	}
	return p, nil
}

type choice struct {
	Text         string  `json:"text"`
	Index        int     `json:"index"`
	Logprobs     *string `json:"logprobs"` // always null
	FinishReason *string `json:"finish_reason"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type completionResponse struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
	Usage   *usage   `json:"usage,omitempty"`
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return "cmpl-" + hex.EncodeToString(b[:])
}

func (s *server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r, "POST")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "invalid_request_error", fmt.Sprintf("request body larger than %d bytes", maxBodyBytes), "", "body_too_large")
			return
		}
		badRequest(w, "reading request body: "+err.Error(), "")
		return
	}
	p, perr := s.parseCompletion(body)
	if perr != nil {
		writeError(w, perr.status, perr.etype, perr.msg, perr.param, perr.code)
		return
	}

	defer callHook(s.hooks.exited, p.prompt)
	ctx := r.Context()
	release, err := s.lim.acquire(ctx, func() { callHook(s.hooks.queued, p.prompt) })
	if errors.Is(err, errQueueFull) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "rate_limit_error",
			fmt.Sprintf("server busy: %d requests generating and %d queued; retry later", s.cfg.maxConcurrency, s.cfg.maxQueue), "", "rate_limit_exceeded")
		return
	}
	if err != nil {
		// The client went away while queued; nobody is listening for a body.
		w.WriteHeader(499)
		return
	}
	defer release()
	callHook(s.hooks.started, p.prompt)
	defer callHook(s.hooks.finished, p.prompt) // runs before release

	seed := s.nextSeed()
	if p.seed != nil {
		seed = uint64(*p.seed)
	}
	gen, promptTokens := s.model.NewGenerator(p.prompt, p.temperature, seed)
	resp := completionResponse{ID: newID(), Object: "text_completion", Created: time.Now().Unix(), Model: s.cfg.modelName}
	if p.stream {
		s.stream(ctx, w, p, gen, promptTokens, resp)
		return
	}

	var text strings.Builder
	st := newStopper(p.stops)
	n, reason := 0, "length"
	for n < p.maxTokens {
		if err := s.pace(ctx); err != nil {
			w.WriteHeader(499)
			return
		}
		piece, _ := gen.Next()
		n++
		out, stopped := st.add(piece)
		text.WriteString(out)
		if stopped {
			reason = "stop"
			break
		}
	}
	if reason == "length" {
		text.WriteString(st.flush())
	}
	resp.Choices = []choice{{Text: text.String(), FinishReason: &reason}}
	resp.Usage = &usage{PromptTokens: promptTokens, CompletionTokens: n, TotalTokens: promptTokens + n}
	writeJSON(w, http.StatusOK, resp)
}

// stream sends one server-sent event per generated token, flushed as it is
// produced, then "data: [DONE]".
func (s *server) stream(ctx context.Context, w http.ResponseWriter, p completionParams, gen *Generator, promptTokens int, resp completionResponse) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	send := func(v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	st := newStopper(p.stops)
	n := 0
	for n < p.maxTokens {
		if err := s.pace(ctx); err != nil {
			return
		}
		piece, _ := gen.Next()
		n++
		out, stopped := st.add(piece)
		var reason *string
		switch {
		case stopped:
			r := "stop"
			reason = &r
		case n == p.maxTokens:
			out += st.flush()
			r := "length"
			reason = &r
		case out == "":
			continue // held back: it may be the start of a stop sequence
		}
		resp.Choices = []choice{{Text: out, FinishReason: reason}}
		if !send(resp) {
			return
		}
		if stopped {
			break
		}
	}
	if p.includeUsage {
		resp.Choices = []choice{}
		resp.Usage = &usage{PromptTokens: promptTokens, CompletionTokens: n, TotalTokens: promptTokens + n}
		if !send(resp) {
			return
		}
	}
	io.WriteString(w, "data: [DONE]\n\n")
	rc.Flush()
}

// stopper applies stop sequences to text produced piece by piece. It never
// releases text that might turn out to be the start of a stop sequence.
type stopper struct {
	stops   []string
	buf     string
	emitted int
}

func newStopper(stops []string) *stopper { return &stopper{stops: stops} }

// add appends piece and returns the text that is now safe to send; stopped
// reports that a stop sequence was found (the returned text ends before it).
func (s *stopper) add(piece string) (out string, stopped bool) {
	s.buf += piece
	if len(s.stops) == 0 {
		out, s.emitted = s.buf[s.emitted:], len(s.buf)
		return out, false
	}
	cut := -1
	for _, st := range s.stops {
		if i := strings.Index(s.buf[s.emitted:], st); i >= 0 && (cut < 0 || s.emitted+i < cut) {
			cut = s.emitted + i
		}
	}
	if cut >= 0 {
		out, s.emitted = s.buf[s.emitted:cut], cut
		s.buf = s.buf[:cut]
		return out, true
	}
	hold := 0
	for _, st := range s.stops {
		for k := min(len(st)-1, len(s.buf)-s.emitted); k > hold; k-- {
			if strings.HasSuffix(s.buf, st[:k]) {
				hold = k
				break
			}
		}
	}
	safe := len(s.buf) - hold
	out, s.emitted = s.buf[s.emitted:safe], safe
	return out, false
}

// flush releases any held-back text (generation ended without a stop).
func (s *stopper) flush() string {
	out := s.buf[s.emitted:]
	s.emitted = len(s.buf)
	return out
}

// handleMetrics serves the batch state in the Prometheus text format, under
// names like vLLM's (num_requests_running / num_requests_waiting), so an
// autoscaler can scale on the queue (aloft: customMetric
// "metrics:completions_requests_waiting").
func (s *server) handleMetrics(w http.ResponseWriter, _ *http.Request) {
	running, waiting := s.lim.load()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	fmt.Fprintf(w, "# HELP completions_requests_running Requests holding a generation slot.\n# TYPE completions_requests_running gauge\ncompletions_requests_running %d\n", running)
	fmt.Fprintf(w, "# HELP completions_requests_waiting Requests queued for a generation slot.\n# TYPE completions_requests_waiting gauge\ncompletions_requests_waiting %d\n", waiting)
	fmt.Fprintf(w, "# HELP completions_slots Generation slots (max concurrency).\n# TYPE completions_slots gauge\ncompletions_slots %d\n", cap(s.lim.slots))
}

// ---- batching slots ----

var errQueueFull = errors.New("queue full")

// limiter models a GPU's batch slots: at most cap(slots) requests generate at
// once; up to maxQueue more wait in line; beyond that requests are refused.
type limiter struct {
	slots    chan struct{}
	mu       sync.Mutex
	waiting  int
	maxQueue int
}

// load reports the requests generating and those queued now.
func (l *limiter) load() (running, waiting int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.slots), l.waiting
}

func newLimiter(concurrency, maxQueue int) *limiter {
	return &limiter{slots: make(chan struct{}, concurrency), maxQueue: maxQueue}
}

// acquire takes a slot, waiting in the queue if needed (calling onQueued when
// it starts to wait). It fails with errQueueFull when the queue is full, or
// with ctx's error if ctx ends while waiting.
func (l *limiter) acquire(ctx context.Context, onQueued func()) (release func(), err error) {
	release = func() { <-l.slots }
	select {
	case l.slots <- struct{}{}:
		return release, nil
	default:
	}
	l.mu.Lock()
	if l.waiting >= l.maxQueue {
		l.mu.Unlock()
		return nil, errQueueFull
	}
	l.waiting++
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.waiting--
		l.mu.Unlock()
	}()
	if onQueued != nil {
		onQueued()
	}
	select {
	case l.slots <- struct{}{}:
		return release, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
