package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSimCommand(t *testing.T) {
	// No server is involved: sim runs offline.
	out, err := runCLI(t, "http://127.0.0.1:1", "sim", "--synthetic", "step", "--policy", "aloft,kpa,static")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"trace step: ", "POLICY", "VIOLATIONS", "VIOL%", "DROPPED", "P50", "P99", "REPLICA-HOURS", "COST", "MAX-REPLICAS",
		"\n   aloft ", "\n     kpa ", "\n  static ", "aloft vs kpa: violations "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "skyserve") {
		t.Errorf("--policy ignored:\n%s", out)
	}

	// A trace file in the Azure format, as JSON.
	dir := t.TempDir()
	f := filepath.Join(dir, "mine.csv")
	csv := "TIMESTAMP,ContextTokens,GeneratedTokens\r\n2023-11-16 18:17:03.9799600,4808,10\r\n2023-11-16 18:17:04.0319600,3180,8"
	if err := os.WriteFile(f, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "http://127.0.0.1:1", "sim", "--trace", f, "--slots", "4", "--cold-start", "10s", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Model struct {
			Slots     int    `json:"slots"`
			ColdStart string `json:"coldStart"`
		} `json:"model"`
		Traces []struct {
			Trace   string `json:"trace"`
			Results []struct {
				Policy   string `json:"policy"`
				Requests int    `json:"requests"`
			} `json:"results"`
			Verdicts []struct {
				Baseline string `json:"baseline"`
			} `json:"verdicts"`
		} `json:"traces"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if rep.Model.Slots != 4 || rep.Model.ColdStart != "10s" || len(rep.Traces) != 1 || rep.Traces[0].Trace != "mine" || len(rep.Traces[0].Results) != 4 ||
		rep.Traces[0].Results[3].Policy != "static" || rep.Traces[0].Results[0].Requests != 2 || len(rep.Traces[0].Verdicts) != 1 {
		t.Errorf("%+v", rep)
	}
}

func TestSimCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,1,2\n2023-11-16 18:17:04,12x,2\n"), 0o644)
	for _, c := range []struct {
		args []string
		code int // 0: a usage error
		want string
	}{
		{[]string{"sim"}, 0, "sim needs --trace FILE.csv or --synthetic"},
		{[]string{"sim", "--trace", bad}, exitError, `bad: line 3: column 2 (input tokens): "12x" is not a non-negative integer`},
		{[]string{"sim", "--trace", filepath.Join(dir, "missing.csv")}, exitError, "no such file"},
		{[]string{"sim", "--synthetic", "step", "--policy", "hpa"}, 0, `no policy "hpa"`},
		{[]string{"sim", "--synthetic", "ramp"}, 0, `no synthetic trace "ramp"`},
		{[]string{"sim", "--synthetic", "step", "--slots", "0"}, 0, "slots must be at least 1"},
		{[]string{"sim", "--synthetic", "step", "-o", "csv"}, 0, "--output must be table, json or yaml"},
	} {
		_, err := runCLI(t, "http://127.0.0.1:1", c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
			continue
		}
		var ee *exitErr
		switch {
		case c.code == 0 && !isUsage(err):
			t.Errorf("%v: %T, want a usage error", c.args, err)
		case c.code != 0 && (!errors.As(err, &ee) || ee.code != c.code):
			t.Errorf("%v: %v, want exit code %d", c.args, err, c.code)
		}
	}
}
