package sim

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Request is one request of a trace.
type Request struct {
	At  time.Duration `json:"at"`  // arrival, since the trace's Start
	In  int           `json:"in"`  // input (context, prompt) tokens
	Out int           `json:"out"` // output (generated) tokens
}

// Trace is a sequence of requests sorted by arrival.
type Trace struct {
	Name     string
	Start    time.Time // time zero of the run: the first arrival, truncated to the second
	Requests []Request
}

// Span is the time from Start to the last arrival.
func (t Trace) Span() time.Duration {
	if len(t.Requests) == 0 {
		return 0
	}
	return t.Requests[len(t.Requests)-1].At
}

// TimestampLayout is the layout of the Azure LLM inference traces' TIMESTAMP
// column (local time, 100 ns digits); fewer fractional digits parse too.
const TimestampLayout = "2006-01-02 15:04:05.9999999"

// ParseCSV reads a trace in the Azure LLM inference trace format: one request
// per row with three columns, arrival timestamp, input tokens and output
// tokens, and an optional header row (TIMESTAMP,ContextTokens,GeneratedTokens
// upstream). A timestamp is "2006-01-02 15:04:05.9999999", RFC 3339, or a
// number of seconds (from any origin). Rows need not be sorted. Every error
// names the line.
func ParseCSV(r io.Reader, name string) (Trace, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	type row struct {
		at      time.Time
		in, out int
	}
	var rows []row
	for first := true; ; first = false {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return Trace{}, fmt.Errorf("%s: line %d: %v", name, pe.Line, pe.Err)
			}
			return Trace{}, fmt.Errorf("%s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // blank line
		}
		if len(rec) != 3 {
			return Trace{}, fmt.Errorf("%s: line %d: want 3 columns (arrival timestamp, input tokens, output tokens), got %d", name, line, len(rec))
		}
		at, terr := parseTimestamp(rec[0])
		if terr != nil && first && isHeader(rec) {
			continue
		}
		if terr != nil {
			return Trace{}, fmt.Errorf("%s: line %d: column 1 (timestamp): %v", name, line, terr)
		}
		var counts [2]int
		for i, f := range rec[1:] {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 0 {
				what := [2]string{"input tokens", "output tokens"}[i]
				return Trace{}, fmt.Errorf("%s: line %d: column %d (%s): %q is not a non-negative integer", name, line, i+2, what, f)
			}
			counts[i] = n
		}
		rows = append(rows, row{at, counts[0], counts[1]})
	}
	if len(rows) == 0 {
		return Trace{}, fmt.Errorf("%s: no requests", name)
	}
	slices.SortStableFunc(rows, func(a, b row) int { return a.at.Compare(b.at) })
	t := Trace{Name: name, Start: rows[0].at.Truncate(time.Second), Requests: make([]Request, len(rows))}
	for i, r := range rows {
		t.Requests[i] = Request{At: r.at.Sub(t.Start), In: r.in, Out: r.out}
	}
	return t, nil
}

// LoadCSV reads a trace file; the trace is named after the file.
func LoadCSV(path string) (Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return Trace{}, err
	}
	defer f.Close()
	return ParseCSV(f, strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)))
}

func isHeader(rec []string) bool {
	for _, f := range rec {
		if _, err := strconv.ParseFloat(strings.TrimSpace(f), 64); err == nil {
			return false
		}
	}
	return true
}

func parseTimestamp(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(TimestampLayout, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 && f < 1e11 {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a timestamp (want %q, RFC 3339, or seconds)", s, TimestampLayout)
}

// Stats are a trace's figures under a model.
type Stats struct {
	Requests    int           `json:"requests"`
	Span        time.Duration `json:"span"`        // seconds in JSON
	MeanRate    float64       `json:"meanRate"`    // requests per second over the span
	PeakMinute  int           `json:"peakMinute"`  // most arrivals in any 60 s window
	MeanService time.Duration `json:"meanService"` // mean service time under the model (seconds in JSON)
	// PeakLoad is the largest offered load of any 60 s window: the service
	// seconds of the requests arriving in it divided by 60, i.e. the mean
	// number of busy slots needed to keep up with that minute.
	PeakLoad float64 `json:"peakLoad"`
}

// Stats computes the trace's figures under m.
func (t Trace) Stats(m Model) Stats {
	s := Stats{Requests: len(t.Requests), Span: t.Span()}
	if len(t.Requests) == 0 {
		return s
	}
	if s.Span > 0 {
		s.MeanRate = float64(len(t.Requests)) / s.Span.Seconds()
	}
	var total time.Duration
	svc := make([]time.Duration, len(t.Requests))
	for i, r := range t.Requests {
		svc[i] = m.ServiceTime(r.In, r.Out)
		total += svc[i]
	}
	s.MeanService = total / time.Duration(len(t.Requests))
	// Sliding 60 s window over arrivals.
	var load time.Duration
	lo := 0
	for hi, r := range t.Requests {
		load += svc[hi]
		for t.Requests[lo].At <= r.At-time.Minute {
			load -= svc[lo]
			lo++
		}
		s.PeakMinute = max(s.PeakMinute, hi-lo+1)
		s.PeakLoad = max(s.PeakLoad, load.Seconds()/60)
	}
	return s
}

// MarshalJSON writes the durations in seconds.
func (s Stats) MarshalJSON() ([]byte, error) {
	type plain Stats
	return json.Marshal(struct {
		plain
		Span        float64 `json:"span"`
		MeanService float64 `json:"meanService"`
	}{plain(s), s.Span.Seconds(), s.MeanService.Seconds()})
}
