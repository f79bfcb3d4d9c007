package server

import (
	"errors"
	"net/http"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/placement"
	"github.com/aloft-dev/aloft/internal/store"
)

// plan is a dry run of the placement optimizer for the spec in the body:
// 200 with the placement, or 422 with the same shape and an error naming the
// binding constraint. Nothing is stored. A running deployment of that name in
// the caller's workspace counts as current (the plan shows what it would move).
func (a *API) plan(w http.ResponseWriter, r *http.Request) {
	spec, ok := readSpec(w, r)
	if !ok {
		return
	}
	ws := requestOf(r).workspace
	withCurrent := false
	if d, err := a.Store.GetDeployment(r.Context(), spec.Name); err == nil {
		withCurrent = d.Workspace == ws
	} else if !errors.Is(err, store.ErrNotFound) {
		a.writeStoreError(w, err, "deployment")
		return
	}
	p, err := a.Controller.Plan(r.Context(), *spec, withCurrent)
	if err != nil {
		a.writeStoreError(w, err, "plan")
		return
	}
	out := toPlanResult(p)
	if out.Error != "" {
		writeJSON(w, http.StatusUnprocessableEntity, out)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func toPlanResult(p placement.DeploymentPlan) v1.PlanResult {
	out := v1.PlanResult{
		Deployment: p.Deployment, HourlyCost: p.HourlyCost, Moved: p.Moved,
		Placements: []v1.PlanPlacement{}, Rejected: []v1.PlanRejection{},
		Error: p.Infeasible, Unplaced: p.Unplaced,
	}
	for _, a := range p.Placements {
		out.Placements = append(out.Placements, v1.PlanPlacement{
			Cloud: a.Cloud, Region: a.Region, Zone: a.Zone, InstanceType: a.InstanceType,
			Replicas: a.Replicas, Spot: a.Spot, HourlyCost: a.HourlyCost,
		})
	}
	for _, r := range p.Rejected {
		out.Rejected = append(out.Rejected, v1.PlanRejection{Candidate: r.Candidate, Reason: r.Reason})
	}
	return out
}
