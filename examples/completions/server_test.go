package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitLimit bounds every wait on a condition so a broken test fails instead
// of hanging. Nothing waits this long when the code works.
const waitLimit = 20 * time.Second

var client = &http.Client{Timeout: 60 * time.Second}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig() config {
	return config{
		listen:          "127.0.0.1:0",
		maxConcurrency:  4,
		maxQueue:        64,
		modelName:       "aloft-ngram",
		seed:            1,
		shutdownTimeout: 10 * time.Second,
		replicaID:       "replica-test",
	}
}

type testEnv struct {
	srv *server
	ts  *httptest.Server
	log *syncBuffer
}

// newTestEnv serves a server over real HTTP. setup may replace the pacer and
// hooks before the first request.
func newTestEnv(t *testing.T, cfg config, setup func(*server)) *testEnv {
	t.Helper()
	logs := &syncBuffer{}
	s := newServer(cfg, testModel(), slog.New(slog.NewTextHandler(logs, nil)))
	if setup != nil {
		setup(s)
	}
	ts := httptest.NewServer(s.handler())
	t.Cleanup(ts.Close)
	return &testEnv{srv: s, ts: ts, log: logs}
}

// gate is a pacer the test controls: each token waits for a value on step,
// or for step to be closed (which lets every remaining token through).
type gate struct {
	step chan struct{}
	once sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{step: make(chan struct{})}
	// Registered after the server's cleanup, so it runs first and no handler
	// is left blocked while httptest waits for requests to finish.
	t.Cleanup(g.open)
	return g
}

func (g *gate) pace(ctx context.Context) error {
	select {
	case <-g.step:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) open() { g.once.Do(func() { close(g.step) }) }

func post(t *testing.T, url, body string) (*http.Response, []byte) {
	t.Helper()
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	return resp, b
}

type completion struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Text         string  `json:"text"`
		Index        int     `json:"index"`
		Logprobs     any     `json:"logprobs"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

func decodeCompletion(t *testing.T, b []byte) completion {
	t.Helper()
	var c completion
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return c
}

func complete(t *testing.T, env *testEnv, body string) completion {
	t.Helper()
	resp, b := post(t, env.ts.URL+"/v1/completions", body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	return decodeCompletion(t, b)
}

// readEvent returns the data of the next server-sent event.
func readEvent(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	var data []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading event stream: %v (partial %q)", err, line)
		}
		line = strings.TrimRight(line, "\n")
		if line == "" {
			if len(data) == 0 {
				continue
			}
			return strings.Join(data, "\n")
		}
		d, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("unexpected stream line %q", line)
		}
		data = append(data, d)
	}
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestCompletionResponseShape(t *testing.T) {
	env := newTestEnv(t, testConfig(), nil)
	resp, b := post(t, env.ts.URL+"/v1/completions", `{"model":"aloft-ngram","prompt":"Alice was beginning to","max_tokens":15,"temperature":0}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if id := resp.Header.Get("X-Replica-Id"); id != "replica-test" {
		t.Errorf("X-Replica-Id %q", id)
	}
	// The exact key set, as OpenAI clients expect it.
	var raw map[string]json.RawMessage
	json.Unmarshal(b, &raw)
	for _, k := range []string{"id", "object", "created", "model", "choices", "usage"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("response lacks %q: %s", k, b)
		}
	}
	if !bytes.Contains(b, []byte(`"logprobs":null`)) {
		t.Errorf("choice lacks \"logprobs\":null: %s", b)
	}
	c := decodeCompletion(t, b)
	if !strings.HasPrefix(c.ID, "cmpl-") || c.Object != "text_completion" || c.Model != "aloft-ngram" {
		t.Errorf("bad header fields: %+v", c)
	}
	if d := time.Since(time.Unix(c.Created, 0)); d < 0 || d > time.Minute {
		t.Errorf("created %d is not now", c.Created)
	}
	if len(c.Choices) != 1 {
		t.Fatalf("want 1 choice, got %d", len(c.Choices))
	}
	ch := c.Choices[0]
	if ch.Index != 0 || ch.Text == "" || ch.FinishReason == nil || *ch.FinishReason != "length" {
		t.Errorf("bad choice: %+v", ch)
	}
	if want := " get in?”\n\n“I don’t know,” said the Caterpillar."; ch.Text != want {
		t.Errorf("greedy text %q, want %q", ch.Text, want)
	}
	u := c.Usage
	if u == nil || u.PromptTokens != 4 || u.CompletionTokens != 15 || u.TotalTokens != 19 {
		t.Errorf("usage %+v, want 4+15=19", u)
	}

	// Defaults: 16 tokens; the model may be omitted.
	c = complete(t, env, `{"prompt":"The Queen"}`)
	if c.Usage.CompletionTokens != defaultMaxTokens {
		t.Errorf("default max_tokens: generated %d tokens", c.Usage.CompletionTokens)
	}
	if logs := env.log.String(); !strings.Contains(logs, "method=POST path=/v1/completions status=200 duration=") {
		t.Errorf("no request log line in:\n%s", logs)
	}
}

func TestCompletionReproducible(t *testing.T) {
	env := newTestEnv(t, testConfig(), nil)
	body := `{"prompt":"The Duchess","max_tokens":30,"temperature":0}`
	a, b := complete(t, env, body), complete(t, env, body)
	if a.Choices[0].Text != b.Choices[0].Text {
		t.Errorf("temperature 0 differs:\n%q\n%q", a.Choices[0].Text, b.Choices[0].Text)
	}
	body = `{"prompt":"The Duchess","max_tokens":30,"temperature":1.2,"seed":99}`
	a, b = complete(t, env, body), complete(t, env, body)
	if a.Choices[0].Text != b.Choices[0].Text {
		t.Errorf("same seed differs:\n%q\n%q", a.Choices[0].Text, b.Choices[0].Text)
	}
	// Every generated word occurs in the corpus.
	for _, w := range tokenize(a.Choices[0].Text) {
		if !testModel().InVocab(w) {
			t.Errorf("generated %q, which is not in the corpus vocabulary", w)
		}
	}
}

func TestTokenDelayIsApplied(t *testing.T) {
	cfg := testConfig()
	cfg.tokenDelay = 25 * time.Millisecond
	env := newTestEnv(t, cfg, nil)
	start := time.Now()
	complete(t, env, `{"prompt":"Alice","max_tokens":4}`)
	if d := time.Since(start); d < 4*cfg.tokenDelay {
		t.Errorf("4 tokens at %s each took only %s", cfg.tokenDelay, d)
	}
}

func TestStopSequences(t *testing.T) {
	env := newTestEnv(t, testConfig(), nil)
	c := complete(t, env, `{"prompt":"Alice was beginning to","max_tokens":40,"temperature":0,"stop":"\n\n"}`)
	if got := c.Choices[0]; got.Text != " get in?”" || *got.FinishReason != "stop" {
		t.Errorf("got %q finish %q, want %q stop", got.Text, *got.FinishReason, " get in?”")
	}
	if c.Usage.CompletionTokens >= 40 {
		t.Errorf("generation did not stop early: %d tokens", c.Usage.CompletionTokens)
	}

	// The same through the stream, with a usage chunk at the end.
	resp, err := client.Post(env.ts.URL+"/v1/completions", "application/json", strings.NewReader(
		`{"prompt":"Alice was beginning to","max_tokens":40,"temperature":0,"stop":["xyzzy","\n\n"],"stream":true,"stream_options":{"include_usage":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	var text strings.Builder
	var last completion
	for {
		data := readEvent(t, r)
		if data == "[DONE]" {
			break
		}
		last = decodeCompletion(t, []byte(data))
		if len(last.Choices) > 0 {
			text.WriteString(last.Choices[0].Text)
			if fr := last.Choices[0].FinishReason; fr != nil && *fr != "stop" {
				t.Errorf("finish_reason %q", *fr)
			}
		}
	}
	if text.String() != " get in?”" {
		t.Errorf("streamed %q", text.String())
	}
	if last.Usage == nil || len(last.Choices) != 0 || last.Usage.CompletionTokens != c.Usage.CompletionTokens {
		t.Errorf("final usage chunk: %+v", last)
	}
}

func TestStreamSendsTokensAsTheyAreGenerated(t *testing.T) {
	g := newGate(t)
	exited := make(chan struct{})
	var once sync.Once
	env := newTestEnv(t, testConfig(), func(s *server) {
		s.pace = g.pace
		s.hooks.exited = func(string) { once.Do(func() { close(exited) }) }
	})

	const n = 5
	resp, err := client.Post(env.ts.URL+"/v1/completions", "application/json",
		strings.NewReader(fmt.Sprintf(`{"prompt":"Alice was beginning to","max_tokens":%d,"temperature":0,"stream":true}`, n)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp.Header.Get("X-Replica-Id") != "replica-test" {
		t.Errorf("X-Replica-Id %q", resp.Header.Get("X-Replica-Id"))
	}
	r := bufio.NewReader(resp.Body)

	// Let exactly one token be generated, and receive it.
	g.step <- struct{}{}
	first := decodeCompletion(t, []byte(readEvent(t, r)))
	if len(first.Choices) != 1 || first.Choices[0].Text == "" || first.Choices[0].FinishReason != nil {
		t.Fatalf("bad first event: %+v", first)
	}
	// The handler is now waiting for the second token; it cannot have finished.
	select {
	case <-exited:
		t.Fatal("handler finished before the first event was read")
	default:
	}

	g.open()
	text := first.Choices[0].Text
	events := 1
	for {
		data := readEvent(t, r)
		if data == "[DONE]" {
			break
		}
		ev := decodeCompletion(t, []byte(data))
		if ev.ID != first.ID || ev.Object != "text_completion" || len(ev.Choices) != 1 {
			t.Fatalf("bad event %s", data)
		}
		events++
		text += ev.Choices[0].Text
		if fr := ev.Choices[0].FinishReason; (events == n) != (fr != nil) || (fr != nil && *fr != "length") {
			t.Errorf("event %d finish_reason %v", events, fr)
		}
	}
	if events != n {
		t.Errorf("got %d token events, want %d", events, n)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("data after [DONE]: %v", err)
	}
	waitFor(t, exited, "the handler to finish")

	// The stream carries the same text as the non-streaming answer.
	c := complete(t, env, fmt.Sprintf(`{"prompt":"Alice was beginning to","max_tokens":%d,"temperature":0}`, n))
	if c.Choices[0].Text != text {
		t.Errorf("stream %q != non-stream %q", text, c.Choices[0].Text)
	}
}

func TestConcurrencyLimitAndQueue(t *testing.T) {
	g := newGate(t)
	events := make(chan string, 32)
	cfg := testConfig()
	cfg.maxConcurrency, cfg.maxQueue = 1, 1
	env := newTestEnv(t, cfg, func(s *server) {
		s.pace = g.pace
		s.hooks.queued = func(p string) { events <- "queued " + p }
		s.hooks.started = func(p string) { events <- "started " + p }
		s.hooks.finished = func(p string) { events <- "finished " + p }
	})
	expect := func(want string) {
		t.Helper()
		if got := waitFor(t, events, want); got != want {
			t.Fatalf("event %q, want %q", got, want)
		}
	}
	type result struct {
		status int
		body   []byte
	}
	send := func(prompt string) <-chan result {
		ch := make(chan result, 1)
		go func() {
			resp, err := client.Post(env.ts.URL+"/v1/completions", "application/json",
				strings.NewReader(fmt.Sprintf(`{"prompt":%q,"max_tokens":3}`, prompt)))
			if err != nil {
				ch <- result{status: -1, body: []byte(err.Error())}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			ch <- result{resp.StatusCode, b}
		}()
		return ch
	}

	a := send("A")
	expect("started A") // A holds the only slot, blocked on the gate
	b := send("B")
	expect("queued B") // B waits in the queue...
	select {
	case e := <-events: // ...and cannot start while A generates
		t.Fatalf("unexpected event %q while A holds the slot", e)
	default:
	}

	// /metrics shows the batch state: one generating, one queued.
	mresp, err := client.Get(env.ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mbody, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{"\ncompletions_requests_running 1\n", "\ncompletions_requests_waiting 1\n", "\ncompletions_slots 1\n", "# TYPE completions_requests_waiting gauge"} {
		if !strings.Contains(string(mbody), want) {
			t.Errorf("/metrics lacks %q:\n%s", strings.TrimSpace(want), mbody)
		}
	}

	// The queue (size 1) is full: C is refused at once.
	resp, body := post(t, env.ts.URL+"/v1/completions", `{"prompt":"C","max_tokens":3}`)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("C: status %d, want 429: %s", resp.StatusCode, body)
	}
	if ra := resp.Header.Get("Retry-After"); ra == "" {
		t.Error("429 without Retry-After")
	}
	checkErrorBody(t, resp, body)
	select {
	case e := <-events:
		t.Fatalf("unexpected event %q after C was refused", e)
	default:
	}

	g.open()
	expect("finished A")
	expect("started B") // only once A has finished
	expect("finished B")
	for name, ch := range map[string]<-chan result{"A": a, "B": b} {
		if r := waitFor(t, ch, name+"'s response"); r.status != http.StatusOK {
			t.Errorf("%s: status %d: %s", name, r.status, r.body)
		}
	}
}

func TestLimiterQueuedClientGivesUp(t *testing.T) {
	l := newLimiter(1, 1)
	release, err := l.acquire(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	queued := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := l.acquire(ctx, func() { close(queued) })
		done <- err
	}()
	waitFor(t, queued, "the second acquire to queue")
	cancel()
	if err := waitFor(t, done, "the cancelled acquire"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire: %v", err)
	}
	// The queue place was given back: another request may wait again.
	queued2 := make(chan struct{})
	got := make(chan error, 1)
	go func() {
		r, err := l.acquire(context.Background(), func() { close(queued2) })
		if err == nil {
			r()
		}
		got <- err
	}()
	waitFor(t, queued2, "the third acquire to queue")
	release()
	if err := waitFor(t, got, "the third acquire"); err != nil {
		t.Fatal(err)
	}
}

// checkErrorBody asserts an OpenAI-style error: {"error":{message,type,param,code}}.
func checkErrorBody(t *testing.T, resp *http.Response, body []byte) map[string]any {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	var e struct {
		Error map[string]any `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil {
		t.Fatalf("not an error body: %s", body)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := e.Error[k]; !ok {
			t.Errorf("error lacks %q: %s", k, body)
		}
	}
	if m, _ := e.Error["message"].(string); m == "" {
		t.Errorf("empty error message: %s", body)
	}
	if ty, _ := e.Error["type"].(string); ty == "" {
		t.Errorf("empty error type: %s", body)
	}
	return e.Error
}

func TestBadRequests(t *testing.T) {
	env := newTestEnv(t, testConfig(), nil)
	cases := []struct {
		name, method, path, body string
		status                   int
		param                    any
	}{
		{"malformed JSON", "POST", "/v1/completions", `{"prompt": "x",`, 400, nil},
		{"not an object", "POST", "/v1/completions", `[1,2]`, 400, nil},
		{"trailing garbage", "POST", "/v1/completions", `{"prompt":"x"} {}`, 400, nil},
		{"max_tokens zero", "POST", "/v1/completions", `{"prompt":"x","max_tokens":0}`, 400, "max_tokens"},
		{"max_tokens negative", "POST", "/v1/completions", `{"prompt":"x","max_tokens":-3}`, 400, "max_tokens"},
		{"max_tokens too big", "POST", "/v1/completions", `{"prompt":"x","max_tokens":513}`, 400, "max_tokens"},
		{"max_tokens not a number", "POST", "/v1/completions", `{"prompt":"x","max_tokens":"ten"}`, 400, nil},
		{"temperature too high", "POST", "/v1/completions", `{"prompt":"x","temperature":2.5}`, 400, "temperature"},
		{"temperature negative", "POST", "/v1/completions", `{"prompt":"x","temperature":-0.1}`, 400, "temperature"},
		{"prompt not text", "POST", "/v1/completions", `{"prompt":42}`, 400, "prompt"},
		{"several prompts", "POST", "/v1/completions", `{"prompt":["a","b"]}`, 400, "prompt"},
		{"too many stops", "POST", "/v1/completions", `{"prompt":"x","stop":["a","b","c","d","e"]}`, 400, "stop"},
		{"bad stop", "POST", "/v1/completions", `{"prompt":"x","stop":7}`, 400, "stop"},
		{"n above one", "POST", "/v1/completions", `{"prompt":"x","n":2}`, 400, "n"},
		{"unknown model", "POST", "/v1/completions", `{"model":"gpt-4","prompt":"x"}`, 404, "model"},
		{"GET completions", "GET", "/v1/completions", ``, 405, nil},
		{"PUT completions", "PUT", "/v1/completions", `{}`, 405, nil},
		{"POST healthz", "POST", "/healthz", `{}`, 405, nil},
		{"DELETE models", "DELETE", "/v1/models", ``, 405, nil},
		{"unknown model id", "GET", "/v1/models/gpt-4", ``, 404, "model"},
		{"unknown path", "GET", "/v1/chat/completions", ``, 404, nil},
		{"body too large", "POST", "/v1/completions", `{"prompt":"` + strings.Repeat("a", maxBodyBytes) + `"}`, 413, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, env.ts.URL+c.path, strings.NewReader(c.body))
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			e := checkErrorBody(t, resp, body)
			if e["param"] != c.param {
				t.Errorf("param %v, want %v", e["param"], c.param)
			}
			if c.status == 405 && resp.Header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
}

func TestHealthzAndModels(t *testing.T) {
	env := newTestEnv(t, testConfig(), nil)

	resp, err := client.Get(env.ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != `{"status":"ok"}` {
		t.Errorf("healthz: %d %s", resp.StatusCode, b)
	}
	if resp.Header.Get("X-Replica-Id") != "replica-test" {
		t.Errorf("healthz X-Replica-Id %q", resp.Header.Get("X-Replica-Id"))
	}
	// The root answers like /healthz (the default readiness probe is GET /).
	resp, err = client.Get(env.ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != `{"status":"ok"}` {
		t.Errorf("GET /: %d %s", resp.StatusCode, b)
	}

	resp, err = client.Get(env.ts.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID, Object, OwnedBy string
			Created             int64
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("models: %d %s", resp.StatusCode, b)
	}
	if list.Object != "list" || len(list.Data) != 1 || list.Data[0].ID != "aloft-ngram" || list.Data[0].Object != "model" || list.Data[0].Created == 0 {
		t.Errorf("models: %s", b)
	}

	resp, err = client.Get(env.ts.URL + "/v1/models/aloft-ngram")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /v1/models/aloft-ngram: %d", resp.StatusCode)
	}

	// Without ALOFT_REPLICA_ID no header is sent.
	cfg := testConfig()
	cfg.replicaID = ""
	env2 := newTestEnv(t, cfg, nil)
	resp, err = client.Get(env2.ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, ok := resp.Header["X-Replica-Id"]; ok {
		t.Error("X-Replica-Id sent without ALOFT_REPLICA_ID")
	}
}
