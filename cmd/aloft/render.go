package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

func newRenderCmd(g *globals) *cobra.Command {
	var file, cloudName string
	var replicas, revision int
	cmd := &cobra.Command{
		Use:   "render -f FILE --cloud NAME",
		Short: "Print the Kubernetes manifests aloft would apply for a spec on a kubernetes cloud",
		Long: `Prints the Deployment and Service aloft would apply (server-side, field
manager "aloft") for the spec on the named kubernetes cloud, as YAML ready
for kubectl, so they can be inspected, diffed or kept in Git. Nothing is
stored or applied. The replica count defaults to the spec's (its minimum
when autoscaled, at least 1); the revision to that of your running
deployment of that name, else 1.`,
		Example: `  aloft render -f spec.yaml --cloud gpu-cluster
  aloft render -f spec.yaml --cloud gpu-cluster --replicas 3 | kubectl apply --server-side --field-manager=aloft -f -
  aloft render -f spec.yaml --cloud gpu-cluster | kubectl diff --server-side --field-manager=aloft -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readSpecFile(file)
			if err != nil {
				return err
			}
			if _, err := v1.ParseSpec(data); err != nil {
				return &exitErr{exitError, fmt.Errorf("%s: %w", file, err)}
			}
			q := map[string]string{}
			if cmd.Flags().Changed("replicas") {
				q["replicas"] = strconv.Itoa(replicas)
			}
			if cmd.Flags().Changed("revision") {
				q["revision"] = strconv.Itoa(revision)
			}
			out, err := g.client().Render(cmd.Context(), cloudName, data, q)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "spec file (YAML or JSON), - for stdin")
	f.StringVar(&cloudName, "cloud", "", "the kubernetes cloud to render for (aloft clouds lists them)")
	f.IntVar(&replicas, "replicas", 0, "the Deployment's replica count (default: the spec's)")
	f.IntVar(&revision, "revision", 0, "the revision the objects' names and labels carry (default: the running one, else 1)")
	_ = cmd.MarkFlagRequired("file")
	_ = cmd.MarkFlagRequired("cloud")
	_ = cmd.RegisterFlagCompletionFunc("cloud", completeClouds(g))
	return cmd
}
