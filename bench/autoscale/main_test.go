package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aloft-dev/aloft/internal/autoscale/sim"
)

func TestRun(t *testing.T) {
	var b bytes.Buffer
	if err := run(&b, sim.DefaultModel(), "table", 1, "aloft,kpa,skyserve,static,kpa-tuned", "azure-code,step", true); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"trace azure-code: 8819 requests", "trace step: ", "verdicts (better = fewer SLO violations at no more replica-hours):",
		"  azure-code aloft vs kpa: violations ", "  step       aloft vs kpa-tuned: ", "aloft configurations: metric concurrency"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := run(&b, sim.DefaultModel(), "json", 1, "kpa,static", "spike", false); err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Traces []struct {
			Results []sim.Result `json:"results"`
		} `json:"traces"`
	}
	if err := json.Unmarshal(b.Bytes(), &rep); err != nil || len(rep.Traces) != 1 || len(rep.Traces[0].Results) != 2 {
		t.Errorf("%v: %s", err, b.String())
	}
	if err := run(&b, sim.DefaultModel(), "table", 1, "", "nope", false); err == nil {
		t.Error("unknown trace accepted")
	}
}

func TestPoliciesFor(t *testing.T) {
	short, _ := sim.Synthetic("step", 1)
	long, _ := sim.Synthetic("seasonal", 1)
	if got := strings.Join(policiesFor(short, benchPolicies, false), ","); got != "aloft,kpa,skyserve,static,kpa-tuned" {
		t.Errorf("step: %s", got)
	}
	if got := strings.Join(policiesFor(long, benchPolicies, false), ","); got != "aloft,aloft-predictive,kpa,skyserve,static,kpa-tuned" {
		t.Errorf("seasonal: %s", got)
	}
	if got := strings.Join(policiesFor(long, []string{"aloft", "kpa"}, true), ","); got != "aloft,kpa" {
		t.Errorf("seasonal, -policy aloft,kpa: %s", got)
	}
}
