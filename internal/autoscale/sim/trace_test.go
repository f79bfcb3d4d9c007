package sim

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestParseCSV(t *testing.T) {
	// The Azure format: header, CRLF, no newline after the last row.
	in := "TIMESTAMP,ContextTokens,GeneratedTokens\r\n" +
		"2023-11-16 18:17:03.9799600,4808,10\r\n" +
		"2023-11-16 18:17:04.0319600,3180,8\r\n" +
		"2023-11-16 18:17:05,12,1000"
	tr, err := ParseCSV(strings.NewReader(in), "x")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Name != "x" || len(tr.Requests) != 3 {
		t.Fatalf("%+v", tr)
	}
	if want := time.Date(2023, 11, 16, 18, 17, 3, 0, time.UTC); !tr.Start.Equal(want) {
		t.Errorf("start %s, want %s", tr.Start, want)
	}
	want := []Request{{At: 979960 * time.Microsecond, In: 4808, Out: 10}, {At: 1031960 * time.Microsecond, In: 3180, Out: 8}, {At: 2 * time.Second, In: 12, Out: 1000}}
	for i, w := range want {
		if tr.Requests[i] != w {
			t.Errorf("request %d: %+v, want %+v", i, tr.Requests[i], w)
		}
	}
}

func TestParseCSVOtherForms(t *testing.T) {
	// No header, seconds, unsorted, blank line, RFC 3339.
	tr, err := ParseCSV(strings.NewReader("10.5,1,2\n\n3,4,5\n"), "s")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Requests[0] != (Request{At: 0, In: 4, Out: 5}) || tr.Requests[1] != (Request{At: 7500 * time.Millisecond, In: 1, Out: 2}) {
		t.Errorf("%+v", tr.Requests)
	}
	tr, err = ParseCSV(strings.NewReader("at,in,out\n2024-01-01T00:00:00.25Z,1,1\n2024-01-01T00:00:01Z,1,1\n"), "r")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Requests[0].At != 250*time.Millisecond || tr.Requests[1].At != time.Second {
		t.Errorf("%+v", tr.Requests)
	}
}

func TestParseCSVErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"TIMESTAMP,ContextTokens,GeneratedTokens\r\n2023-11-16 18:17:03.97,1,2\r\n2023-11-16 25:17:03.97,1,2\r\n", `f.csv: line 3: column 1 (timestamp): "2023-11-16 25:17:03.97" is not a timestamp`},
		{"2023-11-16 18:17:03,1,2\n2023-11-16 18:17:04,x,2\n", `f.csv: line 2: column 2 (input tokens): "x" is not a non-negative integer`},
		{"2023-11-16 18:17:03,1,2\n2023-11-16 18:17:04,1,-2\n", `f.csv: line 2: column 3 (output tokens): "-2" is not a non-negative integer`},
		{"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,1\n", "f.csv: line 2: want 3 columns (arrival timestamp, input tokens, output tokens), got 2"},
		{"2023-11-16 18:17:03,1,2,3\n", "f.csv: line 1: want 3 columns"},
		{"TIMESTAMP,ContextTokens,GeneratedTokens\n", "f.csv: no requests"},
		{"", "f.csv: no requests"},
		{"2023-11-16 18:17:03,1,2\n\"2023,1,2\n", "f.csv: line 2: "},
		{"soon,1,2\n", `f.csv: line 1: column 1 (timestamp): "soon" is not a timestamp`},
	} {
		_, err := ParseCSV(strings.NewReader(c.in), "f.csv")
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.in, err, c.want)
		}
	}
}

func TestRealTraces(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "bench", "autoscale", "testdata")
	for _, c := range []struct {
		file  string
		n     int
		first time.Time
		span  time.Duration
	}{
		{"AzureLLMInferenceTrace_code.csv", 8819, time.Date(2023, 11, 16, 18, 17, 3, 0, time.UTC), 3437 * time.Second},
		{"AzureLLMInferenceTrace_conv.csv", 19366, time.Date(2023, 11, 16, 18, 15, 46, 0, time.UTC), 3502 * time.Second},
	} {
		tr, err := LoadCSV(filepath.Join(dir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		if len(tr.Requests) != c.n || !tr.Start.Equal(c.first) || tr.Span().Round(time.Second) != c.span {
			t.Errorf("%s: %d requests from %s over %s", c.file, len(tr.Requests), tr.Start, tr.Span())
		}
	}
}

func TestSynthetic(t *testing.T) {
	for _, name := range SyntheticNames {
		a, err := Synthetic(name, 1)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Synthetic(name, 1)
		c, _ := Synthetic(name, 2)
		if len(a.Requests) == 0 || len(a.Requests) != len(b.Requests) || a.Requests[10] != b.Requests[10] {
			t.Errorf("%s: not deterministic", name)
		}
		if len(a.Requests) == len(c.Requests) && a.Requests[10] == c.Requests[10] {
			t.Errorf("%s: the seed changes nothing", name)
		}
		for i := 1; i < len(a.Requests); i++ {
			if a.Requests[i].At < a.Requests[i-1].At {
				t.Fatalf("%s: unsorted at %d", name, i)
			}
		}
	}
	// The step is x10 within a second: 1 req/s before 300 s, 10 after.
	tr, _ := Synthetic("step", 1)
	count := func(from, to time.Duration) (n int) {
		for _, r := range tr.Requests {
			if r.At >= from && r.At < to {
				n++
			}
		}
		return n
	}
	before, after := count(0, 300*time.Second), count(301*time.Second, 601*time.Second)
	if before < 250 || before > 350 || after < 2800 || after > 3200 {
		t.Errorf("step: %d requests in the 300 s before, %d in the 300 s after", before, after)
	}
	if _, err := Synthetic("ramp", 1); err == nil {
		t.Error("unknown synthetic trace accepted")
	}
}

func TestSyntheticSeasonal(t *testing.T) {
	tr, err := Synthetic("seasonal", 1)
	if err != nil {
		t.Fatal(err)
	}
	// Seasons are aligned to the epoch: days start on the hour.
	if !tr.Start.Equal(tr.Start.Truncate(time.Hour)) || tr.Span() < 5*time.Hour-time.Minute || tr.Span() >= 5*time.Hour {
		t.Errorf("start %s, span %s", tr.Start, tr.Span())
	}
	rate := func(day int, fromH, toH float64) float64 { // req/s between two hours of a day
		from := time.Duration(day)*time.Hour + time.Duration(fromH*150*float64(time.Second))
		to := time.Duration(day)*time.Hour + time.Duration(toH*150*float64(time.Second))
		n := 0
		for _, r := range tr.Requests {
			if r.At >= from && r.At < to {
				n++
			}
		}
		return float64(n) / (to - from).Seconds()
	}
	for day := range 5 {
		night, morning, day1, lunch := rate(day, 0, 7.5), rate(day, 8.5-0.2, 8.5+0.2), rate(day, 9.5, 12), rate(day, 12.8, 13.2)
		if night < 0.35 || night > 0.65 || day1 < 7 || day1 > 9.2 || lunch > 0.8*day1 || morning > 0.9*day1 || morning < 1 {
			t.Errorf("day %d: night %.2f, mid-rise %.2f, morning %.2f, lunch %.2f req/s", day, night, morning, day1, lunch)
		}
	}
	// The rise: from the night's rate to the day's within 3 minutes of
	// trace, starting at 08:00 +- 30 s.
	for _, d := range []seasonalDayParams{{factor: 1}, {factor: 0.9, shift: 30}, {factor: 1.1, shift: -30}} {
		ds := []seasonalDayParams{d}
		start := 8*seasonalHour + d.shift
		if r := seasonalRate(ds, start-1); r > seasonalNight+1e-9 {
			t.Errorf("%+v: %.2f req/s before the rise", d, r)
		}
		if r := seasonalRate(ds, start+180); r < 8*d.factor-1e-9 {
			t.Errorf("%+v: %.2f req/s 3 min into the rise", d, r)
		}
	}
}

func TestStats(t *testing.T) {
	m := testModel() // service = in/1000 s
	tr := trace(Request{At: 0, In: 1000}, Request{At: sec(30), In: 3000}, Request{At: sec(70), In: 2000}, Request{At: sec(200), In: 6000})
	s := tr.Stats(m)
	if s.Requests != 4 || s.Span != 200*time.Second || s.MeanService != 3*time.Second || s.PeakMinute != 2 {
		t.Errorf("%+v", s)
	}
	// Busiest 60 s window: 6000 tokens = 6 s of service in the last one... and
	// 3 s + 2 s in (10 s, 70 s]: the peak is 6 s / 60.
	if !near(s.PeakLoad, 0.1) {
		t.Errorf("peak load %v, want 0.1", s.PeakLoad)
	}
}
