package sim

import (
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/autoscale"
)

// Predictive pre-warming in the aloft-predictive policy: the load's season
// (the shortest the spec allows; the seasonal trace repeats hourly) and how
// far ahead the forecast minimum looks.
const (
	PredictiveSeason  = time.Hour
	PredictiveHorizon = 2 * time.Minute
)

// AloftPredictiveConfig is AloftConfig(m) with predictive pre-warming on,
// as a user would write it for a load that repeats every season:
//
//	autoscale:
//	  ...                     # as in AloftConfig
//	  predictive: {enabled: true, season: 1h, horizon: 2m}
//
// PredictiveHorizon is four of the default model's 30 s cold starts: long
// enough for replicas asked for when a forecast rise enters the horizon to
// be ready before it arrives, with a margin for a rise that comes early.
func AloftPredictiveConfig(m Model, season, horizon time.Duration) autoscale.Config {
	c := AloftConfig(m)
	p, err := autoscale.ConfigFrom(v1.DeploymentSpec{
		Replicas: v1.Replicas{Min: c.Min, Max: c.Max},
		Autoscale: &v1.Autoscale{
			Metric: c.Metric,
			Target: c.Target,
			Predictive: &v1.Predictive{
				Enabled: true,
				Season:  v1.Duration(season.String()),
				Horizon: v1.Duration(horizon.String()),
			},
		},
	})
	if err != nil {
		panic("sim: aloft-predictive config: " + err.Error()) // constants above; a bug
	}
	c.Predictive = p.Predictive
	return c
}

func newAloftPredictive(m Model) *aloft {
	return &aloft{name: "aloft-predictive", cfg: AloftPredictiveConfig(m, PredictiveSeason, PredictiveHorizon), initial: 1}
}
