package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/client"
)

func newPlanCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "plan -f FILE",
		Short: "Show where a spec's replicas would run and why (dry run; nothing is stored)",
		Long: `Runs the placement optimizer for the spec over every cloud's offerings as
they are now (catalog prices, free capacity, cordons, capacity blocks) and
prints the chosen placement with its cost per hour and, for every candidate
not chosen, the reason. A deployment of that name that runs in your
workspace counts as current: the plan shows how many of its replicas would
move. A spec that cannot be placed exits 1 with the binding constraint.`,
		Example: `  aloft plan -f spec.yaml
  aloft plan -f spec.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			data, err := readSpecFile(file)
			if err != nil {
				return err
			}
			if _, err := v1.ParseSpec(data); err != nil {
				return &exitErr{exitError, fmt.Errorf("%s: %w", file, err)}
			}
			p, err := g.client().Plan(cmd.Context(), data)
			var ae *client.APIError
			infeasible := errors.As(err, &ae) && ae.Status == 422 && p.Error != ""
			if err != nil && !infeasible {
				return err
			}
			if perr := printOut(cmd.OutOrStdout(), g.output, p, func(w io.Writer) error { return printPlan(w, p) }); perr != nil {
				return perr
			}
			if infeasible {
				return &exitErr{exitError, fmt.Errorf("cannot place %s: %s", p.Deployment, p.Error)}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "spec file (YAML or JSON), - for stdin")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

func printPlan(w io.Writer, p v1.PlanResult) error {
	t := tw(w)
	fmt.Fprintln(t, "CLOUD\tREGION\tZONE\tINSTANCE\tSPOT\tREPLICAS\tCOST/HOUR")
	for _, a := range p.Placements {
		inst := a.InstanceType
		if inst == "" {
			inst = "-"
		}
		zone := a.Zone
		if zone == "" {
			zone = "-"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%v\t%d\t%s\n", a.Cloud, a.Region, zone, inst, a.Spot, a.Replicas, money(a.HourlyCost))
	}
	if err := t.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\ntotal %s/hour", money(p.HourlyCost))
	if p.Moved > 0 {
		fmt.Fprintf(w, ", %d running replica(s) would move", p.Moved)
	}
	if p.Unplaced > 0 {
		fmt.Fprintf(w, ", %d replica(s) unplaced", p.Unplaced)
	}
	fmt.Fprintln(w)
	if len(p.Rejected) > 0 {
		fmt.Fprintln(w, "\nnot chosen:")
		t = tw(w)
		for _, r := range p.Rejected {
			fmt.Fprintf(t, "  %s\t%s\n", r.Candidate, r.Reason)
		}
		return t.Flush()
	}
	return nil
}
