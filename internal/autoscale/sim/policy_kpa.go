package sim

import (
	"math"
	"time"
)

// The Knative Pod Autoscaler (KPA), reimplemented from Knative Serving's
// pkg/autoscaler/scaling/autoscaler.go (Scale) and the scale-to-zero rules
// of pkg/reconciler/autoscaling/kpa/scaler.go, with the defaults of the
// config-autoscaler ConfigMap documented at
// https://knative.dev/docs/serving/autoscaling/ (and kpa-specific/):
//
//	container-concurrency-target-default  100   (soft target, requests per pod)
//	container-concurrency-target-percentage 70  (target utilisation: 100 x 70% = 70)
//	stable-window                          60s
//	panic-window-percentage                10   (panic window 6 s)
//	panic-threshold-percentage            200
//	max-scale-up-rate                    1000
//	max-scale-down-rate                     2
//	enable-scale-to-zero                 true
//	scale-to-zero-grace-period            30s
//	tick-interval                          2s
//	initial-scale                           1
//	metric                        concurrency  (averaged over each window, the default "linear" aggregation)
//
// The target of 70 concurrent requests per pod is the default for a
// container that does not declare containerConcurrency; a replica of this
// model serves only Slots (8) at once, so the default is far too high for
// it. That mismatch is what running an LLM server on KPA defaults gets.
const (
	kpaDefaultTarget     = 100 * 0.70
	kpaTargetUtilization = 0.70
	kpaStableWindow      = 60 * time.Second
	kpaPanicWindow       = kpaStableWindow / 10
	kpaPanicThreshold    = 2.0
	kpaMaxScaleUpRate    = 1000.0
	kpaMaxScaleDownRate  = 2.0
	kpaScaleToZeroGrace  = 30 * time.Second
	kpaTickInterval      = 2 * time.Second
	kpaInitialScale      = 1
	kpaNameDefault       = "kpa"
	kpaNameTuned         = "kpa-tuned"
	kpaNotPanicking      = time.Duration(-1)
	kpaNotInactive       = time.Duration(-1)
)

type kpa struct {
	name   string
	target float64 // concurrency per pod
	max    int

	panicSince    time.Duration // when panic mode was last (re)entered, or kpaNotPanicking
	maxPanicPods  int
	inactiveSince time.Duration // when the desired scale first became 0, or kpaNotInactive
	last          int
}

func newKPA(m Model, target float64) *kpa {
	return &kpa{name: kpaNameDefault, target: target, max: m.MaxReplicas, panicSince: kpaNotPanicking, inactiveSince: kpaNotInactive, last: kpaInitialScale}
}

// newKPATuned is the KPA with the container's concurrency declared
// (containerConcurrency = Slots), so its target is 70% of the slots.
func newKPATuned(m Model) *kpa {
	k := newKPA(m, kpaTargetUtilization*float64(m.Slots))
	k.name = kpaNameTuned
	return k
}

func (k *kpa) Name() string            { return k.name }
func (k *kpa) Initial() int            { return kpaInitialScale }
func (k *kpa) Interval() time.Duration { return kpaTickInterval }

// windowAverage is Knative's TimedFloat64Buckets.WindowAverage with 1 s
// buckets: the mean over the window, or over the samples so far while the
// window is not yet full.
func windowAverage(h []Sample, now time.Time, d time.Duration) float64 {
	w := window(h, now, d)
	if len(w) == 0 {
		return 0
	}
	var sum float64
	for _, s := range w {
		sum += s.Concurrency
	}
	return sum / float64(len(w))
}

func (k *kpa) Decide(v View) int {
	now := v.Now.Sub(v.Start)
	if v.Poke {
		// The activator's stat for a revision at zero pokes the
		// autoscaler, whose next Scale sees concurrency > 0: one pod.
		if v.Replicas == 0 && v.InFlight > 0 {
			k.inactiveSince = kpaNotInactive
			k.last = max(1, int(math.Ceil(float64(v.InFlight)/k.target)))
			return k.last
		}
		return v.Replicas
	}
	readyPods := math.Max(1, float64(v.Ready))
	stable := windowAverage(v.History, v.Now, kpaStableWindow)
	panicV := windowAverage(v.History, v.Now, kpaPanicWindow)

	maxUp := math.Ceil(kpaMaxScaleUpRate * readyPods)
	maxDown := math.Floor(readyPods / kpaMaxScaleDownRate)
	dspc := math.Ceil(stable / k.target)
	dppc := math.Ceil(panicV / k.target)
	desiredStable := int(math.Min(math.Max(dspc, maxDown), maxUp))
	desiredPanic := int(math.Min(math.Max(dppc, maxDown), maxUp))

	over := dppc/readyPods >= kpaPanicThreshold
	switch {
	case k.panicSince == kpaNotPanicking && over:
		k.panicSince = now
	case over:
		k.panicSince = now
	case k.panicSince != kpaNotPanicking && k.panicSince+kpaStableWindow < now:
		k.panicSince = kpaNotPanicking
		k.maxPanicPods = 0
	}
	desired := desiredStable
	if k.panicSince != kpaNotPanicking {
		desired = max(desired, desiredPanic)
		// No scaling down while panicking.
		k.maxPanicPods = max(k.maxPanicPods, desired)
		desired = k.maxPanicPods
	}

	// Scale to zero (scaler.go handleScaleToZero): a desired scale of 0 marks
	// the revision inactive and keeps one pod; the last pod goes once the
	// revision has been inactive for the grace period (the activator is
	// then in the path to take the next request).
	if desired == 0 {
		if k.inactiveSince == kpaNotInactive {
			k.inactiveSince = now
		}
		if now-k.inactiveSince < kpaScaleToZeroGrace {
			desired = min(1, max(v.Replicas, k.last))
		}
	} else {
		k.inactiveSince = kpaNotInactive
	}
	k.last = min(desired, k.max)
	return k.last
}
