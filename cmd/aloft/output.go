package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"sigs.k8s.io/yaml"
)

// printOut writes v as JSON or YAML, or calls table for the table format.
func printOut(w io.Writer, format string, v any, table func(io.Writer) error) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	default:
		if table == nil {
			return nil
		}
		return table(w)
	}
}

func tw(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func money(f float64) string { return fmt.Sprintf("$%.4f", f) }

func age(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	d := time.Since(*t).Round(time.Second)
	switch {
	case d < time.Minute:
		return d.String()
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	default:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
}

// printDeployment is the status table: one row per replica.
func printDeployment(w io.Writer, d v1.Deployment) error {
	t := tw(w)
	fmt.Fprintln(t, "DEPLOYMENT\tREPLICA\tREV\tCLOUD\tREGION\tSTATE\tRESTARTS\tAGE\tCOST/HOUR")
	if len(d.Status.Replicas) == 0 {
		fmt.Fprintf(t, "%s\t-\t%d\t-\t-\t%s\t-\t-\t-\n", d.Name, d.Revision, d.Status.Phase)
	}
	for _, r := range d.Status.Replicas {
		fmt.Fprintf(t, "%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Name, r.ID, r.Revision, r.Cloud, r.Region, r.State, r.Restarts, age(r.StartedAt), money(r.HourlyCost))
	}
	t.Flush()
	fmt.Fprintf(w, "\nphase %s, %d/%d ready, revision %d, %s/hour\n", d.Status.Phase, d.Status.ReadyReplicas, d.Status.DesiredReplicas, d.Revision, money(d.Status.HourlyCost))
	for _, c := range d.Status.Conditions {
		if c.Status == "False" || c.Type == v1.ConditionUnsupported {
			fmt.Fprintf(w, "  %s=%s %s: %s\n", c.Type, c.Status, c.Reason, c.Message)
		}
	}
	return nil
}

func printDeploymentList(w io.Writer, deps []v1.Deployment) error {
	t := tw(w)
	fmt.Fprintln(t, "NAME\tPHASE\tREADY\tREV\tCLOUDS\tCOST/HOUR\tAGE")
	for _, d := range deps {
		clouds := map[string]bool{}
		for _, r := range d.Status.Replicas {
			clouds[r.Cloud] = true
		}
		names := make([]string, 0, len(clouds))
		for c := range clouds {
			names = append(names, c)
		}
		sort.Strings(names)
		cl := strings.Join(names, ",")
		if cl == "" {
			cl = "-"
		}
		created := d.CreatedAt
		fmt.Fprintf(t, "%s\t%s\t%d/%d\t%d\t%s\t%s\t%s\n", d.Name, d.Status.Phase, d.Status.ReadyReplicas, d.Status.DesiredReplicas, d.Revision, cl, money(d.Status.HourlyCost), age(&created))
	}
	return t.Flush()
}

func printEvents(w io.Writer, evs []v1.Event, header bool) error {
	t := tw(w)
	if header {
		fmt.Fprintln(t, "TIME\tTYPE\tREASON\tMESSAGE")
	}
	for _, e := range evs {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", e.Time.Local().Format("15:04:05.000"), e.Type, e.Reason, e.Message)
	}
	return t.Flush()
}

func printRevisions(w io.Writer, revs []v1.Revision) error {
	t := tw(w)
	fmt.Fprintln(t, "REVISION\tCREATED\tIMAGE/COMMAND")
	for _, r := range revs {
		what := r.Spec.Image
		if len(r.Spec.Command) > 0 {
			what = strings.Join(append(append([]string{}, r.Spec.Command...), r.Spec.Args...), " ")
		}
		fmt.Fprintf(t, "%d\t%s\t%s\n", r.Revision, r.CreatedAt.Local().Format(time.DateTime), what)
	}
	return t.Flush()
}

func printClouds(w io.Writer, clouds []v1.Cloud) error {
	t := tw(w)
	fmt.Fprintln(t, "NAME\tPROVIDER\tREGION\tSTATE\tRUNTIMES\tCPU USED/TOTAL\tMEMORY USED/TOTAL\tGPUS\t$/CPU-HOUR")
	for _, c := range clouds {
		state := "Ready"
		switch {
		case c.Unreachable != "":
			state = "Unreachable"
		case c.Failed:
			state = "Failed"
		case c.Cordoned:
			state = "Cordoned"
		}
		gpus := []string{}
		for k, v := range c.Capacity.GPUs {
			gpus = append(gpus, fmt.Sprintf("%s:%d/%d", k, c.Used.GPUs[k], v))
		}
		sort.Strings(gpus)
		g := strings.Join(gpus, ",")
		if g == "" {
			g = "-"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%g/%g\t%s/%s\t%s\t%s\n", c.Name, c.Provider, c.Region, state, strings.Join(c.Runtimes, ","),
			c.Used.CPU, c.Capacity.CPU, c.Used.Memory, c.Capacity.Memory, g, money(c.Prices.CPU))
	}
	return t.Flush()
}
